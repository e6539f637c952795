"""Scale-out: a story's job graph (keyframes, scenes, transitions, post, the render) scheduled on Ray.

Not a room of nodes: nothing here is loaded by ComfyUI. ``graph`` (the jobs and their
dependencies), ``workers`` (worker specs, checks), ``client`` (ComfyUI's HTTP/websocket API),
``execute`` (one job, headless or on a ComfyUI worker) import no Ray; only ``schedule`` does, and
only the command line (``gemdirect.py farm``) and the Python API (:func:`schedule.run_farm`) import it.
See docs/scale-out.md.
"""
