"""Likeness: how much each frame looks like each reference's subject, to an image encoder.

Every picture is shown to the encoder the same way: fitted (aspect kept) on a white square of
the encoder's input size. A reference is its subject matted onto white and cropped, exactly as
the sampler sees it (:func:`sampler_canvas`); a frame is the whole frame. Similarity is the
cosine between the two embeddings. Encoders live in ``models/image_encoders.py``; this module
only needs the :class:`ImageEncoder` protocol, so its logic is tested on constructed embeddings.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from PIL import Image

from ..frames import fit_box
from ..references.images import from_uint8, sampler_canvas, to_uint8
from ..references.reference import Reference


class ImageEncoder(Protocol):
    """An image encoder: square RGB pictures in, one embedding each out."""

    name: str          # what the report calls it (the file or folder name)
    family: str        # ``clip`` or ``dinov2``
    image_size: int    # the square input size it expects

    def embed(self, images: np.ndarray) -> np.ndarray:
        """Embeddings ``[N, D]`` of pictures ``[N, image_size, image_size, 3]`` (float 0..1)."""
        ...


def square_view(image: np.ndarray, size: int) -> np.ndarray:
    """An RGB image ``[H, W, 3]`` (float 0..1 or uint8) fitted and centred on a white ``size`` square."""
    pixels = image if image.dtype == np.uint8 else to_uint8(np.asarray(image)[..., :3])
    picture = Image.fromarray(np.ascontiguousarray(pixels[..., :3]), "RGB")
    fitted, offset = fit_box(picture.width, picture.height, size, size)
    canvas = Image.new("RGB", (size, size), (255, 255, 255))
    canvas.paste(picture.resize(fitted, Image.Resampling.BICUBIC), offset)
    return from_uint8(np.asarray(canvas))


def reference_view(ref: Reference, size: int) -> np.ndarray:
    """The reference's subject as the sampler sees it, on a white ``size`` square."""
    return from_uint8(np.asarray(sampler_canvas(ref, size, size)))


def normalise(embeddings: np.ndarray) -> np.ndarray:
    vectors = np.asarray(embeddings, dtype=np.float64)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def similarities(frames: np.ndarray, references: np.ndarray) -> np.ndarray:
    """Cosine similarity ``[F, R]`` of frame embeddings ``[F, D]`` with reference embeddings ``[R, D]``."""
    return normalise(frames) @ normalise(references).T


def embed_in_batches(encoder: ImageEncoder, views: np.ndarray, batch: int = 16) -> np.ndarray:
    return np.concatenate([np.asarray(encoder.embed(views[i:i + batch])) for i in range(0, len(views), batch)])
