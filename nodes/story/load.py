"""Reading and writing story.json: every problem becomes a message that names the field.

``load_story`` never lets a traceback from deep inside escape for bad input: size, encoding, JSON
syntax, types, ranges, ids, and file references (confined to the story's folder) all end in one
:class:`StoryError` listing each problem as ``<field path>: <what is wrong>; <what to do>``.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from ..paths import resolve_inside
from ..run.atomic import atomic_write_json
from ..run.lock import file_lock
from .model import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, SCHEMA_ID, Story

MAX_STORY_BYTES = 5 * 1024 * 1024  # a story is text; keyframes and clips live beside it as files


@dataclass
class StoryIssue:
    path: str  # field path as users write it: scenes[2].cfg ("" for the whole file)
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class StoryError(ValueError):
    """A story that cannot be used. ``issues`` lists every problem found, each naming its field."""

    def __init__(self, file: str, issues: list[StoryIssue]):
        self.file = file
        self.issues = issues
        lines = "\n".join(f"- {issue}" for issue in issues)
        count = f"{len(issues)} problem{'s' if len(issues) != 1 else ''}"
        super().__init__(f"{os.path.basename(file) or file}: {count}\n{lines}")


@dataclass
class LoadedFile:
    """A validated story with the exact dict that was on disk (kept for read-modify-write)."""

    story: Story
    raw: dict[str, Any]
    path: str
    story_dir: str
    warnings: list[str] = field(default_factory=list)
    content_hash: str = ""  # sha256 of the bytes that were parsed (empty for a dict not read from disk)


# --------------------------------------------------------------------------- paths


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """``('scenes', 2, 'cfg')`` -> ``scenes[2].cfg``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def resolve_in_folder(folder: str, relative: str, where: str) -> str:
    """Absolute path of ``relative`` inside ``folder``; ValueError if it points anywhere else.

    Backslashes are read as separators (stories written on Windows). Symlinks are resolved before
    the check, so a link cannot smuggle a path out either.
    """
    text = relative.replace("\\", "/").strip()
    if not text or os.path.isabs(text) or text.startswith("/") or (len(text) > 1 and text[1] == ":"):
        raise ValueError(
            f"{where} = '{relative}' is not a path relative to the story's folder; "
            "give a path like 'keyframes/scene1.png'"
        )
    target = resolve_inside(folder, text)
    if target is None:
        raise ValueError(
            f"{where} = '{relative}' leaves the story's folder; put the file inside {os.path.realpath(folder)} "
            "and give its path relative to the story"
        )
    return target


# --------------------------------------------------------------------------- pydantic errors -> messages


def _unwrap(annotation: Any) -> Any:
    """The model class inside Optional[...] / list[...] / Annotated[...], if any."""
    for arg in get_args(annotation) or ():
        inner = _unwrap(arg)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return inner
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return annotation if get_origin(annotation) is None else None


def _field_info(model: type[BaseModel], loc: tuple[Any, ...]) -> FieldInfo | None:
    info = None
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        fields = current.model_fields
        info = fields.get(part) or next((f for f in fields.values() if f.alias == part), None)
        if info is None:
            return None
        current = _unwrap(info.annotation)
    return info


def _constraints(info: FieldInfo | None) -> list[Any]:
    """Constraint objects of a field, including those inside ``Annotated[...] | None``."""
    if info is None:
        return []
    found = list(info.metadata)
    pending = [info.annotation]
    while pending:
        annotation = pending.pop()
        for arg in get_args(annotation):
            if isinstance(arg, FieldInfo):
                found.extend(arg.metadata)
            elif not isinstance(arg, (str, int, float)):
                found.append(arg)
                pending.append(arg)
    return found


def _bounds(info: FieldInfo | None) -> tuple[Any, Any]:
    low = high = None
    for meta in _constraints(info):
        for name in ("ge", "gt"):
            if isinstance(getattr(meta, name, None), (int, float)):
                low = getattr(meta, name)
        for name in ("le", "lt"):
            if isinstance(getattr(meta, name, None), (int, float)):
                high = getattr(meta, name)
    return low, high


def _number(value: Any) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _allowed(info: FieldInfo | None) -> str:
    low, high = _bounds(info)
    if low is not None and high is not None:
        return f" (allowed {_number(low)} to {_number(high)})"
    return ""


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, BaseModel) else "{...}"
    return text if len(text) <= 60 else text[:57] + "..."


_TYPE_WORDS = {
    "int_type": "a whole number (e.g. 16)",
    "int_from_float": "a whole number (e.g. 16)",
    "float_type": "a number (e.g. 5.2)",
    "string_type": "text in quotes",
    "bool_type": "true or false",
    "list_type": "a list [...]",
    "model_type": "an object {...}",
    "model_attributes_type": "an object {...}",
    "dict_type": "an object {...}",
}


def _message(error: dict[str, Any]) -> StoryIssue:
    loc = tuple(error["loc"])
    kind = error["type"]
    value = error.get("input")
    ctx = error.get("ctx") or {}
    # Unions (int | None, float | str) report one error per branch; keep the field, drop the branch.
    loc = tuple(p for p in loc if not (isinstance(p, str) and (p in ("float", "str", "int") or "[" in p)))
    path = field_path(loc)
    info = _field_info(Story, loc)
    shown = _shown(value)
    if kind == "missing":
        hint = {
            "scenes": 'add "scenes": [ {"id": "scene-1", "prompt": "...", "duration": 3.0} ]',
            "prompt": "describe what the scene shows",
            "id": 'give the scene a unique id such as "scene-1"',
            "title": "give the story a title",
        }.get(str(loc[-1]) if loc else "", "add it")
        return StoryIssue(path, f"is missing; {hint}")
    if kind == "greater_than":
        return StoryIssue(path, f"{shown} must be more than {_number(ctx['gt'])}{_allowed(info)}")
    if kind == "greater_than_equal":
        return StoryIssue(path, f"{shown} is below the minimum {_number(ctx['ge'])}{_allowed(info)}")
    if kind in ("less_than_equal", "less_than"):
        limit = ctx.get("le", ctx.get("lt"))
        return StoryIssue(path, f"{shown} is above the maximum {_number(limit)}{_allowed(info)}")
    if kind in _TYPE_WORDS:
        return StoryIssue(path, f"{shown} should be {_TYPE_WORDS[kind]}")
    if kind == "literal_error":
        return StoryIssue(path, f"{shown} is not allowed; use {ctx.get('expected', 'one of the listed values')}")
    if kind == "string_pattern_mismatch":
        return StoryIssue(path, f"{shown} is not a valid id; use 1 to 64 letters, digits, '-' or '_'")
    if kind == "string_too_short":
        return StoryIssue(path, "is empty; it needs text")
    if kind == "string_too_long":
        return StoryIssue(path, f"is too long (at most {ctx.get('max_length')} characters)")
    if kind == "too_short":
        return StoryIssue(path, f"needs at least {ctx.get('min_length')} item(s)")
    if kind == "too_long":
        return StoryIssue(path, f"has too many items (at most {ctx.get('max_length')})")
    if kind == "value_error":
        text = str(ctx.get("error", error.get("msg", "")))
        # A model-level check names its own field path first: "scenes[2].id 'a' is already used".
        if text.startswith("scenes[") and " " in text:
            own_path, rest = text.split(" ", 1)
            return StoryIssue(own_path, rest)
        return StoryIssue(path, text)
    return StoryIssue(path, f"{shown}: {error.get('msg', kind)}")


def issues_from_validation(exc: ValidationError) -> list[StoryIssue]:
    issues: list[StoryIssue] = []
    seen: set[str] = set()
    errors = exc.errors(include_url=False)
    # A union branch error is noise when the same field also failed another way.
    for error in errors:
        issue = _message(error)
        if str(issue) not in seen:
            seen.add(str(issue))
            issues.append(issue)
    return _collapse_union_noise(issues)


def _collapse_union_noise(issues: list[StoryIssue]) -> list[StoryIssue]:
    by_path: dict[str, list[StoryIssue]] = {}
    for issue in issues:
        by_path.setdefault(issue.path, []).append(issue)
    kept: list[StoryIssue] = []
    for issue in issues:
        group = by_path[issue.path]
        if issue.path and len(group) > 1 and "should be" in issue.message:
            if any("should be" not in other.message for other in group):
                continue  # a real range/value problem beats "should be text" from the other branch
            if issue is not group[0]:
                continue
            wanted = " or ".join(sorted({g.message.split("should be ", 1)[1] for g in group}))
            kept.append(StoryIssue(issue.path, issue.message.split("should be ")[0] + f"should be {wanted}"))
            continue
        kept.append(issue)
    return kept


# --------------------------------------------------------------------------- reading


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"key '{key}' appears twice in one object")
        result[key] = value
    return result


def _too_big(size: int) -> StoryIssue:
    return StoryIssue("", (
        f"the file is {size / 1048576:.1f} MB; a story is at most {MAX_STORY_BYTES // 1048576} MB "
        "(keep images and clips as files beside it and refer to them by path)"
    ))


def parse_story_text(data: bytes, file: str) -> dict[str, Any]:
    """Bytes of a story file -> its top-level dict; StoryError for size, encoding or syntax."""
    if len(data) > MAX_STORY_BYTES:
        raise StoryError(file, [_too_big(len(data))])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise StoryError(file, [StoryIssue("", (
            f"is not UTF-8 text (bad byte 0x{data[exc.start]:02x} at byte {exc.start}); "
            "save the file as UTF-8"
        ))]) from None
    if not text.strip():
        raise StoryError(file, [StoryIssue("", "the file is empty; a story is a JSON object with title and scenes")])
    try:
        raw = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise StoryError(file, [StoryIssue("", (
            f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}; check commas, quotes and brackets"
        ))]) from None
    except ValueError as exc:
        raise StoryError(file, [StoryIssue("", f"invalid JSON: {exc}")]) from None
    except RecursionError:
        raise StoryError(file, [StoryIssue("", "invalid JSON: nested too deeply")]) from None
    if not isinstance(raw, dict):
        raise StoryError(file, [StoryIssue("", (
            f"the top level is a JSON {type(raw).__name__}; a story is an object "
            '{"schema": "gemdirect.story/1", "title": ..., "scenes": [...]}'
        ))])
    return raw


def _unknown_field_warnings(model: BaseModel, path: str = "") -> list[str]:
    warnings: list[str] = []
    known = list(type(model).model_fields) + [f.alias for f in type(model).model_fields.values() if f.alias]
    for name in model.model_extra or {}:
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
        where = f"{path}.{name}" if path else name
        if close:
            warnings.append(f"{where}: unknown field kept as is; did you mean '{close[0]}'?")
    for name in type(model).model_fields:
        value = getattr(model, name)
        sub = f"{path}.{name}" if path else name
        if isinstance(value, BaseModel):
            warnings.extend(_unknown_field_warnings(value, sub))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, BaseModel):
                    warnings.extend(_unknown_field_warnings(item, f"{sub}[{index}]"))
    return warnings


def _file_issues(story: Story, story_dir: str) -> list[StoryIssue]:
    """References to files: inside the story's folder, present, of a usable kind."""
    refs: list[tuple[str, str, tuple[str, ...]]] = []
    if story.soundtrack:
        refs.append(("soundtrack", story.soundtrack, AUDIO_EXTENSIONS))
    for index, scene in enumerate(story.scenes):
        if scene.keyframe:
            refs.append((f"scenes[{index}].keyframe", scene.keyframe, IMAGE_EXTENSIONS))
        if scene.control:
            refs.append((f"scenes[{index}].control.sequence", scene.control.sequence, (".zip",)))
    issues: list[StoryIssue] = []
    for where, relative, extensions in refs:
        try:
            target = resolve_in_folder(story_dir, relative, where)
        except ValueError as exc:
            issues.append(StoryIssue(where, str(exc).removeprefix(f"{where} = ")))
            continue
        if not target.lower().endswith(extensions):
            issues.append(StoryIssue(where, f"'{relative}' is not one of {', '.join(extensions)}"))
        elif not os.path.isfile(target):
            issues.append(StoryIssue(where, f"file '{relative}' not found in the story's folder {story_dir}"))
    return issues


def validate_story_dict(raw: dict[str, Any], file: str, story_dir: str) -> LoadedFile:
    """Check a story dict (as parsed from JSON) completely; StoryError lists every problem."""
    warnings: list[str] = []
    if "schema" not in raw:
        warnings.append(f'schema: missing; read as "{SCHEMA_ID}" (add "schema": "{SCHEMA_ID}")')
    try:
        story = Story.model_validate(raw)
    except ValidationError as exc:
        raise StoryError(file, issues_from_validation(exc)) from None
    issues = _file_issues(story, story_dir)
    if issues:
        raise StoryError(file, issues)
    warnings.extend(_unknown_field_warnings(story))
    return LoadedFile(story=story, raw=raw, path=os.path.abspath(file), story_dir=story_dir, warnings=warnings)


def load_story(path: str | os.PathLike[str]) -> LoadedFile:
    """Read and validate ``path``. StoryError (a ValueError) names every problem found."""
    path = os.path.abspath(os.fspath(path))
    if not os.path.exists(path):
        raise StoryError(path, [StoryIssue("", f"file not found: {path}")])
    if not os.path.isfile(path):
        raise StoryError(path, [StoryIssue("", f"{path} is not a file")])
    size = os.path.getsize(path)
    if size > MAX_STORY_BYTES:  # refuse before reading: a 50 MB "story" is a mistake, not a story
        raise StoryError(path, [_too_big(size)])
    with open(path, "rb") as handle:
        data = handle.read()
    loaded = validate_story_dict(parse_story_text(data, path), path, os.path.dirname(path))
    # The hash of exactly what was validated: a second read could see a newer file.
    loaded.content_hash = hashlib.sha256(data).hexdigest()
    return loaded


def save_story(path: str | os.PathLike[str], raw: dict[str, Any]) -> LoadedFile:
    """Validate ``raw`` and write it to ``path`` atomically; on any problem the file is untouched.

    ``raw`` is the story as a plain dict (unknown fields included), so read-modify-write keeps
    whatever other tools put there.
    """
    path = os.path.abspath(os.fspath(path))
    loaded = validate_story_dict(raw, path, os.path.dirname(path))
    text = json.dumps(raw, indent=2, ensure_ascii=False)
    if len(text.encode("utf-8")) > MAX_STORY_BYTES:
        raise StoryError(path, [StoryIssue("", f"the story would be over {MAX_STORY_BYTES // 1048576} MB")])
    with story_lock(path):  # waits for a read-modify-write in flight (update_story)
        atomic_write_json(path, raw)
    return loaded


@contextlib.contextmanager
def story_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold story ``path``'s exclusive lock (re-entrant): every read-modify-write of a story.json holds it
    (the panel's saves, Save Keyframe), so two writers never lose each other's change.

    The lock is a ``flock`` on the story's folder: story.json itself is replaced on every write, so it
    cannot carry the lock, and locking the folder leaves no lock file behind."""
    with file_lock(os.path.dirname(os.path.abspath(os.fspath(path)))):
        yield


def update_story(path: str | os.PathLike[str], change: Callable[[dict[str, Any]], None]) -> LoadedFile:
    """Read story ``path``, let ``change`` edit its dict in place, validate and write it back atomically,
    all under :func:`story_lock`: a concurrent writer's change is read first, never overwritten.
    Unknown fields stay as they are. StoryError (file untouched) when the result is not a valid story."""
    path = os.path.abspath(os.fspath(path))
    with story_lock(path):
        with open(path, "rb") as handle:
            raw = parse_story_text(handle.read(), path)
        change(raw)
        return save_story(path, raw)
