"""The interpolate room: RIFE (IFNet 4.6-4.26 with lite/heavy variants, weight-compatible) and a weightless
optical-flow method, any target frame rate, scene cuts respected, streamed in chunks. See docs/interpolate.md."""
