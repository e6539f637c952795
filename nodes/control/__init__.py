"""control room: scene LoRAs, control sequences (zips of pose/depth/canny frames), keyframe saving."""
