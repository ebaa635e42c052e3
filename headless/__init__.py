"""Running RefVideo without the ComfyUI app: the API-workflow runner, node-schema reading,
the ComfyUI HTTP client, input staging and the ``refvideo`` command line."""
