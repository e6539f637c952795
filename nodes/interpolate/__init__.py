"""The interpolate room: RIFE (IFNet 4.6 to 4.26, weight-compatible) and a weightless optical-flow method,
any target frame rate, scene cuts respected, streamed in chunks. See docs/interpolate.md."""
