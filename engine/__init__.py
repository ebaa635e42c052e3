"""RefVideo's engine: domain logic that never imports ComfyUI (see ``host`` for the one adapter)."""
