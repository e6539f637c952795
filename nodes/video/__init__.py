"""The video room: frame I/O for the whole pack.

Decode and encode MP4 (H.264 + AAC) with PyAV in chunks, so memory stays flat however long a clip
is; probe files the way ffprobe does; write and read PNG bookends. Engine only: nothing here
imports ComfyUI, and torch is imported only when a caller asks for tensors. See docs/video.md.
"""

from .convert import to_float32, to_uint8
from .decode import iter_frames, read_audio, read_frames
from .encode import encode_video, parse_fps
from .errors import VideoError
from .images import first_and_last, load_png, save_png
from .probe import VideoInfo, open_video, probe_video

__all__ = [
    "VideoError",
    "VideoInfo",
    "encode_video",
    "first_and_last",
    "iter_frames",
    "load_png",
    "open_video",
    "parse_fps",
    "probe_video",
    "read_audio",
    "read_frames",
    "save_png",
    "to_float32",
    "to_uint8",
]
