"""The chain room: FLF2V scene chaining and continuity QA.

- ``start``: the start (and end) image of a scene from the run ledger, with fallback reasons;
  opens the scene's timing.
- ``save``: a scene's MP4, PNG bookends, drift, optional colour match and ledger record.
- ``bookend``: gemDirect1's pixel score (25/35 thresholds) and SSIM of two frames.
- ``drift``: colour/brightness drift in CIE Lab against the story's reference.
- ``states``: the ``gemdirect.scene`` websocket event per state change.
- ``nodes``: GemDirectChainStart, GemDirectSceneSave.

See docs/chaining.md.
"""
