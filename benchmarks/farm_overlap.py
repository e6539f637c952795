"""The headless farm on a local Ray cluster: the test's 6-scene story (two chains, a VACE transition) with
1 and 2 workers; wall time, busy time and how much independent work overlapped (from the run's
``farm_job`` started/done events).

    python benchmarks/farm_overlap.py [--cpus 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from bench import pack_module
from test_farm import intervals, overlap_seconds, write_story


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()
    import ray

    with tempfile.TemporaryDirectory() as home:
        for sub in ("input", "output", "temp", "user", "models"):
            os.makedirs(os.path.join(home, sub))
        os.environ["GEMDIRECT_HOME"] = home
        story = write_story(Path(home) / "input" / "gemdirect" / "farm-test")
        schedule = pack_module("nodes.farm.schedule")
        ray.init(num_cpus=args.cpus, resources={schedule.SLOTS: 2}, include_dashboard=False, log_to_driver=False)
        try:
            for count in (1, 2):
                result = schedule.run_farm(story, local_workers=count, preset="none", progress=False)
                spans = intervals(result.run.run_dir)
                busy = sum(end - start for start, end in spans.values())
                first, last = min(s for s, _ in spans.values()), max(e for _, e in spans.values())
                print(f"{count} worker(s): farm {result.elapsed_s:.1f} s, jobs {last - first:.1f} s from first start "
                      f"to last end, busy {busy:.1f} s, largest overlap of two jobs "
                      f"{max(overlap_seconds(spans), 0):.2f} s, failed {result.failed}")
        finally:
            ray.shutdown()


if __name__ == "__main__":
    main()
