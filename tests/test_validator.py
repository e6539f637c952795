"""The run validator: a good run (real MP4s) passes; each single corruption is caught with its own message."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import run_helpers as h
from conftest import REPO_ROOT, pack_module

validate = pack_module("nodes.run.validate")


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    """One complete run: two scenes and a final video encoded for real (320x192), telemetry written."""
    return h.make_good_run(str(tmp_path_factory.mktemp("runs") / "gemdirect"))


@pytest.fixture
def copy_run(good_run, tmp_path):
    """A private copy of the good run (same folder name, so RunId still matches)."""
    target = tmp_path / good_run.run_id
    shutil.copytree(good_run.run_dir, target)
    return target


def _edit_metadata(run_dir: Path, change) -> None:
    path = run_dir / "artifact-metadata.json"
    metadata = json.loads(path.read_text())
    change(metadata)
    path.write_text(json.dumps(metadata, indent=2))


def _edit_summary(run_dir: Path, old: str, new: str) -> None:
    path = run_dir / "run-summary.txt"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _only(problems: list[str]) -> str:
    assert len(problems) == 1, problems
    return problems[0]


def test_a_good_run_passes(good_run, capsys):
    assert validate.validate_run(good_run.run_dir) == []
    assert validate.main([good_run.run_dir]) == 0
    assert capsys.readouterr().out == f"OK: {good_run.run_dir} keeps the telemetry contract\n"
    metadata = json.loads(Path(good_run.metadata_path).read_text())
    assert metadata["Post"]["FinalResolution"] == "320x192" and metadata["Post"]["FinalFPSExact"] == "24000/1001"


def test_vram_delta_that_is_not_after_minus_before(copy_run):
    _edit_metadata(copy_run, lambda m: m["Scenes"][1]["Telemetry"]["GPU"].update(VramDeltaMB=100.0))
    problems = validate.validate_run(copy_run)
    assert ("artifact-metadata.json: Scenes[1] (scene 'b').Telemetry.GPU.VramDeltaMB = 100 but VramAfterMB - "
            "VramBeforeMB = 2304.5 - 2048 = 256.50; VramDeltaMB must be After - Before") in problems
    # ...and the summary, written from the true numbers, now disagrees with the metadata too
    assert any("VRAMDeltaMB=256.50MB but artifact-metadata.json Scenes[1] (scene 'b').Telemetry.GPU.VramDeltaMB = 100"
               in problem for problem in problems)


def test_a_scene_without_its_telemetry_line_in_the_summary(copy_run):
    lines = (copy_run / "run-summary.txt").read_text().splitlines(keepends=True)
    (copy_run / "run-summary.txt").write_text("".join(line for line in lines if "[Scene b] Telemetry" not in line))
    assert _only(validate.validate_run(copy_run)).startswith(
        "run-summary.txt: no Telemetry line for Scenes[1] (scene 'b');")


def test_summary_vram_that_disagrees_with_the_metadata(copy_run):
    _edit_summary(copy_run, "[Scene a] Telemetry: DurationSeconds=68.50s | VRAMBeforeMB=2048.00MB",
                  "[Scene a] Telemetry: DurationSeconds=68.50s | VRAMBeforeMB=2048.02MB")
    assert _only(validate.validate_run(copy_run)).endswith(
        "VRAMBeforeMB=2048.02MB but artifact-metadata.json Scenes[0] (scene 'a').Telemetry.GPU.VramBeforeMB = 2048 "
        "(they must agree within 0.01 MB)")


def test_a_bookend_score_that_disagrees_with_the_summary(copy_run):
    _edit_metadata(copy_run, lambda m: m["Scenes"][1]["Telemetry"]["BookendSimilarity"].update(Score=42.5))
    assert _only(validate.validate_run(copy_run)).endswith(
        "Bookend=42.3 but artifact-metadata.json Scenes[1] (scene 'b').Telemetry.BookendSimilarity.Score = 42.5 "
        "(they must agree within 0.1)")


def test_a_backslash_in_a_video_path(copy_run):
    _edit_metadata(copy_run, lambda m: m["Scenes"][0]["Video"].update(Path="scenes\\a.mp4"))
    assert _only(validate.validate_run(copy_run)) == (
        "artifact-metadata.json: Scenes[0] (scene 'a').Video.Path = 'scenes\\\\a.mp4' has a backslash; write it "
        "relative to the run folder with forward slashes (e.g. scenes/a.mp4)")


def test_a_video_path_outside_the_run_folder(copy_run):
    _edit_metadata(copy_run, lambda m: m["Scenes"][0]["Video"].update(Path="../elsewhere/a.mp4"))
    assert "is not inside the run folder" in _only(validate.validate_run(copy_run))


def test_a_missing_scene_video(copy_run):
    (copy_run / "scenes" / "a.mp4").unlink()
    assert _only(validate.validate_run(copy_run)).startswith(
        "artifact-metadata.json: Scenes[0] (scene 'a').Video.Path = 'scenes/a.mp4': file not found at ")


def test_a_final_fps_that_is_not_the_files(copy_run):
    _edit_metadata(copy_run, lambda m: m["Post"].update(FinalFPS=24.0))
    assert _only(validate.validate_run(copy_run)) == (
        "artifact-metadata.json: Post.FinalFPS = 24.0 but the final video test-story.mp4 plays at 23.976 fps "
        "(24000/1001)")


def test_a_final_resolution_that_is_not_the_files(copy_run):
    _edit_metadata(copy_run, lambda m: m["Post"].update(FinalResolution="640x384"))
    assert _only(validate.validate_run(copy_run)) == (
        "artifact-metadata.json: Post.FinalResolution = '640x384' but the final video test-story.mp4 is 320x192")


def test_final_frames_that_are_not_the_files(copy_run):
    _edit_metadata(copy_run, lambda m: m["Post"].update(FinalFrames=19))
    assert _only(validate.validate_run(copy_run)).endswith("Post.FinalFrames = 19 but the final video "
                                                           "test-story.mp4 holds 18 frames")


def test_a_missing_final_video(copy_run):
    (copy_run / "final" / "test-story.mp4").unlink()
    assert _only(validate.validate_run(copy_run)).startswith(
        "artifact-metadata.json: Post.FinalPath = 'final/test-story.mp4': file not found at ")


def test_a_field_of_the_wrong_type(copy_run):
    _edit_metadata(copy_run, lambda m: m["Scenes"][0].update(Seed="1001"))
    assert _only(validate.validate_run(copy_run)) == (
        "artifact-metadata.json: Scenes[0] (scene 'a').Seed: '1001' is not of type 'integer' "
        "(does not match the schema)")


def test_a_missing_field(copy_run):
    _edit_metadata(copy_run, lambda m: m["Story"].pop("Title"))
    assert _only(validate.validate_run(copy_run)) == (
        "artifact-metadata.json: Story: 'Title' is a required property (does not match the schema)")


def test_a_misspelt_field(copy_run):
    _edit_metadata(copy_run, lambda m: m["Post"].update(FinalFps=m["Post"].pop("FinalFPS")))
    problems = validate.validate_run(copy_run)
    assert "artifact-metadata.json: Post: 'FinalFPS' is a required property (does not match the schema)" in problems
    assert any("Post: Additional properties are not allowed ('FinalFps' was unexpected)" in p for p in problems)


def test_metadata_copied_from_another_run(copy_run):
    _edit_metadata(copy_run, lambda m: m.update(RunId="20200101-000000-abcd"))
    assert _only(validate.validate_run(copy_run)) == (
        f"artifact-metadata.json: RunId = '20200101-000000-abcd' but the folder is '{copy_run.name}' "
        "(metadata copied from another run?)")


def test_missing_or_broken_files(copy_run, tmp_path):
    (copy_run / "run-summary.txt").unlink()
    assert _only(validate.validate_run(copy_run)).startswith("run-summary.txt: missing in ")
    (copy_run / "artifact-metadata.json").write_text('{"Schema": ')
    assert _only(validate.validate_run(copy_run)).startswith("artifact-metadata.json: cannot be read as JSON")
    (copy_run / "artifact-metadata.json").unlink()
    assert "run the Telemetry Writer node" in _only(validate.validate_run(copy_run))
    assert "not a folder" in _only(validate.validate_run(tmp_path / "nowhere"))


def test_the_command_line_prints_one_line_per_problem_and_fails(copy_run, capsys):
    _edit_metadata(copy_run, lambda m: m["Post"].update(FinalResolution="640x384", FinalFPS=30.0))
    assert validate.main([str(copy_run)]) == 1
    out = capsys.readouterr()
    assert len(out.out.splitlines()) == 2 and "2 problem(s)" in out.err


def test_the_validator_runs_as_a_module_and_through_gemdirect_py(good_run):
    module = subprocess.run([sys.executable, "-m", f"{REPO_ROOT.name}.nodes.run.validate", good_run.run_dir],
                            capture_output=True, text=True, cwd=str(REPO_ROOT.parent), timeout=120)
    assert module.returncode == 0, module.stdout + module.stderr
    assert module.stdout.startswith("OK: ")
    cli = subprocess.run([sys.executable, str(REPO_ROOT / "gemdirect.py"), "validate", good_run.run_dir],
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0 and cli.stdout.startswith("OK: "), cli.stdout + cli.stderr
