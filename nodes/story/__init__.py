"""The story room: story.json model and validation, presets, scene planning, and the story nodes."""
