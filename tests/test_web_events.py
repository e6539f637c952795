"""Every websocket message type the pack sends has a listener in the panel.

Newer ComfyUI frontends (1.58) log a message type nobody listens to as a console error, so a node that
sends a new ``gemdirect.*`` event without the panel registering it shows users an error on every run.
"""

from __future__ import annotations

import re
from pathlib import Path

from conftest import REPO_ROOT

NAME = re.compile(r"[\"'](gemdirect\.[a-z_]+)[\"']")


def names_in(folder: Path, suffix: str) -> set[str]:
    return {name for path in folder.rglob(f"*{suffix}") for name in NAME.findall(path.read_text(encoding="utf-8"))}


def test_every_event_the_nodes_send_is_listened_to_by_the_panel():
    sent = names_in(REPO_ROOT / "nodes", ".py")
    assert {"gemdirect.scene", "gemdirect.run", "gemdirect.render"} <= sent  # the scan finds the senders
    listened = set(re.findall(r"onEvent\(\s*[\"'](gemdirect\.[a-z_]+)[\"']", "\n".join(
        p.read_text(encoding="utf-8") for p in (REPO_ROOT / "web" / "js").rglob("*.js"))))
    listed = {name for path in (REPO_ROOT / "web" / "js").rglob("*.js")
              for line in path.read_text(encoding="utf-8").splitlines() if "for (const type of" in line
              for name in NAME.findall(line)}
    missing = sorted(sent - listened - listed)
    assert not missing, f"the nodes send {missing} but web/js registers no listener (onEvent) for them"
