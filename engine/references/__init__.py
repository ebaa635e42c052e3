"""Reference images: the reference set, reading images, matting, quality checks, the saved-set library."""
