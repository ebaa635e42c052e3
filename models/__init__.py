"""Everything that loads or runs weights: video backends, audio, background removal, registry.

Heavy libraries (torch, diffusers, rembg) are imported inside functions, never at import time.
"""
