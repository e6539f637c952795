"""The run room: one folder per run on disk, and the telemetry written from it.

- ``atomic``: whole-file writes (temporary name + rename) that a reader never sees half done.
- ``events``: the append-only ``events.jsonl`` (whole lines, safe with two writers).
- ``ledger``: create / open / list runs, run modes (auto, new, resume), scene and post records.
- ``measure``: timing and VRAM/RAM snapshots of a stage, recorded as events.
- ``records``: builders for scene and post records from plain values (no PascalCase by hand).
- ``telemetry``: the ``artifact-metadata.json`` models (``gemdirect.artifact-metadata/1``) and schema
  (``export_schema`` regenerates docs/schema/artifact-metadata.schema.json).
- ``summary``: the ``run-summary.txt`` line formats (format and parse).
- ``writer``: consolidates the ledger into artifact-metadata.json, run-summary.txt, latest-run.json.
- ``validate``: checks a run folder against the telemetry contract (library and command line).

Nothing here imports ComfyUI; this file imports nothing so ``from ..run.atomic import ...`` stays cheap.
See docs/telemetry.md.
"""
