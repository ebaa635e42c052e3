"""The CPU animatic: blocking, layers, effects and the frame renderer."""
