"""The PyAV encoder: every format decoded back, audio fitting, bad inputs, and no partial files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from refvideo.engine import host
from refvideo.engine.errors import InputError, Interrupted
from refvideo.engine.video import encoder

FPS = 16.0
# Saturated colour blocks (16 px, so 4:2:0 chroma never mixes two blocks) and a grey ramp.
BLOCKS = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (1.0, 1.0, 0.0), (0.2, 0.6, 0.9), (0.5, 0.5, 0.5)]


def blocks_clip(frames: int = 9, height: int = 32, width: int = 96, channels: int = 3) -> np.ndarray:
    clip = np.zeros((frames, height, width, channels), np.float32)
    for i, colour in enumerate(BLOCKS):
        clip[:, :16, i * 16:(i + 1) * 16, :3] = colour
    clip[:, 16:, :, :3] = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, None, :, None]
    if channels == 4:
        clip[..., 3] = 1.0
    for f in range(frames):  # a moving marker so frames differ
        clip[f, 20:28, (f * 8) % (width - 8):(f * 8) % (width - 8) + 8, :3] = 1.0
    return clip


def decode(path: Path) -> dict:
    """Everything the tests check, measured from the file with PyAV."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        ctx = video.codec_context
        info = {"codec": ctx.name, "pix_fmt": ctx.pix_fmt, "width": video.width, "height": video.height,
                "rate": float(video.average_rate), "tags": (ctx.color_primaries, ctx.color_trc, ctx.colorspace,
                                                            ctx.color_range),
                "metadata": {k.lower(): v for k, v in container.metadata.items()}}
        info["frames"] = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video)])
    info["count"] = info["frames"].shape[0]
    with av.open(str(path)) as container:
        if container.streams.audio:
            audio = container.streams.audio[0]
            samples = sum(frame.samples for frame in container.decode(audio))
            info["audio"] = {"codec": audio.codec_context.name, "rate": audio.rate, "channels": audio.channels,
                             "decoded_seconds": samples / audio.rate,
                             "declared_seconds": float(audio.duration * audio.time_base) if audio.duration else None}
    return info


def audio(seconds: float, rate: int = 44100, channels: int = 2, amplitude: float = 0.3) -> dict:
    t = np.arange(round(seconds * rate), dtype=np.float32) / rate
    wave = amplitude * np.sin(2 * np.pi * 440.0 * t)
    return {"waveform": torch.from_numpy(np.repeat(wave[None, None], channels, axis=1).copy()), "sample_rate": rate}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --------------------------------------------------------------------------- formats


def test_mp4_default_is_h264_yuv420p_bt709_with_faithful_colours(tmp_path):
    clip = blocks_clip()
    result = encoder.encode_video(torch.from_numpy(clip), FPS, tmp_path / "clip.mp4")
    got = decode(result.path)
    assert (got["codec"], got["pix_fmt"], got["width"], got["height"]) == ("h264", "yuv420p", 96, 32)
    assert got["count"] == 9 and got["rate"] == FPS
    assert got["tags"] == (1, 1, 1, 1)  # BT.709 primaries, transfer, matrix; limited range
    expected = np.clip(clip * 255 + 0.5, 0, 255).astype(np.uint8)
    for i in range(len(BLOCKS)):  # block centres: a BT.601/709 mix-up moves saturated colours by 10+ levels
        block = np.s_[:, 4:12, i * 16 + 4:i * 16 + 12]
        assert np.abs(got["frames"][block].astype(int) - expected[block]).max() <= 4, BLOCKS[i]
    with open(result.path, "rb") as fh:
        head = fh.read(4096)
    assert 0 < head.find(b"moov") < head.find(b"mdat")  # faststart: the index comes before the media data


@pytest.mark.parametrize("fmt, codec, pix_fmt", [
    ("mp4-h265", "hevc", "yuv420p"),
    ("webm-vp9", "vp9", "yuv420p"),
    ("mov-prores", "prores", "yuv422p10le"),
])
def test_video_formats_decode_back(tmp_path, fmt, codec, pix_fmt):
    preset = encoder.get_format(fmt)
    result = encoder.encode_video(blocks_clip(), FPS, tmp_path / f"clip{preset.extension}", format=fmt,
                                  speed="ultrafast", audio=audio(0.5625))
    got = decode(result.path)
    height = 64 if fmt == "mp4-h265" else 32  # libx265 is given at least 64x64 (padded): smaller sizes crash it
    assert (got["codec"], got["pix_fmt"], got["width"], got["height"], got["count"]) == (codec, pix_fmt, 96, height, 9)
    assert got["rate"] == FPS and got["tags"] == (1, 1, 1, 1)
    assert got["audio"]["codec"] == ("opus" if fmt == "webm-vp9" else "aac")
    assert abs(got["audio"]["decoded_seconds"] - 9 / FPS) < 1 / FPS
    assert np.abs(got["frames"][:, 4:12, 4:12].astype(int) - [255, 0, 0]).max() <= 6


def test_gif_and_webp_previews(tmp_path):
    clip = blocks_clip(frames=6)
    gif = encoder.encode_video(clip, FPS, tmp_path / "clip.gif", format="gif")
    got = decode(gif.path)
    assert got["count"] == 6 and (got["width"], got["height"]) == (96, 32)
    assert abs(got["rate"] - FPS) < 1.0  # GIF delays are whole centiseconds
    assert np.abs(got["frames"][:, 4:12, 20:28].astype(int) - [0, 255, 0]).max() <= 8  # per-frame palette
    webp = encoder.encode_video(clip, FPS, tmp_path / "clip.webp", format="webp", crf=10)
    with Image.open(webp.path) as image:  # FFmpeg cannot decode animated WebP; Pillow can
        assert (image.n_frames, image.size, image.info["loop"]) == (6, (96, 32), 0)
        image.seek(0)
        assert np.abs(np.asarray(image.convert("RGB"))[4:12, 4:12].astype(int) - [255, 0, 0]).max() <= 12


def test_png_sequence_is_a_folder_of_lossless_frames_with_alpha(tmp_path):
    clip = blocks_clip(frames=4, channels=4)
    clip[:, :, :8, 3] = 0.0
    result = encoder.encode_video(clip, FPS, tmp_path / "clip_00001", format="png-sequence",
                                  metadata={"refvideo": '{"seed": 3}'})
    names = sorted(p.name for p in result.path.iterdir())
    assert names == ["frame_00001.png", "frame_00002.png", "frame_00003.png", "frame_00004.png", "metadata.json"]
    assert result.files == sorted(result.path.glob("*.png"))
    with Image.open(result.path / "frame_00002.png") as image:
        pixels = np.asarray(image)
    assert image.mode == "RGBA" and pixels.shape == (32, 96, 4)
    assert np.array_equal(pixels, np.clip(clip[1] * 255 + 0.5, 0, 255).astype(np.uint8))  # lossless
    assert json.loads((result.path / "metadata.json").read_text())["refvideo"] == '{"seed": 3}'


# --------------------------------------------------------------------------- correctness fixes


def test_odd_sizes_are_padded_to_even_by_repeating_the_edge(tmp_path):
    clip = blocks_clip(height=33, width=95)
    result = encoder.encode_video(clip, FPS, tmp_path / "odd.mp4")
    got = decode(result.path)
    assert (got["width"], got["height"]) == (96, 34) == (result.width, result.height)
    assert any("padded to 96x34" in w for w in result.warnings)
    frame = got["frames"][0].astype(int)
    assert np.abs(frame[:, 95] - frame[:, 94]).max() <= 6 and np.abs(frame[33] - frame[32]).max() <= 6


def test_rgba_is_composited_over_black_where_the_format_has_no_alpha(tmp_path):
    clip = blocks_clip(channels=4)
    clip[:, :, 48:, 3] = 0.0  # right half transparent
    result = encoder.encode_video(clip, FPS, tmp_path / "rgba.mp4")
    got = decode(result.path)
    assert got["frames"][:, 2:30, 52:92].max() <= 20  # transparent -> black
    assert np.abs(got["frames"][:, 4:12, 4:12].astype(int) - [255, 0, 0]).max() <= 6
    assert any("composited over black" in w for w in result.warnings)
    webp = encoder.encode_video(clip, FPS, tmp_path / "rgba.webp", format="webp")
    with Image.open(webp.path) as image:
        alpha = np.asarray(image.convert("RGBA"))[..., 3]
    assert alpha[:, 56:].max() <= 10 and alpha[:, :40].min() >= 245


def test_out_of_range_and_nan_values_are_clipped_with_a_warning(tmp_path):
    clip = np.full((5, 32, 32, 3), 0.5, np.float32)
    clip[1, :16] = np.nan
    clip[2, :16] = 3.0
    clip[3, :16] = -2.0
    result = encoder.encode_video(clip, FPS, tmp_path / "clipped.png", format="png-sequence")
    frames = [np.asarray(Image.open(p)) for p in result.files]
    assert frames[1][:16].max() == 0 and frames[2][:16].min() == 255 and frames[3][:16].max() == 0
    assert (frames[0] == 128).all() and (frames[1][16:] == 128).all()
    assert any("3 of 5 frames" in w and "clipped" in w for w in result.warnings)


def test_uint8_lists_and_iterators_are_accepted(tmp_path):
    clip = np.clip(blocks_clip() * 255 + 0.5, 0, 255).astype(np.uint8)
    listed = encoder.encode_video(list(clip), FPS, tmp_path / "list.png", format="png-sequence")
    assert np.array_equal(np.asarray(Image.open(listed.files[3])), clip[3])
    streamed = encoder.encode_video(iter(clip), 12.0, tmp_path / "iter.mp4", frame_count=9)
    got = decode(streamed.path)
    assert got["count"] == 9 and got["rate"] == 12.0


# --------------------------------------------------------------------------- audio


@pytest.mark.parametrize("fmt, seconds, rate, channels, fit, frames_out", [
    ("mp4-h264", 0.30, 22050, 1, encoder.FIT_AUDIO, 17),  # mono, shorter: padded
    ("mp4-h264", 2.00, 48000, 2, encoder.FIT_AUDIO, 17),  # stereo, longer: trimmed
    ("mov-prores", 0.61, 44100, 2, encoder.FIT_VIDEO, 10),  # the video trimmed to the audio
    ("webm-vp9", 1.50, 44100, 1, encoder.FIT_AUDIO, 17),  # resampled to 48 kHz for Opus
])
def test_audio_is_muxed_resampled_and_fitted(tmp_path, fmt, seconds, rate, channels, fit, frames_out):
    preset = encoder.get_format(fmt)
    result = encoder.encode_video(blocks_clip(frames=17), FPS, tmp_path / f"a{preset.extension}", format=fmt,
                                  speed="ultrafast", audio=audio(seconds, rate, channels), audio_fit=fit)
    got = decode(result.path)
    video_seconds = got["count"] / got["rate"]
    assert got["count"] == frames_out == result.frames
    assert got["audio"]["channels"] == channels
    assert got["audio"]["rate"] == (48000 if fmt == "webm-vp9" else rate)
    assert abs(got["audio"]["decoded_seconds"] - video_seconds) < 1 / FPS
    if got["audio"]["declared_seconds"] is not None:
        assert abs(got["audio"]["declared_seconds"] - video_seconds) < 1 / FPS
    assert abs(result.audio_seconds - video_seconds) < 1 / FPS


def test_audio_out_of_range_is_clipped_and_formats_without_audio_say_so(tmp_path):
    loud = audio(0.5, amplitude=3.0)
    loud["waveform"][0, 0, :100] = float("nan")
    result = encoder.encode_video(blocks_clip(), FPS, tmp_path / "loud.mp4", audio=loud)
    assert any("outside -1..1" in w for w in result.warnings)
    gif = encoder.encode_video(blocks_clip(), FPS, tmp_path / "quiet.gif", format="gif", audio=audio(0.5))
    assert any("carries no audio" in w for w in gif.warnings)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs, input_name", [
    ({"frames": np.zeros((4, 4), np.float32)}, "frames"),
    ({"frames": np.zeros((2, 8, 8, 5), np.float32)}, "frames"),
    ({"frames": np.zeros((0, 8, 8, 3), np.float32)}, "frames"),
    ({"frames": []}, "frames"),
    ({"frames": 3}, "frames"),
    ({"fps": 0}, "fps"),
    ({"fps": float("nan")}, "fps"),
    ({"fps": -16}, "fps"),
    ({"fps": 1000}, "fps"),
    ({"fps": "fast"}, "fps"),
    ({"format": "avi"}, "format"),
    ({"crf": 52}, "crf"),
    ({"crf": -1}, "crf"),
    ({"crf": 19.5}, "crf"),
    ({"format": "webm-vp9", "crf": 64}, "crf"),
    ({"speed": "warp"}, "preset"),
    ({"audio_fit": "stretch"}, "audio_fit"),
    ({"audio": {"waveform": np.zeros((1, 3, 1000), np.float32), "sample_rate": 44100}}, "audio"),
    ({"audio": {"waveform": np.zeros((1, 2, 0), np.float32), "sample_rate": 44100}}, "audio"),
    ({"audio": {"waveform": np.zeros((1, 2, 100), np.float32), "sample_rate": 0}}, "audio"),
    ({"audio": np.zeros((2, 100))}, "audio"),
])
def test_bad_input_is_refused_before_anything_is_written(tmp_path, kwargs, input_name):
    args = {"frames": blocks_clip(frames=3), "fps": FPS, **kwargs}
    with pytest.raises(InputError) as caught:
        encoder.encode_video(args.pop("frames"), args.pop("fps"), tmp_path / "out" / "bad.mp4", **args)
    assert caught.value.input == input_name and caught.value.fix
    assert leftovers(tmp_path / "out") == []


# --------------------------------------------------------------------------- nothing half-written


@pytest.mark.parametrize("fmt", ["mp4-h264", "png-sequence"])
def test_an_interrupt_mid_encode_leaves_no_file(tmp_path, fmt):
    seen = []

    def stop_at_frame_5(description, value, total):
        seen.append(value)
        if value == 5:
            host.request_interrupt()

    remove = host.add_progress_listener(stop_at_frame_5)
    try:
        with pytest.raises(Interrupted):
            encoder.encode_video(blocks_clip(frames=12), FPS, tmp_path / "out" / "clip_00001.mp4", format=fmt)
    finally:
        remove()
    assert seen[-1] == 5 and leftovers(tmp_path / "out") == []


def test_frames_that_turn_invalid_mid_stream_leave_no_file(tmp_path):
    good = blocks_clip(frames=6)

    def frames():
        yield from good[:4]
        yield np.zeros((16, 16, 3), np.float32)  # the renderer changed size mid-clip

    with pytest.raises(InputError, match="frame 4 is shaped"):
        encoder.encode_video(frames(), FPS, tmp_path / "out" / "clip.mp4", frame_count=6)
    with pytest.raises(InputError, match="ended after 6 of 9"):
        encoder.encode_video(iter(good), FPS, tmp_path / "out" / "clip.mp4", frame_count=9)
    assert leftovers(tmp_path / "out") == []


def test_a_full_disk_gives_a_clear_error_and_no_partial_file(tmp_path):
    script = textwrap.dedent(f"""
        import resource, signal, numpy as np
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (40000, 40000))  # writes past 40 kB fail like a full disk
        from refvideo.engine import host
        from refvideo.engine.video import encoder
        from refvideo.engine.errors import WriteFailed
        host.set_progress_bars(False)
        noise = np.random.default_rng(0).random((24, 128, 128, 3), dtype=np.float32)
        try:
            encoder.encode_video(noise, 16.0, {str(tmp_path / "out" / "full.mp4")!r}, speed="ultrafast")
        except WriteFailed as exc:
            print(type(exc).__name__, "exit", str(exc.exit_code) + ":", exc)
    """)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60,
                          check=False)
    assert "WriteFailed exit 1: filename_prefix: the disk is full" in done.stdout, done.stderr[-2000:]
    assert leftovers(tmp_path / "out") == []


def test_frames_stream_without_a_second_copy_of_the_clip(tmp_path):
    clip = blocks_clip(frames=48, height=128, width=256)  # 18 MiB of float32 frames
    frame_bytes = clip[0].nbytes
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        encoder.encode_video(clip, FPS, tmp_path / "stream.mp4", speed="ultrafast")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * frame_bytes, f"peak Python allocations {peak / frame_bytes:.1f} frames"


def test_presets_are_data_with_one_file_per_format():
    names = encoder.format_names()
    assert names[0] == encoder.DEFAULT_FORMAT == "mp4-h264"
    assert set(names) == {p.stem for p in encoder.FORMATS_DIR.glob("*.json")}
    assert set(names) == {"mp4-h264", "mp4-h265", "webm-vp9", "mov-prores", "webp", "gif", "png-sequence"}


def test_encoding_works_without_torch_installed(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # as on a machine without torch: "import torch" fails
        import numpy as np
        from refvideo.engine import host
        from refvideo.engine.video import encoder, manifest
        host.set_progress_bars(False)
        clip = np.random.default_rng(0).random((5, 32, 48, 3), dtype=np.float32)
        tags = manifest.container_metadata('{{"seed": 1}}')
        result = encoder.encode_video(clip, 16.0, {str(tmp_path / "no_torch.mp4")!r}, metadata=tags)
        print(result.frames, manifest.read_manifest(result.path))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout.strip().splitlines()[-1] == "5 {'seed': 1}", done.stderr[-2000:]


# --------------------------------------------------------------------------- encoder edges


def test_repeated_h265_encodes_of_one_and_two_frames_in_one_process(tmp_path):
    """libx265 sometimes leaves a garbage decode timestamp on a 1-2 frame clip; the writer repairs it."""
    rng = np.random.default_rng(0)
    for i in range(24):
        frames = rng.random((1 + i % 2, 64, 64, 3), dtype=np.float32)
        result = encoder.encode_video(frames, 16.0, tmp_path / f"c{i}.mp4", format="mp4-h265", speed="ultrafast")
        with av.open(str(result.path)) as container:
            assert sum(1 for _ in container.decode(video=0)) == 1 + i % 2


def test_small_odd_sizes_are_padded_for_h265(tmp_path):
    code = textwrap.dedent("""
        import sys, numpy as np
        from refvideo.engine.video import encoder
        for w, h in ((15, 9), (33, 17), (40, 24), (1, 1), (63, 65)):
            r = encoder.encode_video(np.random.rand(2, h, w, 3).astype(np.float32), 16.0, f"{sys.argv[1]}/{w}x{h}.mp4",
                                     format="mp4-h265", speed="ultrafast")
            print(w, h, r.width, r.height)
    """)
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=300,
                          check=False)  # in its own process: libx265 corrupts its heap at some small sizes
    assert done.returncode == 0, done.stderr
    sizes = [tuple(map(int, line.split())) for line in done.stdout.splitlines()]
    assert sizes == [(15, 9, 64, 64), (33, 17, 64, 64), (40, 24, 64, 64), (1, 1, 64, 64), (63, 65, 64, 66)]


def test_gif_refuses_a_frame_rate_it_cannot_time_before_writing(tmp_path):
    frames = np.zeros((4, 16, 16, 3), np.float32)
    encoder.encode_video(frames, 100.0, tmp_path / "ok.gif", format="gif")
    for fps in (120.0, 240.0):
        with pytest.raises(InputError, match="at most 100 frames per second") as info:
            encoder.encode_video(frames, fps, tmp_path / "fast.gif", format="gif")
        assert info.value.input == "fps"
    assert not (tmp_path / "fast.gif").exists() and not [p for p in tmp_path.iterdir() if "partial" in p.name]
