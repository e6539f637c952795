"""The run validator: does a run folder keep the telemetry contract (docs/telemetry.md, "Validation")?

Checks, each problem reported as one line that names the file and field:

- artifact-metadata.json exists, parses and matches the published JSON Schema;
- ``VramDeltaMB == VramAfterMB - VramBeforeMB`` (and ``VramDelta == VramFreeBefore - VramFreeAfter``);
- every scene in the metadata has its Telemetry line in run-summary.txt and the numbers agree
  (VRAM MB within 0.01, the Bookend score within 0.1);
- ``Video.Path`` has no backslash, stays inside the run folder, and (for a ready video) the file exists;
- ``FinalResolution``, ``FinalFPS`` and ``FinalFrames`` match the final video as read from the file.

Command line (exit 0 and an ``OK`` line when clean, 1 and one line per problem otherwise)::

    python gemdirect.py validate <run folder>
    python -m <pack-folder>.nodes.run.validate <run folder>
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from .ledger import METADATA_FILE, SUMMARY_FILE, RunError, resolve_in_run
from .summary import parse_summary, telemetry_by_scene
from .telemetry import metadata_json_schema, rule_problems

MB_AGREEMENT = 0.01  # MB: summary vs metadata
BOOKEND_AGREEMENT = 0.1  # score points
FPS_AGREEMENT = 0.01  # frames per second: FinalFPS vs the file


def _json_path(parts: Sequence[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(document)"


def schema_problems(metadata: Any) -> list[str]:
    """JSON Schema violations of a metadata document, ``artifact-metadata.json: <path>: <why>``."""
    try:
        import jsonschema
    except ImportError:  # fall back on the models the schema is generated from
        from .telemetry import metadata_problems

        return [f"{METADATA_FILE}: {problem}" for problem in metadata_problems(metadata)
                if problem not in rule_problems(metadata)]
    validator_class = jsonschema.validators.validator_for(metadata_json_schema())
    validator = validator_class(metadata_json_schema())
    leaves = [leaf for error in validator.iter_errors(metadata) for leaf in _leaf_errors(error)]
    problems = []
    for error in sorted(leaves, key=lambda e: [str(p) for p in e.absolute_path]):
        message = error.message if len(error.message) <= 200 else error.message[:197] + "..."
        parts = list(error.absolute_path)
        where = _json_path(parts)
        if len(parts) >= 2 and parts[0] == "Scenes" and isinstance(parts[1], int):
            label = _scene_label(metadata["Scenes"][parts[1]], parts[1])
            where = label + where[len(f"Scenes[{parts[1]}]"):]
        problems.append(f"{METADATA_FILE}: {where}: {message} (does not match the schema)")
    return problems


def _leaf_errors(error: Any) -> list[Any]:
    """The errors under an anyOf (``Post`` is an object or null): the object's, not "not null"."""
    children = [child for child in error.context or ()
                if not (child.validator == "type" and child.validator_value == "null")]
    if not children:
        return [error]
    return [leaf for child in children for leaf in _leaf_errors(child)]


def _scene_label(scene: Any, index: int) -> str:
    scene_id = scene.get("SceneId") if isinstance(scene, Mapping) else None
    return f"Scenes[{index}] (scene '{scene_id}')" if scene_id else f"Scenes[{index}]"


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def summary_problems(metadata: Mapping[str, Any], summary_text: str) -> list[str]:
    """Scenes without a Telemetry line in the summary, and numbers that disagree with the metadata."""
    lines = telemetry_by_scene(parse_summary(summary_text))
    problems = []
    for index, scene in enumerate(metadata.get("Scenes") or []):
        if not isinstance(scene, Mapping):
            continue
        label = _scene_label(scene, index)
        line = lines.get(scene.get("SceneId"))
        if line is None:
            problems.append(f"{SUMMARY_FILE}: no Telemetry line for {label}; every scene in {METADATA_FILE} needs "
                            "'[Scene <id>] Telemetry: ...' (write both again with the Telemetry Writer)")
            continue
        gpu = (scene.get("Telemetry") or {}).get("GPU") or {}
        for key, name in (("before", "VramBeforeMB"), ("after", "VramAfterMB"), ("delta", "VramDeltaMB")):
            expected = _num(gpu.get(name))
            if expected is not None and abs(line.fields[key] - expected) > MB_AGREEMENT:
                summary_name = name.replace("Vram", "VRAM")
                problems.append(f"{SUMMARY_FILE} line {line.number}: {summary_name}={line.fields[key]:.2f}MB but "
                                f"{METADATA_FILE} {label}.Telemetry.GPU.{name} = {expected:g} "
                                f"(they must agree within {MB_AGREEMENT} MB)")
        bookend = (scene.get("Telemetry") or {}).get("BookendSimilarity")
        expected_score = _num(bookend.get("Score")) if isinstance(bookend, Mapping) else None
        found_score = line.fields["score"]
        if (expected_score is None) != (found_score is None):
            shown = "n/a" if found_score is None else f"{found_score:.1f}"
            problems.append(f"{SUMMARY_FILE} line {line.number}: Bookend={shown} but {METADATA_FILE} "
                            f"{label}.Telemetry.BookendSimilarity.Score = {expected_score}")
        elif expected_score is not None and abs(found_score - expected_score) > BOOKEND_AGREEMENT:
            problems.append(f"{SUMMARY_FILE} line {line.number}: Bookend={found_score:.1f} but {METADATA_FILE} "
                            f"{label}.Telemetry.BookendSimilarity.Score = {expected_score:g} "
                            f"(they must agree within {BOOKEND_AGREEMENT})")
    return problems


def _file_in_run(run_dir: str, relative: str, where: str) -> tuple[str | None, list[str]]:
    if "\\" in relative:
        return None, []  # reported by the rule checks
    try:
        path = resolve_in_run(run_dir, relative)
    except RunError:
        return None, []  # reported by the rule checks
    if not os.path.isfile(path):
        return None, [f"{where} = {relative!r}: file not found at {path} (render it again, or fix the path)"]
    return path, []


def file_problems(run_dir: str, metadata: Mapping[str, Any]) -> list[str]:
    """Scene videos that are missing, and a final video whose real size/fps/frames disagree with Post."""
    problems = []
    for index, scene in enumerate(metadata.get("Scenes") or []):
        video = scene.get("Video") if isinstance(scene, Mapping) else None
        if isinstance(video, Mapping) and video.get("Status") == "ready" and isinstance(video.get("Path"), str):
            where = f"{METADATA_FILE}: {_scene_label(scene, index)}.Video.Path"
            problems += _file_in_run(run_dir, video["Path"], where)[1]
    post = metadata.get("Post")
    if isinstance(post, Mapping) and isinstance(post.get("FinalPath"), str):
        path, missing = _file_in_run(run_dir, post["FinalPath"], f"{METADATA_FILE}: Post.FinalPath")
        problems += missing
        if path is not None:
            problems += final_video_problems(path, post)
    return problems


def final_video_problems(path: str, post: Mapping[str, Any]) -> list[str]:
    """Post.FinalResolution / FinalFPS / FinalFrames against the file itself (read like ffprobe)."""
    from ..video import VideoError, probe_video

    try:
        info = probe_video(path)
    except VideoError as exc:
        return [f"{METADATA_FILE}: Post.FinalPath: the final video cannot be read: {exc}"]
    problems = []
    real_resolution = f"{info.width}x{info.height}"
    if isinstance(post.get("FinalResolution"), str) and post["FinalResolution"] != real_resolution:
        problems.append(f"{METADATA_FILE}: Post.FinalResolution = {post.get('FinalResolution')!r} but the final "
                        f"video {os.path.basename(path)} is {real_resolution}")
    fps = _num(post.get("FinalFPS"))
    if fps is not None and abs(fps - float(info.fps)) > FPS_AGREEMENT:
        problems.append(f"{METADATA_FILE}: Post.FinalFPS = {post.get('FinalFPS')!r} but the final video "
                        f"{os.path.basename(path)} plays at {float(info.fps):.3f} fps ({info.fps})")
    frames = post.get("FinalFrames")
    if isinstance(frames, int) and frames != info.frames:
        problems.append(f"{METADATA_FILE}: Post.FinalFrames = {frames} but the final video "
                        f"{os.path.basename(path)} holds {info.frames} frames")
    return problems


def validate_run(run_dir: str | os.PathLike[str]) -> list[str]:
    """Every problem of the run folder ``run_dir``, one line each; an empty list means it is valid."""
    run_dir = os.path.abspath(os.fspath(run_dir))
    if not os.path.isdir(run_dir):
        return [f"{run_dir}: not a folder; give a run folder such as output/gemdirect/<story>/<run-id>"]
    metadata_path = os.path.join(run_dir, METADATA_FILE)
    try:
        with open(metadata_path, encoding="utf-8") as handle:
            metadata = json.load(handle)
    except FileNotFoundError:
        return [f"{METADATA_FILE}: missing in {run_dir}; run the Telemetry Writer node for this run"]
    except (OSError, ValueError) as exc:
        return [f"{METADATA_FILE}: cannot be read as JSON ({exc})"]
    problems = schema_problems(metadata)
    if not isinstance(metadata, Mapping):
        return problems
    problems += [f"{METADATA_FILE}: {problem}" for problem in rule_problems(metadata)]
    if metadata.get("RunId") != os.path.basename(run_dir):
        problems.append(f"{METADATA_FILE}: RunId = {metadata.get('RunId')!r} but the folder is "
                        f"{os.path.basename(run_dir)!r} (metadata copied from another run?)")
    try:
        with open(os.path.join(run_dir, SUMMARY_FILE), encoding="utf-8") as handle:
            summary_text = handle.read()
    except FileNotFoundError:
        problems.append(f"{SUMMARY_FILE}: missing in {run_dir}; run the Telemetry Writer node for this run")
    else:
        problems += summary_problems(metadata, summary_text)
    problems += file_problems(run_dir, metadata)
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: print one line per problem and return 1, or an OK line and 0."""
    parser = argparse.ArgumentParser(prog="validate", description="Check a gemDirect run folder's telemetry.")
    parser.add_argument("run_dir", help="a run folder: output/gemdirect/<story>/<run-id>")
    args = parser.parse_args(list(argv) if argv is not None else None)
    problems = validate_run(args.run_dir)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) in {os.path.abspath(args.run_dir)}", file=sys.stderr)
        return 1
    print(f"OK: {os.path.abspath(args.run_dir)} keeps the telemetry contract")
    return 0


if __name__ == "__main__":
    sys.exit(main())
