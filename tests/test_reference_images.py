"""Reading reference images: unusual valid files work, broken ones and escapes are refused."""

from __future__ import annotations

import io
import os
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from refvideo.engine import host
from refvideo.engine.errors import InputError
from refvideo.engine.references import images as reference_images
from refvideo.engine.references.images import (
    MAX_SIDE,
    from_uint8,
    list_image_names,
    pixels_sha256,
    read_image_file,
    read_image_socket,
    resolve_image_name,
    to_uint8,
)
from refvideo.engine.storage import file_sha256
from synthetic_references import character


@pytest.fixture
def input_dir(refvideo_home):
    folder = host.input_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def samples(tmp_path, monkeypatch):
    folder = tmp_path / "samples"
    folder.mkdir()
    monkeypatch.setattr(reference_images, "SAMPLES_DIR", folder)
    return folder


def small_character() -> np.ndarray:
    return character(96, 128)


def read(path, **kwargs):
    return read_image_file(path, input_name="image_1", **kwargs)


# --------------------------------------------------------------------------- unusual but valid files


def test_png_reads_as_8bit_exact_rgb_and_hash_follows_pixels_not_container(tmp_path):
    pixels = small_character()
    Image.fromarray(pixels).save(tmp_path / "a.png")
    Image.fromarray(pixels).save(tmp_path / "a.bmp")
    png, bmp = read(tmp_path / "a.png"), read(tmp_path / "a.bmp")
    assert png.rgb.dtype == np.float32 and png.rgb.shape == (128, 96, 3)
    assert np.array_equal(to_uint8(png.rgb), pixels) and np.array_equal(png.rgb, bmp.rgb)
    assert png.alpha is None and png.sha256 == bmp.sha256 == pixels_sha256(from_uint8(pixels))
    assert file_sha256(tmp_path / "a.png") != file_sha256(tmp_path / "a.bmp")


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    pixels = small_character()
    Image.fromarray(pixels).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=98)
    loaded = read(tmp_path / "cmyk.jpg")
    assert loaded.rgb.shape == (128, 96, 3)
    assert np.abs(to_uint8(loaded.rgb).astype(int) - pixels).mean() < 6


def test_16bit_grey_png_keeps_its_range(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 64, dtype=np.uint16), (32, 1))
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    loaded = read(tmp_path / "deep.png")
    grey = to_uint8(loaded.rgb)[..., 0].astype(int)
    assert loaded.rgb.shape == (32, 64, 3)
    assert grey[0, 0] == 0 and grey[0, -1] == 255
    assert np.abs(grey[0] - np.round(np.linspace(0, 255, 64))).max() <= 1
    dark = np.full((8, 8), 1000, dtype=np.uint16)  # a dark 16-bit image is not stretched to white
    Image.fromarray(dark).save(tmp_path / "dark.png")
    assert to_uint8(read(tmp_path / "dark.png").rgb).max() == round(1000 / 65535 * 255)


def test_palette_with_transparency_and_rgba_become_matte_over_white(tmp_path):
    rgba = np.zeros((40, 40, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[10:30, 10:30, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "cut.png")
    palette = Image.fromarray(rgba, "RGBA").convert("P")  # transparency kept in the palette
    palette.save(tmp_path / "cut_p.png")
    for name in ("cut.png", "cut_p.png"):
        loaded = read(tmp_path / name)
        assert loaded.alpha is not None, name
        assert loaded.alpha[20, 20] == 1.0 and loaded.alpha[0, 0] == 0.0
        assert np.allclose(loaded.rgb[0, 0], 1.0)  # transparent -> white
        assert to_uint8(loaded.rgb)[20, 20, 0] == 200
    opaque = rgba.copy()
    opaque[..., 3] = 255
    Image.fromarray(opaque, "RGBA").save(tmp_path / "opaque.png")
    assert read(tmp_path / "opaque.png").alpha is None


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (24, 16), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    loaded = read(tmp_path / "anim.gif")
    assert to_uint8(loaded.rgb)[0, 0].tolist() == [255, 0, 0]
    assert any("first frame of 3" in note for note in loaded.notes)


def test_exif_rotation_is_applied(tmp_path):
    pixels = np.zeros((20, 60, 3), dtype=np.uint8)
    pixels[:, :10] = 255  # a white strip on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    Image.fromarray(pixels).save(tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95)
    loaded = read(tmp_path / "rot.jpg")
    assert loaded.rgb.shape == (60, 20, 3)  # portrait after rotation
    assert loaded.rgb[:10].mean() > 0.9 and loaded.rgb[-10:].mean() < 0.1  # the strip is now on top


def test_large_images_are_downscaled_to_the_cap(tmp_path):
    Image.new("RGB", (MAX_SIDE * 2, 600), (10, 20, 30)).save(tmp_path / "wide.png")
    loaded = read(tmp_path / "wide.png")
    assert loaded.rgb.shape == (300, MAX_SIDE, 3)
    assert any("downscaled from 4096x600" in note for note in loaded.notes)


# --------------------------------------------------------------------------- broken files


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def _truncated_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(small_character()).save(buffer, format="PNG")
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


def _truncated_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(small_character()).save(buffer, format="JPEG")
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


@pytest.mark.parametrize("content, words", [
    (b"", "empty"),
    (b"just some text, not pixels", "not an image"),
    (_png_header_only(40000, 40000), "decompression bomb"),
    (_truncated_png(), "damaged or truncated"),
    (_truncated_jpeg(), "damaged or truncated"),
])
def test_broken_files_are_refused_clearly(tmp_path, content, words, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # as ComfyUI may leave it
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    with pytest.raises(InputError) as caught:
        read(path, source="broken.png")
    assert words in str(caught.value) and caught.value.input == "image_1"
    assert "broken.png" in str(caught.value)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the global setting is restored


# --------------------------------------------------------------------------- IMAGE sockets


def test_image_socket_first_frame_alpha_and_numpy():
    frames = torch.zeros((2, 16, 24, 4))
    frames[0, ..., 1] = 1.0
    frames[0, 4:12, 6:18, 3] = 1.0
    loaded = read_image_socket(frames, input_name="image_in_1")
    assert loaded.rgb.shape == (16, 24, 3) and loaded.source == "image_in_1"
    assert loaded.alpha is not None and loaded.alpha[8, 10] == 1.0 and loaded.alpha[0, 0] == 0.0
    assert loaded.rgb[8, 10].tolist() == [0.0, 1.0, 0.0] and loaded.rgb[0, 0].tolist() == [1.0, 1.0, 1.0]
    assert any("first frame of a batch of 2" in n for n in loaded.notes)
    pixels = small_character()
    as_array = read_image_socket(from_uint8(pixels)[None], input_name="image_in_2")
    assert np.array_equal(to_uint8(as_array.rgb), pixels) and as_array.alpha is None


def test_image_socket_values_are_quantised_and_clipped():
    noisy = np.random.default_rng(0).uniform(-0.5, 1.5, (1, 8, 8, 3)).astype(np.float32)
    loaded = read_image_socket(noisy, input_name="image_in_1")
    assert loaded.rgb.min() >= 0 and loaded.rgb.max() <= 1
    assert np.array_equal(from_uint8(to_uint8(loaded.rgb)), loaded.rgb)


def test_image_socket_with_a_bad_shape_names_the_socket():
    with pytest.raises(InputError) as caught:
        read_image_socket(np.zeros((4, 4)), input_name="image_in_3")
    assert caught.value.input == "image_in_3"


# --------------------------------------------------------------------------- containment


def test_names_list_the_input_folder_then_samples(input_dir, samples):
    Image.new("RGB", (4, 4)).save(input_dir / "b.png")
    Image.new("RGB", (4, 4)).save(input_dir / "a.jpg")
    (input_dir / "notes.txt").write_text("not an image")
    (input_dir / ".hidden.png").write_bytes(b"")
    Image.new("RGB", (4, 4)).save(samples / "mara.png")
    (input_dir / "pasted").mkdir()
    Image.new("RGB", (4, 4)).save(input_dir / "pasted" / "image (1).png")  # where ComfyUI puts pasted images
    (input_dir / ".cache").mkdir()
    Image.new("RGB", (4, 4)).save(input_dir / ".cache" / "x.png")
    assert list_image_names() == ["a.jpg", "b.png", "pasted/image (1).png", "samples/mara.png"]
    assert resolve_image_name("pasted/image (1).png", input_name="image_1").name == "image (1).png"
    assert resolve_image_name("samples/mara.png", input_name="image_1") == (samples / "mara.png").resolve()
    assert resolve_image_name("a.jpg [input]", input_name="image_1") == (input_dir / "a.jpg").resolve()


@pytest.mark.parametrize("name, words", [
    ("/etc/passwd", "absolute"),
    ("../outside.png", "leave its folder"),
    ("sub/../../outside.png", "leave its folder"),
    ("samples/../outside.png", "leave its folder"),
    ("C:\\Windows\\win.ini", "absolute"),
    ("missing.png", "does not exist"),
    ("", "no file name"),
])
def test_file_inputs_stay_in_their_folders(input_dir, samples, name, words):
    (input_dir.parent / "outside.png").write_bytes(b"x")
    with pytest.raises(InputError) as caught:
        resolve_image_name(name, input_name="image_2")
    assert words in str(caught.value) and caught.value.input == "image_2"


def test_symlinks_out_of_the_input_folder_are_refused(input_dir, samples, tmp_path):
    secret = tmp_path / "secret.png"
    Image.new("RGB", (4, 4)).save(secret)
    os.symlink(secret, input_dir / "link.png")
    os.symlink(secret, samples / "link.png")
    os.symlink(tmp_path, input_dir / "escape")
    for name in ("link.png", "samples/link.png", "escape/secret.png"):
        with pytest.raises(InputError, match="outside"):
            resolve_image_name(name, input_name="image_1")
    Image.new("RGB", (4, 4)).save(input_dir / "real.png")
    os.symlink(input_dir / "real.png", input_dir / "alias.png")  # a link inside the folder is fine
    assert resolve_image_name("alias.png", input_name="image_1") == (input_dir / "real.png").resolve()
