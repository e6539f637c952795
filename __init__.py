"""gemDirect: Story to Video. ComfyUI entry point.

ComfyUI imports this file as a package named after the pack's folder. It exports the node mappings
and the web folder, (The HTTP routes join here with the timeline panel.) Nothing else.
"""

from .nodes import load_rooms

NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, DISABLED_ROOMS = load_rooms()
WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
