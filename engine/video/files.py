"""Clips saved into the output folder, and the file-backed VIDEO object that points at them.

:func:`save_clip` is what the VideoEncode node calls: it places the file under the output
folder (the prefix may name subfolders but never leave it), gathers the metadata, encodes,
and returns the preview entries ComfyUI shows plus a VIDEO value. The VIDEO value is
ComfyUI's own file-backed object where ComfyUI provides one and can read the format;
otherwise :class:`VideoFile`, which offers the same methods (dimensions, duration, frame
count and rate, components, ``save_to``), so core SaveVideo and other packs interoperate.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from .. import host
from ..credits import clip_charges
from ..errors import InputError, require
from ..frames import numpy_to_audio, to_tensor
from ..paths import contained
from ..storage import NAME_MAX_BYTES, remove_stale_partials, unique_path, validate_name
from . import manifest
from .encoder import DEFAULT_CRF, DEFAULT_FORMAT, DEFAULT_SPEED, FIT_AUDIO, EncodeResult, encode_video, get_format

log = logging.getLogger("refvideo")
DEFAULT_PREFIX = "RefVideo/clip"
MAX_PREFIX_BYTES = 1024
_PIL_FORMATS = {"webp"}  # animated WebP: FFmpeg cannot decode it, Pillow can
MP4_STREAM_CODECS = frozenset({"h264", "hevc", "vp9", "av1", "aac", "opus", "mp3"})


def copies_into_mp4(path: str | os.PathLike) -> bool:
    """True when every stream of ``path`` can be copied into an MP4 (what core Save Video writes)."""
    path = Path(path)
    if path.is_dir() or path.suffix.lower().lstrip(".") in _PIL_FORMATS:
        return False
    av = require("av", "Reading video files")
    with av.open(str(path)) as container:
        return all(s.codec_context.name in MP4_STREAM_CODECS for s in container.streams if s.type in ("video", "audio"))


@dataclass
class VideoComponents:
    """Frames ``[F, H, W, 3]`` float 0..1, optional AUDIO, frame rate and container metadata."""

    images: Any
    audio: dict | None
    frame_rate: Fraction
    metadata: dict = field(default_factory=dict)


class VideoFile:
    """A video on disk (a file, or a PNG-sequence folder) with ComfyUI's VIDEO methods."""

    def __init__(self, path: str | os.PathLike, *, frame_rate: float | Fraction | None = None,
                 start_time: float = 0.0, duration: float = 0.0) -> None:
        self.path = Path(path)
        self._rate = Fraction(frame_rate).limit_denominator(1001) if frame_rate else None
        self._start = float(start_time)
        self._duration = float(duration)

    def __repr__(self) -> str:
        return f"VideoFile({str(self.path)!r})"

    # -- what the file is

    @property
    def is_sequence(self) -> bool:
        return self.path.is_dir()

    def _sequence_files(self) -> list[Path]:
        return sorted(self.path.glob("*.png"))

    def _uses_pillow(self) -> bool:
        return self.is_sequence or self.path.suffix.lower().lstrip(".") in _PIL_FORMATS

    def get_stream_source(self) -> str:
        return str(self.path)

    def get_container_format(self) -> str:
        if self.is_sequence:
            return "image2"
        if self._uses_pillow():
            return self.path.suffix.lower().lstrip(".")
        av = require("av", "Reading video files")
        with av.open(str(self.path)) as container:
            return container.format.name

    def get_dimensions(self) -> tuple[int, int]:
        if self._uses_pillow():
            from PIL import Image

            with Image.open(self._sequence_files()[0] if self.is_sequence else self.path) as image:
                return image.size
        av = require("av", "Reading video files")
        with av.open(str(self.path)) as container:
            stream = container.streams.video[0]
            return stream.width, stream.height

    def get_frame_rate(self) -> Fraction:
        if self._rate is not None:
            return self._rate
        if self._uses_pillow():
            return self._pillow_rate()
        av = require("av", "Reading video files")
        with av.open(str(self.path)) as container:
            rate = container.streams.video[0].average_rate
        return Fraction(rate) if rate else Fraction(1)

    def _pillow_rate(self) -> Fraction:
        from PIL import Image

        if self.is_sequence:
            return Fraction(16)
        with Image.open(self.path) as image:
            duration_ms = image.info.get("duration") or 0
        return Fraction(1000, int(duration_ms)) if duration_ms else Fraction(16)

    def get_frame_count(self) -> int:
        window = self._window(self._raw_frame_count())
        return max(0, window.stop - window.start)

    def _raw_frame_count(self, *, exact: bool = True) -> int:
        """Frames in the whole file; with ``exact=False``, 0 where the container does not say (no decoding)."""
        if self.is_sequence:
            return len(self._sequence_files())
        if self._uses_pillow():
            from PIL import Image

            with Image.open(self.path) as image:
                return int(getattr(image, "n_frames", 1))
        av = require("av", "Reading video files")
        with av.open(str(self.path)) as container:
            stream = container.streams.video[0]
            if stream.frames or not exact:
                return int(stream.frames)
            return sum(1 for _ in container.decode(stream))

    def get_duration(self) -> float:
        return self.get_frame_count() / float(self.get_frame_rate())

    # -- decoding

    def _window(self, count: int | None = None) -> slice:
        """The trimmed frames of a file of ``count`` frames (None: not known; the slice may end at None)."""
        rate = float(self.get_frame_rate())
        start = round(self._start * rate)
        stop = start + round(self._duration * rate) if self._duration else count
        return slice(start, stop if count is None or stop is None else min(stop, count))

    def iter_frames(self) -> Iterator[np.ndarray]:
        """The (trimmed) clip's frames one at a time, uint8 RGB ``[H, W, 3]``: a clip read without holding it."""
        return self._rgb_frames()

    def _rgb_frames(self) -> Iterator[np.ndarray]:
        """The trimmed clip's frames, one uint8 RGB ``[H, W, 3]`` array at a time."""
        window = self._window()
        frames = self._decode_rgb()
        try:
            yield from islice(frames, window.start, window.stop)
        finally:
            frames.close()

    def _decode_rgb(self) -> Generator[np.ndarray, None, None]:
        if self._uses_pillow():
            from PIL import Image, ImageSequence

            if self.is_sequence:
                for path in self._sequence_files():
                    with Image.open(path) as image:
                        yield np.asarray(image.convert("RGB"))
                return
            with Image.open(self.path) as image:
                for frame in ImageSequence.Iterator(image):
                    yield np.asarray(frame.convert("RGB"))
            return
        av = require("av", "Reading video files")
        with av.open(str(self.path)) as container:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")

    def _audio(self, first: int, end: int) -> dict | None:
        """The audio under frames ``first``..``end`` of the file (all of it when the clip is not trimmed)."""
        if self._uses_pillow():
            return None
        av = require("av", "Reading video files")
        chunks: list[np.ndarray] = []
        with av.open(str(self.path)) as container:
            if not container.streams.audio:
                return None
            stream = container.streams.audio[0]
            rate = stream.rate
            resampler = av.AudioResampler(format="fltp")
            for frame in container.decode(stream):
                for planar in resampler.resample(frame):
                    chunks.append(planar.to_ndarray())
        if not chunks:
            return None
        samples = np.concatenate(chunks, axis=1)
        if self._start or self._duration:
            fps = float(self.get_frame_rate())
            samples = np.ascontiguousarray(samples[:, int(first / fps * rate):int(end / fps * rate)])
        return numpy_to_audio(samples, rate)

    def get_components(self) -> VideoComponents:
        """Decode the whole clip: frames as a torch tensor (numpy without torch), audio, rate, metadata."""
        rate = self.get_frame_rate()
        window = self._window(self._raw_frame_count(exact=False) or None)
        expected = window.stop - window.start if window.stop is not None else 64  # 64: a guess, grown if short
        frames = _float_frames(self._rgb_frames(), expected)
        if frames is None:
            width, height = self.get_dimensions()
            frames = np.empty((0, height, width, 3), np.float32)
        audio = self._audio(window.start, window.start + frames.shape[0])
        return VideoComponents(to_tensor(frames), audio, rate, manifest.read_metadata(self.path))

    def as_trimmed(self, start_time: float = 0.0, duration: float = 0.0,
                   strict_duration: bool = True) -> VideoFile | None:
        """A view of ``duration`` seconds from ``start_time`` (None if the clip is too short and strict)."""
        trimmed = VideoFile(self.path, frame_rate=self._rate, start_time=self._start + (start_time or 0.0),
                            duration=duration or 0.0)
        if strict_duration and duration and trimmed.get_duration() + 1e-6 < duration:
            return None
        return trimmed

    # -- saving

    def save_to(self, path: str | os.PathLike | io.BytesIO, format: Any = "auto", codec: Any = "auto",
                metadata: Mapping[str, Any] | None = None) -> None:
        """Write the clip to ``path`` as MP4: streams copied where possible, else re-encoded as H.264."""
        format_name = str(getattr(format, "value", format) or "auto").lower()
        codec_name = str(getattr(codec, "value", codec) or "auto").lower()
        if format_name not in ("auto", "mp4"):
            raise InputError(f"a VIDEO can be saved as MP4 only, not '{format_name}'.", input="format",
                             fix="Choose format 'auto' or 'mp4'.")
        tags = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
        in_memory = isinstance(path, io.BytesIO)
        if self._can_copy_streams(codec_name) and not isinstance(path, io.BytesIO):
            self._copy_streams(Path(path), tags)
            return
        first, count = self._window().start, self.get_frame_count()
        target = (Path(host.temp_dir()) / f"refvideo_video_{os.getpid()}_{id(path)}.mp4"
                  if isinstance(path, io.BytesIO) else Path(path))
        try:  # decoded frames stream into the encoder: the clip is never held whole in memory
            encode_video(self._rgb_frames(), float(self.get_frame_rate()), target, frame_count=count,
                         audio=self._audio(first, first + count), metadata=tags, format=DEFAULT_FORMAT)
            if isinstance(path, io.BytesIO):
                path.write(target.read_bytes())
        finally:
            if in_memory:
                target.unlink(missing_ok=True)

    def _can_copy_streams(self, codec_name: str) -> bool:
        if self._start or self._duration or not copies_into_mp4(self.path):
            return False
        if codec_name == "auto":
            return True
        av = require("av", "Reading video files")
        with av.open(str(self.path)) as container:
            return container.streams.video[0].codec_context.name == codec_name

    def _copy_streams(self, target: Path, tags: Mapping[str, str]) -> None:
        from ..storage import atomic_path

        av = require("av", "Writing video files")
        with av.open(str(self.path)) as source, atomic_path(target) as tmp, \
                av.open(str(tmp), mode="w", format="mp4", options={"movflags": "use_metadata_tags"}) as output:
            for key, value in {**dict(source.metadata), **tags}.items():
                output.metadata[key] = value
            mapping = {}
            for stream in source.streams:
                if stream.type in ("video", "audio"):
                    mapping[stream] = output.add_stream_from_template(template=stream, opaque=True)
            for packet in source.demux(*mapping):
                if packet.dts is None:
                    continue
                packet.stream = mapping[packet.stream]
                output.mux(packet)


def _float_frames(frames: Iterable[np.ndarray], expected: int) -> np.ndarray | None:
    """uint8 frames as one float32 ``[F, H, W, C]`` array in 0..1 (None without frames).

    The array is allocated once for ``expected`` frames and doubled only if more arrive.
    """
    out: np.ndarray | None = None
    count = 0
    for frame in frames:
        if out is None:
            out = np.empty((max(expected, 1), *frame.shape), np.float32)
        elif count == out.shape[0]:
            out = np.concatenate([out, np.empty_like(out)])
        target = out[count]
        target[...] = frame
        target /= 255.0
        count += 1
    return None if out is None else out[:count]


# --------------------------------------------------------------------------- saving into the output folder


@dataclass
class SavedClip:
    """A clip written by :func:`save_clip`."""

    result: EncodeResult
    subfolder: str
    preview: dict[str, list]
    video: Any

    @property
    def path(self) -> Path:
        return self.result.path


def _prefix_place(filename_prefix: Any) -> tuple[Path, str, str]:
    """The folder, file stem and subfolder (posix, relative to the output folder) a prefix names."""
    if not isinstance(filename_prefix, str):
        raise InputError(f"expects text, got {type(filename_prefix).__name__}.", input="filename_prefix",
                         fix=f"Give a prefix such as '{DEFAULT_PREFIX}'.")
    root = host.output_dir()
    text = (filename_prefix or "").strip().replace("\\", "/") or DEFAULT_PREFIX
    if text.endswith("/"):
        text += "clip"
    resolved = contained(root, text, input_name="filename_prefix")
    stem = validate_name(resolved.name, kind="file name", input_name="filename_prefix")
    folder = resolved.parent
    real_root = Path(os.path.realpath(root))
    subfolder = folder.relative_to(real_root).as_posix() if folder != real_root else ""
    return folder, stem, subfolder


def check_prefix(filename_prefix: Any) -> None:
    """Refuse a prefix that no clip could be written under (a part that is a file, a folder name too
    long for the file system), so that it is refused before anything renders or is charged."""
    if isinstance(filename_prefix, str):
        try:
            size = len(filename_prefix.encode("utf-8"))
        except UnicodeEncodeError:
            raise InputError("holds a character no file name can have (half of a character pair).",
                             input="filename_prefix", fix="Retype the prefix.") from None
        if size > MAX_PREFIX_BYTES:
            raise InputError(f"the prefix is {size} bytes long.", input="filename_prefix",
                             fix=f"Keep it under {MAX_PREFIX_BYTES} bytes.")
    folder, _stem, subfolder = _prefix_place(filename_prefix)
    for name in subfolder.split("/") if subfolder else []:
        if len(os.fsencode(name)) > NAME_MAX_BYTES:
            raise InputError(f"the folder name '{name[:40]}...' is longer than a file system allows "
                             f"({NAME_MAX_BYTES} bytes).", input="filename_prefix", fix="Use a shorter folder name.")
    root = Path(os.path.realpath(host.output_dir()))
    for part in [folder, *folder.parents]:
        if part == root or root not in part.parents:
            break
        if part.exists() and not part.is_dir():
            raise InputError(f"'{part.relative_to(root).as_posix()}' in the output folder is a file, so no clip "
                             "can be saved under it.", input="filename_prefix",
                             fix="Choose another prefix, or move that file away.")


def output_target(filename_prefix: str, extension: str) -> tuple[Path, str]:
    """The next free ``<prefix>_00001<ext>`` in the output folder (a suggestion: the encoder claims the name
    without replacing anything), and its subfolder (posix, relative)."""
    check_prefix(filename_prefix)
    folder, stem, subfolder = _prefix_place(filename_prefix)
    return unique_path(folder, stem, extension), subfolder


def preview_entries(result: EncodeResult, subfolder: str) -> dict[str, list]:
    """The UI payload ComfyUI shows for an output video (as core SaveVideo reports it)."""
    if get_format(result.format).is_sequence:
        folder = f"{subfolder}/{result.path.name}" if subfolder else result.path.name
        images = [{"filename": f.name, "subfolder": folder, "type": "output", "format": result.mime}
                  for f in result.files]
        return {"images": images, "animated": [False]}
    entry = {"filename": result.path.name, "subfolder": subfolder, "type": "output", "format": result.mime}
    return {"images": [entry], "animated": [True]}


def video_value(path: Path, fps: float) -> Any:
    """ComfyUI's own VIDEO for ``path`` where it can read and re-save it as MP4, else a :class:`VideoFile`.

    ProRes, GIF, WebP and PNG sequences get a :class:`VideoFile`, which re-encodes them as H.264
    when saved as MP4 (ComfyUI's object would try to copy their streams into MP4 and fail).
    """
    if copies_into_mp4(path):
        native = host.comfy_video_from_file(path)
        if native is not None:
            return native
    return VideoFile(path, frame_rate=fps)


def save_clip(
    frames: Any,
    fps: float,
    filename_prefix: str = DEFAULT_PREFIX,
    *,
    format: str = DEFAULT_FORMAT,
    crf: int = DEFAULT_CRF,
    speed: str = DEFAULT_SPEED,
    audio: Mapping[str, Any] | None = None,
    audio_fit: str = FIT_AUDIO,
    generation_info: Any = None,
    prompt: dict | None = None,
    extra_pnginfo: dict | None = None,
) -> SavedClip:
    """Encode a clip into the output folder with its metadata (unless the host disabled metadata).

    When the write fails or is interrupted, the charge named in ``generation_info`` is refunded
    (see :mod:`engine.clip_charges`); once the file exists, the charge stands.
    """
    fmt = get_format(format)
    metadata = None
    info = manifest.parse_generation_info(generation_info)
    remove_stale_partials_once()
    if not host.metadata_disabled():
        metadata = manifest.container_metadata(info, prompt, extra_pnginfo)
    try:
        target, subfolder = output_target(filename_prefix, fmt.extension)
        result = encode_video(frames, fps, target, format=format, crf=crf, speed=speed, audio=audio,
                              audio_fit=audio_fit, metadata=metadata, exclusive=True,
                              tag=clip_charges.partial_tag(info))
    except BaseException as exc:
        clip_charges.refund_unwritten(info, exc)
        raise
    clip_charges.mark_written(info)
    return SavedClip(result, subfolder, preview_entries(result, subfolder), video_value(result.path, fps))


_swept: set[str] = set()


def remove_stale_partials_once() -> list[Path]:
    """Once per process and folder: remove the temporary files that killed or crashed writers left in the
    output and input folders (never a live writer's, see :func:`storage.remove_stale_partials`)."""
    removed: list[Path] = []
    for folder in (host.output_dir(), host.input_dir()):
        key = os.path.realpath(folder)
        if key in _swept:
            continue
        _swept.add(key)
        removed += remove_stale_partials(folder)
    for path in removed:
        log.warning("RefVideo: removed %s, a temporary file left by an earlier run that was stopped.", path)
    clip_charges.refund_abandoned([p.name for p in removed])
    return removed


def describe(saved: SavedClip) -> str:
    """One line for the node: what was written, plus any warnings."""
    r = saved.result
    name = f"{saved.subfolder}/{r.path.name}" if saved.subfolder else r.path.name
    text = f"Saved {name}: {r.frames} frames, {r.width}x{r.height} at {r.fps:g} fps ({r.seconds:.2f} s)"
    if r.audio_seconds is not None:
        text += f", audio {r.audio_seconds:.2f} s at {r.audio_sample_rate} Hz"
    return "\n".join([text + "."] + [f"Note: {w}" for w in r.warnings])
