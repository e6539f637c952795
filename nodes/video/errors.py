"""The video room's one error type."""

from __future__ import annotations


class VideoError(Exception):
    """A video or image file could not be read or written.

    The message names the file, what is wrong with it and what to do, e.g.
    ``scene-003.mp4: truncated: holds 22 of 49 frames; render the scene again``.
    """
