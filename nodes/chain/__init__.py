"""The chain room: FLF2V scene chaining and continuity QA.

- ``start``: the start image of a scene from the run ledger (with fallback reasons) and its end
  image by the ``end_image`` mode (or none); ``image_sha256``; opens the scene's timing.
- ``save``: a scene's MP4, PNG bookends, drift, optional colour match and ledger record.
- ``bookend``: gemDirect1's pixel score (25/35 thresholds) and SSIM of two frames; the start match
  (PSNR/SSIM of a chained scene's first frame against its start image, fail below 28 dB).
- ``drift``: colour/brightness drift in CIE Lab against the story's reference.
- ``states``: the ``gemdirect.scene`` websocket event per state change.
- ``nodes``: GemDirectChainStart, GemDirectSceneSave.

See docs/chaining.md.
"""
