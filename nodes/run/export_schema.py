"""Regenerate docs/schema/artifact-metadata.schema.json from the telemetry models.

    cd <folder above the pack> && python -m <pack-folder>.nodes.run.export_schema [path]

tests/test_telemetry.py fails while the committed file differs from the models' schema.
"""

from __future__ import annotations

import sys

from .telemetry import SCHEMA_FILE, write_schema_file


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    print(f"wrote {write_schema_file(argv[0] if argv else SCHEMA_FILE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
