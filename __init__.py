"""gemDirect: Story to Video. ComfyUI entry point.

ComfyUI imports this file as a package named after the pack's folder. It exports the node mappings
and the web folder, and registers the HTTP routes (``nodes/routes.py``) when ComfyUI's server is
there. Nothing else.
"""

import logging

from .nodes import comfy, load_rooms

NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, DISABLED_ROOMS = load_rooms()
WEB_DIRECTORY = "./web"


def _register_routes() -> None:
    server = comfy.prompt_server()
    if server is None:  # standalone (tests, the command-line demo): no server, no routes
        return
    try:
        from .nodes import routes

        routes.register(server)
    except Exception as exc:  # the nodes still work without the panel's routes; start-up goes on
        logging.getLogger("gemdirect").warning(
            "[gemDirect] HTTP routes not registered (%s: %s); the nodes work, the panel's live data does not",
            type(exc).__name__, exc)


_register_routes()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
