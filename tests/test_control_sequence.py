"""Control zips: good ones resampled exactly to the scene (counts, sizes, which frame where), hostile ones
refused with a message naming the entry, and nothing written anywhere while reading either."""

from __future__ import annotations

import io
import json
import os
import random
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import pack_module
from PIL import Image

sequence = pack_module("nodes.control.sequence")
control_nodes = pack_module("nodes.control.nodes")
plan_module = pack_module("nodes.story.plan")


def colour(index: int) -> tuple[int, int, int]:
    return ((index * 37) % 256, (index * 91 + 11) % 256, (index * 53 + 101) % 256)


def png(size=(40, 30), fill=(10, 20, 30), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, fill if mode == "RGB" else 0).save(buffer, format="PNG")
    return buffer.getvalue()


def write_zip(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return path


def frames_zip(path: Path, count: int, size=(40, 30), shuffle: bool = True) -> Path:
    names = [f"pose/f{i}.png" for i in range(count)]  # no zero padding: natural order must sort f2 < f10
    order = list(range(count))
    if shuffle:
        random.Random(3).shuffle(order)
    return write_zip(path, [(names[i], png(size, colour(i))) for i in order])


def snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*")}


# --------------------------------------------------------------------------- good zips, exactly


@pytest.mark.parametrize(("count", "length"), [(12, 49), (97, 49), (49, 49), (1, 9), (2, 5)])
def test_a_good_zip_is_resampled_to_the_scenes_length_and_size(tmp_path, count, length):
    read = sequence.read_control_zip(frames_zip(tmp_path / "pose.zip", count))
    assert read.names == tuple(f"pose/f{i}.png" for i in range(count))  # natural order, not zip order
    assert read.frames.shape == (count, 30, 40, 3) and read.frames.dtype == np.uint8
    out = sequence.resample(read.frames, length, 64, 48)
    assert out.shape == (length, 48, 64, 3) and out.dtype == np.float32
    picks = sequence.time_indices(count, length)
    assert picks[0] == 0 and picks[-1] == count - 1 and picks == sorted(picks)
    for frame, source in zip(out, picks, strict=True):  # a solid colour stays exactly that colour when fitted
        assert np.array_equal(np.rint(frame * 255).astype(np.uint8), np.broadcast_to(colour(source), (48, 64, 3)))


def test_time_indices_are_nearest_and_even():
    assert sequence.time_indices(12, 49) == [int(i * 11 / 48 + 0.5) for i in range(49)]
    assert sequence.time_indices(97, 49) == list(range(0, 97, 2))  # exactly every other frame
    assert sequence.time_indices(5, 1) == [0]
    counts = np.bincount(sequence.time_indices(12, 49))
    # each inner source frame shown 4 or 5 times (49/12); the two ends own half an interval each
    assert counts[0] == counts[-1] == 3 and counts[1:-1].min() >= 4 and counts[1:-1].max() <= 5


def test_space_is_cover_and_centre_crop_never_stretched(tmp_path):
    # a 80x30 frame, left half black, right half white, into 32x32: cover scales to 85x32, crops the centre
    frame = np.zeros((30, 80, 3), dtype=np.uint8)
    frame[:, 40:] = 255
    out = sequence.resample(frame[None], 1, 32, 32)[0]
    assert out.shape == (32, 32, 3)
    assert out[:, :12].max() < 0.05 and out[:, 20:].min() > 0.95  # the edge stays in the middle, not squeezed


def test_the_node_reads_the_scenes_zip_from_the_story(tmp_path):
    folder = tmp_path / "story"
    (folder / "control").mkdir(parents=True)
    frames_zip(folder / "control" / "a.zip", 12)
    story = {"schema": "gemdirect.story/1", "id": "ctl", "title": "Control", "defaults": {"fps": 16},
             "scenes": [{"id": "a", "prompt": "a dancer", "frames": 17, "width": 64, "height": 64,
                         "control": {"kind": "pose", "sequence": "control/a.zip", "strength": 0.7}},
                        {"id": "b", "prompt": "no control here", "frames": 9, "width": 64, "height": 64}]}
    (folder / "story.json").write_text(json.dumps(story), encoding="utf-8")
    loaded = plan_module.load_and_plan(str(folder / "story.json"), "none")
    node = control_nodes.GemDirectControlSequence()
    video, strength, report = node.sequence(loaded.plan.scenes[0])
    assert tuple(video.shape) == (17, 64, 64, 3) and strength == pytest.approx(0.7)
    assert "12 frame(s)" in report and "17 frames at 64x64" in report
    with pytest.raises(ValueError, match="scene 'b' has no control"):
        node.sequence(loaded.plan.scenes[1])
    events = []
    comfy = pack_module("nodes.comfy")
    comfy.event_listeners.append(lambda name, data: events.append((name, data)))
    try:
        black, _, report = node.sequence(loaded.plan.scenes[1], without_control="black frames")
    finally:
        comfy.event_listeners.clear()
    assert tuple(black.shape) == (9, 64, 64, 3) and float(black.max()) == 0.0
    assert "WARNING" in report and events[-1][0] == "gemdirect.control" and events[-1][1]["warnings"]


def test_connected_frames_replace_the_zip_and_are_resampled_the_same_way(tmp_path):
    torch = pytest.importorskip("torch")
    scene = type("Scene", (), {"id": "x", "story_id": "s", "length": 9, "width": 32, "height": 32, "control": None})
    frames = torch.stack([torch.full((16, 16, 3), i / 4) for i in range(5)])
    video, strength, report = control_nodes.GemDirectControlSequence().sequence(scene, control_frames=frames)
    assert tuple(video.shape) == (9, 32, 32, 3) and strength == 1.0 and "5 connected frame(s)" in report
    assert [round(float(v), 2) for v in video[:, 0, 0, 0]] == [0.0, 0.25, 0.25, 0.5, 0.5, 0.75, 0.75, 1.0, 1.0]


# --------------------------------------------------------------------------- hostile zips


def _patch_central(path: Path, name: str, offset: int, value: bytes, local_offset: int | None = None) -> None:
    """Overwrite bytes of ``name``'s central-directory record (and optionally its local header)."""
    data = bytearray(path.read_bytes())
    central = data.index(b"PK\x01\x02")
    while True:
        name_len = int.from_bytes(data[central + 28:central + 30], "little")
        if data[central + 46:central + 46 + name_len].decode() == name:
            break
        extra = int.from_bytes(data[central + 30:central + 32], "little")
        comment = int.from_bytes(data[central + 32:central + 34], "little")
        central = data.index(b"PK\x01\x02", central + 46 + name_len + extra + comment)
    data[central + offset:central + offset + len(value)] = value
    if local_offset is not None:
        local = int.from_bytes(data[central + 42:central + 46], "little")
        data[local + local_offset:local + local_offset + len(value)] = value
    path.write_bytes(bytes(data))


def symlink_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("f0.png", png())
        link = zipfile.ZipInfo("f1.png")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    return path


def many_entries_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for index in range(sequence.MAX_ENTRIES + 1):
            archive.writestr(f"f{index}/", b"")
    return path


def lying_size_zip(path: Path) -> Path:
    """A deflated entry whose headers declare far fewer bytes than it inflates to."""
    big = png((400, 300), (1, 2, 3)) + b"\0" * 200000
    write_zip(path, [("f0.png", big)])
    _patch_central(path, "f0.png", 24, (100).to_bytes(4, "little"), local_offset=22)
    return path


def encrypted_zip(path: Path) -> Path:
    write_zip(path, [("f0.png", png())])
    _patch_central(path, "f0.png", 8, (1).to_bytes(2, "little"), local_offset=6)
    return path


def unknown_compression_zip(path: Path) -> Path:
    write_zip(path, [("f0.png", png())])
    _patch_central(path, "f0.png", 10, (99).to_bytes(2, "little"), local_offset=8)
    return path


def huge_image_zip(path: Path) -> Path:
    return write_zip(path, [("f0.png", png((5000, 5000), mode="1"))])


def duplicate_zip(path: Path) -> Path:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate it is told to write
        return write_zip(path, [("f0.png", png()), ("f0.png", png(fill=(9, 9, 9)))])


HOSTILE = {
    "traversal": (lambda p: write_zip(p, [("../evil.png", png())]), "leaves the zip's folder"),
    "nested traversal": (lambda p: write_zip(p, [("pose/../../evil.png", png())]), "leaves the zip's folder"),
    "backslash traversal": (lambda p: write_zip(p, [("pose\\..\\..\\evil.png", png())]), "leaves the zip's folder"),
    "absolute path": (lambda p: write_zip(p, [("/tmp/evil.png", png())]), "is an absolute path"),
    "drive letter": (lambda p: write_zip(p, [("C:/evil.png", png())]), "is an absolute path"),
    "UNC path": (lambda p: write_zip(p, [("\\\\server\\share\\evil.png", png())]), "is an absolute path"),
    "symlink entry": (symlink_zip, "is a symbolic link"),
    "entry count bomb": (many_entries_zip, "entries, more than 4096"),
    "lying declared size": (lying_size_zip, "is damaged"),  # inflating stops at the declared size: CRC
    "encrypted entry": (encrypted_zip, "is encrypted"),
    "unknown compression": (unknown_compression_zip, "compression"),
    "pixel bomb": (huge_image_zip, "larger than 4096x4096"),
    "non-image by name": (lambda p: write_zip(p, [("f0.png", png()), ("notes.txt", b"hello")]), "is not an image"),
    "non-image content": (lambda p: write_zip(p, [("f0.png", b"this is not a png at all")]), "does not decode"),
    "mixed sizes": (lambda p: write_zip(p, [("f0.png", png((40, 30))), ("f1.png", png((41, 30)))]), "export every"),
    "duplicate names": (duplicate_zip, "appears twice"),
    "empty": (lambda p: write_zip(p, []), "holds no image"),
    "only metadata": (lambda p: write_zip(p, [("pose/", b""), ("__MACOSX/._f0.png", b"x"), (".DS_Store", b"x")]),
                      "holds no image"),
    "not a zip": (lambda p: (p.write_bytes(b"PK\x03\x04 garbage"), p)[1], "is not a readable zip"),
}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_a_hostile_zip_is_refused_naming_the_problem_and_nothing_is_written(tmp_path, kind, monkeypatch):
    make, expected = HOSTILE[kind]
    work = tmp_path / "story" / "control"
    work.mkdir(parents=True)
    path = make(work / "hostile.zip")
    monkeypatch.chdir(work)  # a writer that resolved names against the cwd would write here
    before = snapshot(tmp_path)
    with pytest.raises(sequence.ControlZipError) as refused:
        sequence.read_control_zip(path)
    message = str(refused.value)
    assert message.startswith("control zip hostile.zip") and "; " in message, message  # the zip, then the fix
    if expected:
        assert expected in message, message
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "story" / "evil.png").exists() and not (tmp_path / "evil.png").exists()


def test_declared_size_limits_per_entry_and_in_all(tmp_path, monkeypatch):
    path = frames_zip(tmp_path / "pose.zip", 3, shuffle=False)
    sizes = [info.file_size for info in zipfile.ZipFile(path).infolist()]
    monkeypatch.setattr(sequence, "MAX_ENTRY_BYTES", max(sizes) - 1)
    with pytest.raises(sequence.ControlZipError, match=r"declares .* bytes uncompressed"):
        sequence.read_control_zip(path)
    monkeypatch.setattr(sequence, "MAX_ENTRY_BYTES", max(sizes))
    monkeypatch.setattr(sequence, "MAX_TOTAL_BYTES", sum(sizes) - 1)
    with pytest.raises(sequence.ControlZipError, match="uncompressed; export fewer"):
        sequence.read_control_zip(path)
    monkeypatch.setattr(sequence, "MAX_TOTAL_BYTES", sum(sizes))
    assert len(sequence.read_control_zip(path).frames) == 3


def test_the_story_refuses_a_control_sequence_outside_its_folder(tmp_path):
    folder = tmp_path / "story"
    folder.mkdir()
    frames_zip(tmp_path / "outside.zip", 3)
    story = {"schema": "gemdirect.story/1", "title": "Out", "scenes": [
        {"id": "a", "prompt": "x", "frames": 9, "control": {"kind": "depth", "sequence": "../outside.zip"}}]}
    (folder / "story.json").write_text(json.dumps(story), encoding="utf-8")
    with pytest.raises(ValueError, match=r"scenes\[0\].control.sequence"):
        plan_module.load_and_plan(str(folder / "story.json"), "none")
    assert os.listdir(folder) == ["story.json"]


def test_a_changed_control_zip_reloads_the_story_and_makes_the_scene_stale(tmp_path):
    fingerprint = pack_module("nodes.run.fingerprint")
    story_nodes = pack_module("nodes.story.nodes")
    folder = tmp_path / "story"
    (folder / "control").mkdir(parents=True)
    frames_zip(folder / "control" / "a.zip", 4)
    story = {"schema": "gemdirect.story/1", "title": "Control", "scenes": [
        {"id": "a", "prompt": "x", "frames": 9, "control": {"kind": "pose", "sequence": "control/a.zip"}}]}
    path = folder / "story.json"
    path.write_text(json.dumps(story), encoding="utf-8")
    loader_key = story_nodes._story_fingerprint(str(path))
    before = fingerprint.plan_fingerprint(plan_module.load_and_plan(str(path), "none").plan.scenes[0])
    assert before["ControlSha256"] is not None
    frames_zip(folder / "control" / "a.zip", 5)
    os.utime(folder / "control" / "a.zip", ns=(1, 1))  # a changed file with any time stamp
    assert story_nodes._story_fingerprint(str(path)) != loader_key  # Story Loader runs again: a new SCENE
    now = fingerprint.plan_fingerprint(plan_module.load_and_plan(str(path), "none").plan.scenes[0])
    assert fingerprint.plan_changes(before, now) == ["control sequence (zip content) changed"]
    old_record = {k: v for k, v in before.items() if k != "ControlSha256"}  # a record from before the field
    assert fingerprint.plan_changes(old_record, now) == []
