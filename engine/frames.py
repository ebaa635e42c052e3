"""Frames, masks and audio between ComfyUI's types and numpy.

ComfyUI passes IMAGE as a float tensor ``[F, H, W, C]`` in 0..1, MASK as ``[B, H, W]`` and
AUDIO as ``{"waveform": [B, C, T], "sample_rate": int}``. The engine computes on numpy;
these helpers convert at the node boundary. Without torch installed (the previz demo on a
fresh machine) the same values travel as numpy arrays, which every RefVideo node accepts.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np


def torch_available() -> bool:
    if "torch" in sys.modules:
        return True
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def to_numpy(value: Any, *, dtype: Any = np.float32) -> np.ndarray:
    """A numpy copy-free view (where possible) of a tensor or array."""
    if isinstance(value, np.ndarray):
        return value.astype(dtype, copy=False)
    detach = getattr(value, "detach", None)
    if detach is not None:
        tensor = detach()
        if getattr(tensor, "dtype", None) is not None and str(tensor.dtype) in ("torch.bfloat16", "torch.float16"):
            tensor = tensor.float()
        return tensor.cpu().numpy().astype(dtype, copy=False)
    return np.asarray(value, dtype=dtype)


def to_tensor(array: np.ndarray) -> Any:
    """A torch float32 tensor (ComfyUI's IMAGE, MASK and waveform type) from an array; numpy without torch."""
    array = np.ascontiguousarray(array, dtype=np.float32)
    if torch_available():
        import torch

        return torch.from_numpy(array)
    return array


def to_mask(array: np.ndarray) -> Any:
    """A ComfyUI MASK ``[B, H, W]``."""
    if array.ndim == 2:
        array = array[None]
    return to_tensor(array)


def image_batch(value: Any, *, input_name: str) -> np.ndarray:
    """Read an IMAGE input as float32 ``[F, H, W, C]`` with C = 3 or 4."""
    from .errors import InputError

    array = to_numpy(value)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[-1] not in (1, 3, 4) or 0 in array.shape:
        raise InputError(f"expects images shaped [frames, height, width, channels], got {tuple(array.shape)}.",
                         input=input_name, fix="Connect an IMAGE output (e.g. from a Load Image node).")
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return array


MAX_SAMPLE_RATE = 768_000


def audio_to_numpy(audio: Any, *, input_name: str = "audio") -> tuple[np.ndarray, int]:
    """A ComfyUI AUDIO dict as ``(samples [C, T] float32, sample_rate)`` (first batch item)."""
    from .errors import InputError

    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise InputError("expects ComfyUI AUDIO ({'waveform': [B, C, T], 'sample_rate': int}).",
                         input=input_name, fix="Connect an AUDIO output (e.g. from RefVideoAudio or Load Audio).")
    wave = to_numpy(audio["waveform"])
    if wave.ndim == 3:
        wave = wave[0]
    elif wave.ndim == 1:
        wave = wave[None]
    raw_rate = audio["sample_rate"]
    whole = isinstance(raw_rate, (int, np.integer)) or (isinstance(raw_rate, float) and raw_rate.is_integer())
    rate = int(raw_rate) if whole and not isinstance(raw_rate, bool) else 0  # NaN, inf, 44100.5, text: refused
    if wave.ndim != 2 or not 0 < rate <= MAX_SAMPLE_RATE:
        raise InputError(f"audio waveform shaped {tuple(wave.shape)} at {raw_rate!r} Hz is not usable.",
                         input=input_name, fix="Give a waveform [batch, channels, samples] and a whole sample rate "
                                               f"up to {MAX_SAMPLE_RATE}.")
    return wave, rate


def numpy_to_audio(samples: np.ndarray, sample_rate: int) -> dict:
    """ComfyUI AUDIO from ``[C, T]`` samples."""
    return {"waveform": to_tensor(samples[None].astype(np.float32)), "sample_rate": int(sample_rate)}


def fit_box(src_w: int, src_h: int, box_w: int, box_h: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """A ``src_w`` x ``src_h`` picture fitted (aspect kept) into a ``box_w`` x ``box_h`` box and centred:
    its ``(width, height)`` there and the ``(left, top)`` offset."""
    scale = min(box_w / src_w, box_h / src_h)
    size = (max(1, round(src_w * scale)), max(1, round(src_h * scale)))
    return size, ((box_w - size[0]) // 2, (box_h - size[1]) // 2)


def resize_frames(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """Frames ``[F, H, W, C]`` as float32 ``[F, height, width, 3]`` in 0..1: bicubic, antialiased when shrinking.

    Each channel is resized as a Pillow float image (no torch needed), frames in parallel threads
    (Pillow releases the GIL while resampling). Frames already at the size are returned as they are.
    """
    from PIL import Image

    frames = np.asarray(frames, dtype=np.float32)[..., :3]
    if frames.shape[1:3] == (height, width):
        return frames
    out = np.empty((len(frames), height, width, 3), dtype=np.float32)

    def resize(i: int) -> None:
        for c in range(3):
            plane = Image.fromarray(np.ascontiguousarray(frames[i, ..., c]), mode="F")
            out[i, ..., c] = np.asarray(plane.resize((width, height), Image.Resampling.BICUBIC))

    with ThreadPoolExecutor(max_workers=max(1, min(len(frames), os.cpu_count() or 1))) as pool:
        list(pool.map(resize, range(len(frames))))
    return np.clip(out, 0.0, 1.0, out=out)
