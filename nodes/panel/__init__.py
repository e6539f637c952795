"""The timeline panel's HTTP API: stories, runs, thumbnails, export and import for ``web/js``.

``engine`` does the work on plain values and runs without ComfyUI (tests call it directly); ``routes``
turns it into aiohttp handlers (``add_panel_routes``); ``edl`` writes CMX 3600 edit decision lists.
"""
