"""The render room: a run's saved scenes joined into one finished film, streamed chunk by chunk.

- ``join``: which scenes, in the story's current order, and how each pair is joined (cut, crossfade,
  VACE clip or its crossfade fallback); the frame stream that joins them, holding one chunk at a time.
- ``engine``: the whole pass (join -> interpolate -> upscale -> encode with audio), its Post telemetry,
  the consolidated run telemetry and the validator's verdict.
- ``nodes``: GemDirectStoryRender.

Nothing here imports ComfyUI; see docs/render.md.
"""
