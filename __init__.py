"""RefVideo: reference images + a shot description -> a 16:9 video clip, as ComfyUI nodes.

ComfyUI imports this file from ``custom_nodes/<folder>/``; pip installs the same files as the
``refvideo`` package. Importing it is cheap: no torch, diffusers, rembg or PyAV.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
