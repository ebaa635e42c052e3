"""Reading reference images from files and IMAGE sockets into RGB float arrays.

File inputs name a file in the input folder (``photo.png``) or one of the pack's read-only
samples (``samples/mara.png``); both are resolved with realpath + commonpath containment, so
absolute paths, ``..`` and links leading out of those folders are refused.

Every image comes out as RGB float32 ``[H, W, 3]`` with 8-bit-exact values (k/255), which
keeps content hashes stable and lets saved reference sets reload identical tensors. Unusual
but valid files work: CMYK, 16-bit, palette, RGBA and LA (composited over white; the alpha
becomes the matte), animated (the first frame), EXIF-rotated. Broken ones (empty, truncated,
not an image, decompression bombs) are refused with an error naming the input.
"""

from __future__ import annotations

import hashlib
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .. import host
from ..errors import InputError
from ..frames import fit_box, image_batch
from ..paths import SAMPLES_DIR, SAMPLES_PREFIX, contained
from .reference import Reference, is_subject

NONE = "none"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
MAX_PIXELS = 100_000_000   # larger images are refused before decoding (decompression bombs)
MAX_SIDE = 2048            # prepared references are downscaled to this longer side
HIGH_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")
_decode_lock = threading.Lock()


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """One decoded reference image, before background removal and checks."""

    rgb: np.ndarray               # float32 [H, W, 3], k/255 values, composited over white
    alpha: np.ndarray | None      # float32 [H, W] when the source had transparency
    source: str                   # the file name as given, or the socket name
    notes: tuple[str, ...] = ()   # what was done to read it (first frame, downscaled, ...)

    @property
    def sha256(self) -> str:
        return pixels_sha256(self.rgb)


# --------------------------------------------------------------------------- pixel helpers


def to_uint8(array: np.ndarray) -> np.ndarray:
    """0..1 floats to uint8 (rounded half up, clipped); k/255 values give back exactly k."""
    scaled = np.multiply(array, np.float32(255.0), dtype=np.float32)
    np.clip(scaled, 0.0, 255.0, out=scaled)
    scaled += np.float32(0.5)
    return scaled.astype(np.uint8)


def from_uint8(array: np.ndarray) -> np.ndarray:
    """uint8 to float32 k/255."""
    return np.asarray(array, dtype=np.float32) / np.float32(255.0)


def pixels_sha256(rgb: np.ndarray) -> str:
    """The content hash of an image: its size and 8-bit RGB pixels, whatever file held them."""
    pixels = to_uint8(rgb)
    digest = hashlib.sha256(f"{pixels.shape[1]}x{pixels.shape[0]}:".encode())
    digest.update(np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------- file names


def _images_in(folder: Path) -> list[str]:
    """Image files under ``folder`` as ``/``-separated relative names: its own files, then subfolders'.

    Subfolders matter because ComfyUI stores pasted images in ``input/pasted/``; hidden files
    and folders are skipped.
    """
    if not folder.is_dir():
        return []
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        relative = Path(root).relative_to(folder).as_posix()
        for name in files:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                found.append(name if relative == "." else f"{relative}/{name}")
    return sorted(found, key=lambda n: (n.count("/"), n))


def list_image_names() -> list[str]:
    """The image files a reference input may name: the input folder, then ``samples/<file>``."""
    return _images_in(host.input_dir()) + [SAMPLES_PREFIX + n for n in _images_in(SAMPLES_DIR) if "/" not in n]


def resolve_image_name(name: str, *, input_name: str) -> Path:
    """The real path of a file input, contained in the input folder or the pack's samples."""
    text = str(name).strip()
    text = text.removesuffix(" [input]")
    if text.replace("\\", "/").startswith(SAMPLES_PREFIX):
        root, relative = SAMPLES_DIR, text[len(SAMPLES_PREFIX):]
    else:
        root, relative = host.input_dir(), text
    path = contained(root, relative, input_name=input_name)
    if not path.is_file():
        raise InputError(f"the image '{name}' does not exist in {root}.", input=input_name,
                         fix="Choose an image from the list, or upload one into ComfyUI's input folder.")
    return path


# --------------------------------------------------------------------------- decoding


def read_image_file(path: str | os.PathLike, *, input_name: str, source: str | None = None) -> LoadedImage:
    """Decode an image file; refuse broken files with an :class:`InputError` naming ``input_name``."""
    path = Path(path)
    label = source or path.name
    fix = "Re-export the image as PNG or JPEG and choose it again."
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"cannot read '{label}' ({exc.strerror or exc}).", input=input_name, fix=fix) from None
    if size == 0:
        raise InputError(f"'{label}' is empty (0 bytes).", input=input_name, fix=fix)
    with _decode_lock, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        truncated_setting = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False  # ComfyUI may have switched it on
        try:
            with Image.open(path) as img:
                _refuse_bomb(img, label, input_name)
                frames = getattr(img, "n_frames", 1)
                img.seek(0)
                if img.format == "JPEG":
                    img.draft("RGB", (MAX_SIDE, MAX_SIDE))
                img.load()
                rgb, alpha, notes = _pixels(img, label)
        except UnidentifiedImageError:
            raise InputError(f"'{label}' is not an image Pillow can read.", input=input_name, fix=fix) from None
        except Image.DecompressionBombError as exc:
            raise InputError(f"'{label}' is refused as a decompression bomb ({exc}).", input=input_name,
                             fix=f"Use an image under {MAX_PIXELS // 1_000_000} megapixels.") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise InputError(f"'{label}' is damaged or truncated ({exc}).", input=input_name, fix=fix) from None
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = truncated_setting
    if frames > 1:
        notes = (f"first frame of {frames}",) + notes
    return LoadedImage(rgb, alpha, label, notes)


def _refuse_bomb(img: Image.Image, label: str, input_name: str) -> None:
    width, height = img.size
    if width <= 0 or height <= 0:
        raise InputError(f"'{label}' has no pixels ({width}x{height}).", input=input_name,
                         fix="Choose another image.")
    if width * height > MAX_PIXELS:
        raise InputError(f"'{label}' claims {width}x{height} pixels ({width * height / 1e6:.0f} MP), over the "
                         f"{MAX_PIXELS // 1_000_000} MP limit; it is refused before decoding (a decompression bomb "
                         "or an oversized scan).", input=input_name,
                         fix=f"Downscale it below {MAX_PIXELS // 1_000_000} megapixels.")


def _pixels(img: Image.Image, label: str) -> tuple[np.ndarray, np.ndarray | None, tuple[str, ...]]:
    """RGB and alpha of a loaded Pillow image, EXIF-rotated and size-capped."""
    notes: list[str] = []
    try:
        img = ImageOps.exif_transpose(img)
    except (OSError, ValueError, TypeError, KeyError, SyntaxError):
        notes.append("its EXIF orientation could not be read and was ignored")
    if img.mode in HIGH_BIT_MODES:
        img = _high_bit_to_rgb(img, notes)
    return _rgb_and_alpha(img, notes)


def _rgb_and_alpha(img: Image.Image, notes: list[str]) -> tuple[np.ndarray, np.ndarray | None, tuple[str, ...]]:
    """Float RGB (over white where transparent) and alpha (None when opaque), longer side capped."""
    has_alpha = "A" in img.getbands() or "a" in img.getbands() or (img.mode == "P" and "transparency" in img.info)
    img = img.convert("RGBA" if has_alpha else "RGB")
    if max(img.size) > MAX_SIDE:
        original = img.size
        img.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
        notes.append(f"downscaled from {original[0]}x{original[1]} to {img.size[0]}x{img.size[1]}")
    array = np.asarray(img)
    rgb, alpha = from_uint8(array[..., :3]), None
    if has_alpha and array[..., 3].min() < 255:
        alpha = from_uint8(array[..., 3])
        rgb = composite_over_white(rgb, alpha)
    return rgb, alpha, tuple(notes)


def _high_bit_to_rgb(img: Image.Image, notes: list[str]) -> Image.Image:
    """16-bit / 32-bit grey to 8-bit RGB, scaled by the format's range (never stretched).

    ``I;16`` is 0..65535; ``I`` and ``F`` carry no range, so the smallest of 0..1, 0..255
    and 0..65535 that holds the values is used.
    """
    values = np.asarray(img, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.all():  # NaN or infinity (float TIFFs): those pixels, not the whole image, become black
        bad = int(values.size - np.count_nonzero(finite))
        notes.append(f"{bad} pixel(s) were not numbers (NaN or infinite) and were drawn black")
        values = np.where(finite, values, 0.0)
    peak = float(values.max()) if values.size else 0.0
    ranges = (65535.0,) if img.mode.startswith("I;16") else (1.0, 255.0, 65535.0)
    scale = next((r for r in ranges if peak <= r), max(peak, 1.0))
    return Image.fromarray(to_uint8(values / scale)).convert("RGB")


def composite_over_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``rgb`` over white where ``alpha`` (1 = opaque) says, 8-bit-exact (:func:`to_uint8`'s rounding).

    The one matte-over-white of the pack: reading transparent files, the reference previews and
    the references a diffusion model is given all use it."""
    a = alpha[..., None]
    return from_uint8(to_uint8(rgb * a + (1.0 - a)))


def read_image_socket(value: Any, *, input_name: str) -> LoadedImage:
    """The first frame of an IMAGE input (``[F, H, W, C]``, C = 1, 3 or 4), 8-bit-exact."""
    batch = image_batch(value, input_name=input_name)
    notes = [f"first frame of a batch of {batch.shape[0]}"] if batch.shape[0] > 1 else []
    frame = batch[0]
    if not np.isfinite(frame).all():
        bad = int(frame.size - np.count_nonzero(np.isfinite(frame)))
        notes.append(f"{bad} value(s) were not numbers (NaN or infinite) and were clipped")
        frame = np.nan_to_num(frame, nan=0.0, posinf=1.0, neginf=0.0)
    pixels = to_uint8(frame)
    rgb, alpha, found = _rgb_and_alpha(Image.fromarray(pixels, "RGBA" if pixels.shape[-1] == 4 else "RGB"), notes)
    return LoadedImage(rgb, alpha, input_name, found)


# --------------------------------------------------------------------------- the sampler's canvas


def subject_box(alpha: np.ndarray, margin: float = 0.04) -> tuple[int, int, int, int] | None:
    """The mask's bounding box ``(top, bottom, left, right)`` plus a margin, or None when the mask covers
    (nearly) everything."""
    ys, xs = np.nonzero(alpha > 0.5)
    if ys.size == 0 or alpha.mean() > 0.98:
        return None
    h, w = alpha.shape
    my, mx = int(h * margin), int(w * margin)
    return max(ys.min() - my, 0), min(ys.max() + 1 + my, h), max(xs.min() - mx, 0), min(xs.max() + 1 + mx, w)


def sampler_canvas(ref: Reference, width: int, height: int) -> Image.Image:
    """A reference as the sampler feeds it: RGB, fitted (aspect kept) and centred on a white ``width`` x
    ``height`` canvas. A subject (character, prop) is first matted onto white by its mask and cropped to
    it; an environment or style image goes in whole."""
    rgb = np.clip(np.asarray(ref.image, dtype=np.float32)[..., :3], 0.0, 1.0)
    alpha = np.clip(np.asarray(ref.mask, dtype=np.float32), 0.0, 1.0)
    if alpha.shape != rgb.shape[:2] or not is_subject(ref.role):
        alpha = np.ones(rgb.shape[:2], dtype=np.float32)
    matted = composite_over_white(rgb, alpha)
    box = subject_box(alpha)
    if box is not None:
        top, bottom, left, right = box
        matted = matted[top:bottom, left:right]
    image = Image.fromarray(to_uint8(matted), "RGB")
    size, offset = fit_box(image.width, image.height, width, height)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    canvas.paste(image.resize(size, Image.Resampling.LANCZOS), offset)
    return canvas
