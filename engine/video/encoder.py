"""Write frames (and optional audio) to a video file with PyAV, one frame at a time.

Formats are data: one JSON file per format in ``engine/data/formats/``. A clip is encoded
into a temporary file (or folder, for PNG sequences) beside its target and renamed onto it
only when complete, so an interrupt, a full disk or an encoder error leaves nothing behind.
Frames stream into the encoder: each one is converted into a reused buffer, so memory grows
by a few frames, not by a copy of the clip. This module never imports torch (frames arrive
as numpy arrays, torch tensors or any sequence or iterator of frames).
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import queue
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from .. import host
from ..errors import GenerationError, InputError, RefVideoError, WriteFailed, require
from ..frames import audio_to_numpy, to_numpy
from ..paths import DATA_DIR
from ..storage import staged
from .manifest import MANIFEST_KEY, SEQUENCE_METADATA

log = logging.getLogger("refvideo")

FORMATS_DIR = DATA_DIR / "formats"
DEFAULT_FORMAT = "mp4-h264"
DEFAULT_CRF = 19
SPEEDS: tuple[str, ...] = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
                           "veryslow")
DEFAULT_SPEED = "medium"
FIT_AUDIO = "fit audio to video"
FIT_VIDEO = "trim video to audio"
AUDIO_FITS: tuple[str, ...] = (FIT_AUDIO, FIT_VIDEO)
MAX_FPS = 240.0
_REORDER_FRAMES = 64  # a decode timestamp further than this before its frame's is an encoder's garbage
_DISK_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


# --------------------------------------------------------------------------- formats


@dataclass(frozen=True)
class QualityKnob:
    """How the ``crf`` input maps onto one codec option: ``offset + scale * crf`` within min..max."""

    option: str
    scale: float = 1.0
    offset: float = 0.0
    min: int = 0
    max: int = 51

    def crf_range(self) -> tuple[int, int]:
        ends = sorted(((self.min - self.offset) / self.scale, (self.max - self.offset) / self.scale))
        return math.ceil(ends[0]), math.floor(ends[1])

    def value(self, crf: int) -> str:
        return str(round(self.offset + self.scale * crf))


@dataclass(frozen=True)
class AudioEncoding:
    """How a format encodes audio: the codec, its bit rate and the sample rates it takes."""

    codec: str
    bit_rate: int
    sample_rates: tuple[int, ...]

    def rate_for(self, rate: int) -> int:
        """``rate`` when the codec takes it, else the nearest higher supported rate (or the highest)."""
        if rate in self.sample_rates:
            return rate
        higher = [r for r in self.sample_rates if r > rate]
        return min(higher) if higher else max(self.sample_rates)


@dataclass(frozen=True)
class ClipFormat:
    """One output format, read from its JSON file."""

    name: str
    description: str
    container: str
    extension: str
    mime: str
    kind: str  # "video", "animation" or "image_sequence"
    codec: str
    pix_fmt: str
    alpha_pix_fmt: str | None = None
    alpha_options: Mapping[str, str] = field(default_factory=dict)
    codec_tag: str | None = None
    even_size: bool = False
    min_size: int = 1  # the smallest width and height the codec encodes reliably; smaller frames are padded
    max_fps: float = MAX_FPS  # the highest frame rate the container can time
    bt709: bool = False
    palette: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    quality: QualityKnob | None = None
    speed_option: str | None = None
    speed_values: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    audio: AudioEncoding | None = None
    container_options: Mapping[str, str] = field(default_factory=dict)
    metadata: bool = False
    frame_pattern: str | None = None
    order: int = 100

    @property
    def is_sequence(self) -> bool:
        return self.kind == "image_sequence"

    def speed_options(self, speed: str) -> dict[str, str]:
        if self.speed_option:
            return {self.speed_option: speed}
        return dict(self.speed_values.get(speed, {}))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClipFormat:
        video = data["video"]
        speed = video.get("speed") or {}
        audio = data.get("audio")
        return cls(
            name=data["name"], description=data.get("description", ""), container=data["container"],
            extension=data.get("extension", ""), mime=data["mime"], kind=data.get("kind", "video"),
            codec=video["codec"], pix_fmt=video["pix_fmt"], alpha_pix_fmt=video.get("alpha_pix_fmt"),
            alpha_options={k: str(v) for k, v in (video.get("alpha_options") or {}).items()},
            codec_tag=video.get("codec_tag"), even_size=bool(video.get("even_size")),
            min_size=int(video.get("min_size", 1)), max_fps=float(video.get("max_fps", MAX_FPS)),
            bt709=bool(video.get("bt709")),
            palette=video.get("palette"), options={k: str(v) for k, v in (video.get("options") or {}).items()},
            quality=QualityKnob(**video["quality"]) if video.get("quality") else None,
            speed_option=speed.get("option"), speed_values=speed.get("values") or {},
            audio=(AudioEncoding(audio["codec"], int(audio["bit_rate"]), tuple(audio["sample_rates"]))
                   if audio else None),
            container_options={k: str(v) for k, v in (data.get("container_options") or {}).items()},
            metadata=bool(data.get("metadata")), frame_pattern=data.get("frame_pattern"),
            order=int(data.get("order", 100)),
        )


@lru_cache(maxsize=1)
def load_formats() -> dict[str, ClipFormat]:
    """Every format in ``engine/data/formats/``, in display order."""
    formats = []
    for path in sorted(FORMATS_DIR.glob("*.json")):
        formats.append(ClipFormat.from_dict(json.loads(path.read_text(encoding="utf-8"))))
    formats.sort(key=lambda p: (p.order, p.name))
    return {p.name: p for p in formats}


def format_names() -> list[str]:
    """Format names for the ``format`` combo (the default first)."""
    return list(load_formats())


def get_format(name: str, *, input_name: str = "format") -> ClipFormat:
    formats = load_formats()
    if name not in formats:
        raise InputError(f"'{name}' is not a known format.", input=input_name,
                         fix=f"Choose one of: {', '.join(formats)}.")
    return formats[name]


# --------------------------------------------------------------------------- results


@dataclass
class EncodeResult:
    """What was written: the file (or folder), its measured shape and any warnings."""

    path: Path
    format: str
    mime: str
    frames: int
    width: int
    height: int
    fps: float
    audio_seconds: float | None = None
    audio_sample_rate: int | None = None
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.frames / self.fps


# --------------------------------------------------------------------------- input checks


@dataclass(frozen=True)
class _Clip:
    """The checked video side of a request (the frame size is read from the first frame)."""

    frames: Any
    count: int
    fps: float


def check_fps(fps: Any, *, input_name: str = "fps") -> float:
    """A finite frame rate in (0, 240] or :class:`InputError`."""
    try:
        value = float(fps)
    except (TypeError, ValueError):
        value = float("nan")
    if not math.isfinite(value) or value <= 0 or value > MAX_FPS:
        raise InputError(f"{fps!r} frames per second is not usable.", input=input_name,
                         fix=f"Give a frame rate above 0 and at most {MAX_FPS:g} (the sampler's fps output).")
    return value


def check_rate_for(fmt: ClipFormat, fps: float) -> None:
    """Refuse a frame rate the format cannot time (GIF counts in 1/100 s), before anything is written."""
    if fps > fmt.max_fps:
        raise InputError(f"{fmt.name} plays at most {fmt.max_fps:g} frames per second, not {fps:g}.",
                         input="fps", fix=f"Give at most {fmt.max_fps:g} fps, or choose another format.")


def frame_shape(frames: Any, *, input_name: str = "frames", frame_count: int | None = None) -> tuple[int, ...]:
    """``(count, height, width, channels)`` of an IMAGE batch, array or sequence, without copying it."""
    shape = getattr(frames, "shape", None)
    if shape is not None:
        shape = tuple(int(s) for s in shape)
        if len(shape) == 3:
            shape = (1, *shape)
    elif isinstance(frames, (list, tuple)):
        if not frames:
            shape = (0,)
        else:
            first = getattr(frames[0], "shape", None) or np.shape(frames[0])
            shape = (len(frames), *(int(s) for s in first))
    elif frame_count is not None:
        shape = (int(frame_count),)
    else:
        raise InputError(f"expects frames as an IMAGE batch [frames, height, width, channels], got "
                         f"{type(frames).__name__}.", input=input_name,
                         fix="Connect an IMAGE output (e.g. the sampler's frames).")
    if shape[0] < 1:
        raise InputError("the clip has no frames.", input=input_name,
                         fix="Connect a non-empty IMAGE batch (at least one frame).")
    if len(shape) != 1 and (len(shape) != 4 or shape[-1] not in (1, 3, 4) or min(shape[1:3]) < 1):
        raise InputError(f"expects images shaped [frames, height, width, channels] with 1, 3 or 4 channels, "
                         f"got {shape}.", input=input_name, fix="Connect an IMAGE output (e.g. the sampler's frames).")
    return shape


def _check_clip(frames: Any, fps: Any, frame_count: int | None) -> _Clip:
    rate = check_fps(fps)
    return _Clip(frames, frame_shape(frames, frame_count=frame_count)[0], rate)


def check_settings(format: str, crf: Any, speed: str, audio_fit: str = FIT_AUDIO) -> ClipFormat:
    """The format, after checking ``crf``, the encoder speed (the node's ``preset`` input) and ``audio_fit``."""
    fmt = get_format(format)
    if isinstance(crf, bool) or not isinstance(crf, (int, np.integer)) and not (
            isinstance(crf, float) and crf.is_integer()):
        raise InputError(f"crf must be a whole number, not {crf!r}.", input="crf",
                         fix="Give a whole number, e.g. 19 (lower is better quality).")
    if fmt.quality is not None:
        low, high = fmt.quality.crf_range()
        if not low <= int(crf) <= high:
            raise InputError(f"crf {int(crf)} is outside {low}-{high} for {fmt.name}.", input="crf",
                             fix=f"Give a crf from {low} to {high} (lower is better quality).")
    if speed not in SPEEDS:
        raise InputError(f"'{speed}' is not an encoder preset.", input="preset",
                         fix=f"Choose one of: {', '.join(SPEEDS)}.")
    if audio_fit not in AUDIO_FITS:
        raise InputError(f"'{audio_fit}' is not an audio fit.", input="audio_fit",
                         fix=f"Choose one of: {', '.join(AUDIO_FITS)}.")
    return fmt


# --------------------------------------------------------------------------- audio


@dataclass
class _AudioTrack:
    samples: np.ndarray  # [channels, samples] float32, fitted to the video
    rate: int
    layout: str
    fed: int = 0

    @property
    def seconds(self) -> float:
        return self.samples.shape[1] / self.rate


def _prepare_audio(audio: Any, fmt: ClipFormat, clip: _Clip, fit: str,
                   warnings: list[str]) -> tuple[_AudioTrack | None, int]:
    """Check and fit the audio; returns the track and the (possibly trimmed) video frame count."""
    if audio is None:
        return None, clip.count
    samples, rate = audio_to_numpy(audio)
    if samples.shape[0] not in (1, 2):
        raise InputError(f"audio has {samples.shape[0]} channels; mono or stereo is supported.", input="audio",
                         fix="Mix the audio down to mono or stereo before encoding.")
    if samples.shape[1] == 0:
        raise InputError("audio has no samples.", input="audio", fix="Connect audio with a length above zero.")
    if fmt.audio is None:
        warnings.append(f"{fmt.name} carries no audio; the audio was not saved (choose an MP4, MOV or WebM format).")
        return None, clip.count
    count = clip.count
    if fit == FIT_VIDEO:
        count = max(1, min(clip.count, round(samples.shape[1] / rate * clip.fps)))
        if count < clip.count:
            warnings.append(f"the video was trimmed from {clip.count} to {count} frames to end with the audio.")
    wanted = round(count / clip.fps * rate)
    fitted = np.zeros((samples.shape[0], wanted), dtype=np.float32)
    keep = min(wanted, samples.shape[1])
    fitted[:, :keep] = samples[:, :keep]
    if samples.shape[1] > wanted:
        warnings.append(f"the audio ({samples.shape[1] / rate:.2f} s) was trimmed to the video "
                        f"({wanted / rate:.2f} s).")
    elif samples.shape[1] < wanted:
        warnings.append(f"the audio ({samples.shape[1] / rate:.2f} s) was padded with silence to the video "
                        f"({wanted / rate:.2f} s).")
    peak = np.abs(fitted).max(initial=0.0)
    if not math.isfinite(float(peak)) or peak > 1.0:
        warnings.append("audio samples outside -1..1 or not a number were clipped.")
        np.nan_to_num(fitted, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
        np.clip(fitted, -1.0, 1.0, out=fitted)
    return _AudioTrack(fitted, rate, "mono" if fitted.shape[0] == 1 else "stereo"), count


# --------------------------------------------------------------------------- frames


class _FrameConverter:
    """Float frames in 0..1 -> uint8 RGB(A) frames padded to the output size, in reused buffers."""

    def __init__(self, height: int, width: int, channels: int, out_height: int, out_width: int,
                 keep_alpha: bool) -> None:
        self.shape = (height, width, channels)
        self.keep_alpha = keep_alpha
        self.out_channels = 4 if keep_alpha else 3
        self._scratch = np.empty((height, width, self.out_channels), np.float32)
        self._alpha = np.empty((height, width, 1), np.float32) if channels == 4 and not keep_alpha else None
        self._out = np.empty((out_height, out_width, self.out_channels), np.uint8)
        self.clipped_frames = 0

    def __call__(self, frame: np.ndarray, index: int) -> np.ndarray:
        if frame.shape != self.shape:
            raise InputError(f"frame {index} is shaped {frame.shape}, but the clip's frames are {self.shape}.",
                             input="frames", fix="Give frames that all have the same size and channels.")
        height, width = self.shape[:2]
        out = self._out
        if frame.dtype == np.uint8:
            self._copy_uint8(frame)
        else:
            self._convert_float(frame)
        if out.shape[0] > height:
            out[height:, :width] = out[height - 1:height, :width]
        if out.shape[1] > width:
            out[:, width:] = out[:, width - 1:width]
        return out

    def _copy_uint8(self, frame: np.ndarray) -> None:
        height, width, channels = self.shape
        target = self._out[:height, :width]
        if channels == 4 and not self.keep_alpha:
            target[...] = (frame[..., :3].astype(np.uint16) * frame[..., 3:4] + 127) // 255
        else:
            target[...] = frame[..., :self.out_channels]

    def _convert_float(self, frame: np.ndarray) -> None:
        height, width = self.shape[:2]
        low, high = frame.min(), frame.max()  # NaN propagates into both
        if not (low >= 0.0 and high <= 1.0):
            self.clipped_frames += 1
            frame = np.nan_to_num(frame, nan=0.0, posinf=1.0, neginf=0.0)
        scratch = self._scratch
        if self._alpha is not None:  # composite RGBA over black
            np.clip(frame[..., :3], 0.0, 1.0, out=scratch)
            np.clip(frame[..., 3:4], 0.0, 1.0, out=self._alpha)
            scratch *= self._alpha
        else:
            np.clip(frame[..., :self.out_channels], 0.0, 1.0, out=scratch)
        scratch *= 255.0
        scratch += 0.5
        self._out[:height, :width] = scratch


def _iter_frames(clip: _Clip, count: int) -> Iterator[np.ndarray]:
    """One float32 (or uint8) numpy frame at a time, copying at most one frame."""
    if hasattr(clip.frames, "shape") or isinstance(clip.frames, (list, tuple)):
        source: Iterable[Any] = (clip.frames[i] for i in range(count))
        if getattr(clip.frames, "ndim", 4) == 3:
            source = iter([clip.frames])
    else:
        source = clip.frames
    for index, frame in enumerate(source):
        if index >= count:
            break
        is_bytes = str(getattr(frame, "dtype", "")) in ("uint8", "torch.uint8")
        array = to_numpy(frame, dtype=np.uint8 if is_bytes else np.float32)
        if array.ndim == 2:
            array = array[..., None]
        yield array


# --------------------------------------------------------------------------- writing


def _even(value: int) -> int:
    return value + (value % 2)


def _add_video_stream(container: Any, fmt: ClipFormat, rate: Fraction, width: int, height: int, crf: int,
                      speed: str, alpha: bool) -> Any:
    options = dict(fmt.options)
    if fmt.quality is not None:
        options[fmt.quality.option] = fmt.quality.value(crf)
    options.update(fmt.speed_options(speed))
    if alpha:
        options.update(fmt.alpha_options)
    stream = container.add_stream(fmt.codec, rate=rate, options=options)
    stream.width = width
    stream.height = height
    stream.pix_fmt = fmt.alpha_pix_fmt if alpha else fmt.pix_fmt
    if fmt.codec_tag:
        stream.codec_tag = fmt.codec_tag
    stream.codec_context.thread_count = 0  # one per core, as the ffmpeg command line does
    stream.codec_context.thread_type = "AUTO"  # frame threads where the codec has them (PyAV's default: slices)
    if fmt.bt709:
        ctx = stream.codec_context
        ctx.color_primaries = ctx.color_trc = ctx.colorspace = 1  # ITU-R BT.709
        ctx.color_range = 1  # limited ("TV", MPEG) range
    return stream


class _PaletteFilter:
    """A per-frame 256-colour palette (palettegen + paletteuse) for GIF, streaming."""

    def __init__(self, width: int, height: int, rate: Fraction) -> None:
        import av.filter

        self.graph = av.filter.Graph()
        self.source = self.graph.add_buffer(width=width, height=height, format="rgb24", time_base=1 / rate)
        split = self.graph.add("split")
        generate = self.graph.add("palettegen", "stats_mode=single")
        use = self.graph.add("paletteuse", "new=1")
        self.sink = self.graph.add("buffersink")
        self.source.link_to(split)
        split.link_to(generate, 0, 0)
        split.link_to(use, 1, 0)
        generate.link_to(use, 0, 1)
        use.link_to(self.sink)
        self.graph.configure()

    def __call__(self, frame: Any | None) -> list[Any]:
        """Push a frame (None at the end) and return the paletted frames ready so far."""
        import av

        self.source.push(frame)
        frames = []
        while True:
            try:
                frames.append(self.sink.pull())
            except (av.BlockingIOError, av.EOFError):
                return frames


@dataclass
class _Writer:
    """An open PyAV container with its video (and audio) stream."""

    container: Any
    video: Any
    fmt: ClipFormat
    rate: Fraction
    pixel_format: str
    audio: Any = None
    track: _AudioTrack | None = None
    palette: _PaletteFilter | None = None
    last_dts: int | None = None

    def mux_video(self, packets: list[Any]) -> None:
        """Mux encoded video packets, repairing a decode timestamp the encoder left unset or out of range
        (libx265 sometimes does for clips of 1-2 frames, and the MP4 muxer then refuses the packet)."""
        for packet in packets:
            if packet.pts is not None:
                window = _REORDER_FRAMES / (float(packet.time_base or 1 / self.rate) * float(self.rate))
                if packet.dts is None or packet.dts > packet.pts or packet.dts < packet.pts - window or (
                        self.last_dts is not None and packet.dts <= self.last_dts):
                    packet.dts = packet.pts if self.last_dts is None else max(self.last_dts + 1, packet.pts)
                self.last_dts = packet.dts
            self.container.mux(packet)

    def prepare(self, rgb: np.ndarray, index: int) -> Any:
        """An encoder-ready frame: BT.709 YUV where the format says so (swscale, on the caller's thread)."""
        import av

        frame = av.VideoFrame.from_ndarray(rgb, format="rgba" if rgb.shape[-1] == 4 else "rgb24")
        if self.fmt.bt709:
            frame = frame.reformat(format=self.pixel_format, dst_colorspace="ITU709", dst_color_range="MPEG")
        frame.pts = index
        frame.time_base = 1 / self.rate
        return frame

    def write_frame(self, frame: Any, index: int) -> None:
        for out in (self.palette(frame) if self.palette is not None else [frame]):
            self.mux_video(self.video.encode(out))
        if self.track is not None:
            self.write_audio(round((index + 1) * self.track.rate / self.rate))

    def write_audio(self, until: int) -> None:
        import av

        track = self.track
        assert track is not None and self.audio is not None  # called only for a clip with audio
        until = min(until, track.samples.shape[1])
        if until <= track.fed:
            return
        chunk = np.ascontiguousarray(track.samples[:, track.fed:until])
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=track.layout)
        frame.sample_rate = track.rate
        frame.pts = track.fed
        frame.time_base = Fraction(1, track.rate)
        track.fed = until
        self.container.mux(self.audio.encode(frame))

    def finish(self) -> None:
        for out in (self.palette(None) if self.palette is not None else []):
            self.mux_video(self.video.encode(out))
        self.mux_video(self.video.encode(None))
        if self.audio is not None and self.track is not None:
            self.write_audio(self.track.samples.shape[1])
            self.container.mux(self.audio.encode(None))


def _open_writer(path: str, fmt: ClipFormat, clip: _Clip, width: int, height: int, crf: int, speed: str,
                 alpha: bool, track: _AudioTrack | None, metadata: Mapping[str, str] | None) -> _Writer:
    av = require("av", "Video encoding")
    container = av.open(path, mode="w", format=fmt.container, options=dict(fmt.container_options))
    try:
        if metadata and fmt.metadata and not fmt.is_sequence:
            for key, value in metadata.items():
                container.metadata[key] = value
        rate = Fraction(clip.fps).limit_denominator(1001)
        video = _add_video_stream(container, fmt, rate, width, height, crf, speed, alpha)
        writer = _Writer(container, video, fmt, rate, video.pix_fmt)
        if fmt.palette:
            writer.palette = _PaletteFilter(width, height, rate)
        if track is not None and fmt.audio is not None:
            writer.audio = container.add_stream(fmt.audio.codec, rate=fmt.audio.rate_for(track.rate),
                                                layout=track.layout)
            writer.audio.bit_rate = fmt.audio.bit_rate
            writer.track = track
        return writer
    except BaseException:
        container.close()
        raise


def _failure(exc: BaseException, target: Path, fmt: ClipFormat) -> BaseException:
    """A clear RefVideo error for a failure while writing (interrupts pass through unchanged)."""
    if host.is_interrupt(exc) or isinstance(exc, RefVideoError):
        return exc
    code = getattr(exc, "errno", None)
    if isinstance(exc, OSError) and code in _DISK_FULL:
        return WriteFailed(f"the disk is full (or the file size limit was reached) while writing {target}; "
                            "no partial file was kept.", input="filename_prefix",
                            fix="Free some disk space or write to another folder, then run again.")
    if isinstance(exc, OSError) and code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return WriteFailed(f"cannot write {target} ({exc.strerror or exc}).", input="filename_prefix",
                            fix="Choose an output folder you can write to.")
    return GenerationError(f"the {fmt.codec} encoder failed while writing {target.name} "
                           f"({type(exc).__name__}: {exc}); no partial file was kept.",
                           fix="Check the frames and settings; try another format or preset.")


def encode_video(
    frames: Any,
    fps: float,
    target: str | os.PathLike,
    *,
    format: str = DEFAULT_FORMAT,
    crf: int = DEFAULT_CRF,
    speed: str = DEFAULT_SPEED,
    audio: Mapping[str, Any] | None = None,
    audio_fit: str = FIT_AUDIO,
    metadata: Mapping[str, str] | None = None,
    frame_count: int | None = None,
    progress: str = "Encoding video",
    exclusive: bool = False,
    tag: str = "",
) -> EncodeResult:
    """Encode ``frames`` at ``fps`` into ``target`` (a file, or a folder for PNG sequences).

    ``frames``: an IMAGE batch ``[F, H, W, C]`` (torch tensor or numpy array, float 0..1 or
    uint8), a list of frames, or an iterator of frames with ``frame_count``. C is 1, 3 or 4:
    RGBA keeps its alpha where the format can (WebP, PNG), else it is composited over black.
    Odd sizes are padded to even where the codec needs it; values outside 0..1 and NaN are
    clipped with a warning. ``audio`` is ComfyUI AUDIO; ``audio_fit`` pads/trims the audio to
    the video or trims the video to the audio. ``metadata`` (string values) goes into the
    container where the format holds metadata. With ``exclusive``, ``target`` is never replaced:
    when another writer took that name first the clip goes to the next counter (``result.path``).
    ``tag`` names the temporary file's purpose (see :func:`storage.staged`).
    """
    fmt = check_settings(format, crf, speed, audio_fit)
    clip = _check_clip(frames, fps, frame_count)
    check_rate_for(fmt, clip.fps)
    warnings: list[str] = []
    track, count = _prepare_audio(audio, fmt, clip, audio_fit, warnings)
    target = Path(target)
    try:
        with staged(target, folder=fmt.is_sequence, exclusive=exclusive, tag=tag) as staging:
            result = _encode_into(staging.tmp, clip, count, fmt, int(crf), speed, track, metadata, warnings,
                                  progress)
    except BaseException as exc:
        failure = _failure(exc, target, fmt)
        if failure is exc:
            raise
        raise failure from exc
    target = result.path = staging.path
    if fmt.is_sequence:
        result.files = sorted(target.glob("*.png"))
    else:
        result.files = [target]
    for message in result.warnings:
        log.warning("RefVideo encoder: %s", message)
    return result


class _FramesAhead:
    """Prepare frames on a helper thread, a few ahead of the encoder.

    numpy, swscale and the encoder release the GIL, so converting frame n+1 overlaps with
    encoding frame n (as a separate ffmpeg process would). An error while preparing is raised
    again in the caller; :meth:`close` stops the helper.
    """

    _END = object()

    def __init__(self, items: Iterator[Any], depth: int = 3) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(items,), name="refvideo-frames", daemon=True)
        self._thread.start()

    def _offer(self, entry: tuple[Any, BaseException | None]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, items: Iterator[Any]) -> None:
        try:
            for item in items:
                if not self._offer((item, None)):
                    return
            self._offer((self._END, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, which raises it
            self._offer((None, exc))

    def __iter__(self) -> Iterator[Any]:
        while True:
            item, error = self._queue.get()
            if error is not None:
                raise error
            if item is self._END:
                return
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def _encode_into(tmp: Path, clip: _Clip, count: int, fmt: ClipFormat, crf: int, speed: str,
                 track: _AudioTrack | None, metadata: Mapping[str, str] | None, warnings: list[str],
                 description: str) -> EncodeResult:
    frames = _iter_frames(clip, count)
    first = next(frames, None)
    if first is None:
        raise InputError(f"the frames ended after 0 of {count}.", input="frames",
                         fix="Give as many frames as frame_count says.")
    height, width, channels = first.shape
    alpha = channels == 4 and fmt.alpha_pix_fmt is not None
    out_h, out_w = (_even(height), _even(width)) if fmt.even_size else (height, width)
    out_h, out_w = max(out_h, fmt.min_size), max(out_w, fmt.min_size)
    if (out_h, out_w) != (height, width):
        why = f"{fmt.pix_fmt} needs even sizes" if fmt.even_size else ""
        if min(height, width) < fmt.min_size:
            why += f"{' and ' if why else ''}{fmt.codec} needs at least {fmt.min_size}x{fmt.min_size}"
        warnings.append(f"{width}x{height} was padded to {out_w}x{out_h} ({why}).")
    if channels == 4 and not alpha:
        warnings.append(f"{fmt.name} has no transparency; RGBA frames were composited over black.")
    converter = _FrameConverter(height, width, channels, out_h, out_w, alpha)
    path = str(tmp / fmt.frame_pattern) if fmt.is_sequence and fmt.frame_pattern else str(tmp)
    writer = _open_writer(path, fmt, clip, out_w, out_h, crf, speed, alpha, track, metadata)
    ahead = _FramesAhead(writer.prepare(converter(frame, i), i) for i, frame in enumerate(chain([first], frames)))
    written = 0
    try:
        with host.Progress(count, description) as bar:
            for index, frame in enumerate(ahead):
                writer.write_frame(frame, index)
                written += 1
                bar.update()
        if written < count:
            raise InputError(f"the frames ended after {written} of {count}.", input="frames",
                             fix="Give as many frames as frame_count says.")
        writer.finish()
    except BaseException:
        ahead.close()
        _close_quietly(writer.container)
        raise
    ahead.close()
    writer.container.close()
    if converter.clipped_frames:
        warnings.append(f"{converter.clipped_frames} of {count} frames had values outside 0..1 or not a number; "
                        "they were clipped.")
    if fmt.is_sequence and metadata:
        (tmp / SEQUENCE_METADATA).write_text(json.dumps(dict(metadata), indent=2, ensure_ascii=False) + "\n",
                                             encoding="utf-8")
    elif metadata and not fmt.metadata and MANIFEST_KEY in metadata:
        warnings.append(f"{fmt.name} holds no metadata; the generation info was not saved in the file.")
    return EncodeResult(
        path=tmp, format=fmt.name, mime=fmt.mime, frames=written, width=out_w, height=out_h, fps=clip.fps,
        audio_seconds=round(track.seconds, 6) if track is not None else None,
        audio_sample_rate=fmt.audio.rate_for(track.rate) if track is not None and fmt.audio else None,
        warnings=warnings,
    )


def _close_quietly(container: Any) -> None:
    """Close a container after a failure; a second error from closing must not hide the first."""
    try:
        container.close()
    except Exception:  # the original failure is what the user needs to see
        log.debug("closing a failed container raised", exc_info=True)
