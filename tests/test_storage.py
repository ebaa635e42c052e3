"""Names, containment and atomic writes: nothing escapes its folder, nothing is half-written."""

from __future__ import annotations

import os

import pytest

from refvideo.engine.errors import InputError, StorageError
from refvideo.engine.paths import contained, is_within, relative_parts
from refvideo.engine.storage import (
    atomic_path,
    atomic_write_json,
    read_data,
    read_json,
    unique_path,
    validate_name,
)


@pytest.mark.parametrize("name", ["Mara", "Mara, red coat", "shot_01 (wide)", "a" * 64, "  spaced  "])
def test_valid_names(name):
    assert validate_name(name, kind="reference set") == name.strip()


@pytest.mark.parametrize("name, reason", [
    ("", "empty"), ("   ", "empty"), ("a/b", "path separator"), ("a\\b", "path separator"),
    ("..", "'..'"), ("x..y", "'..'"), (".hidden", "hidden"), ("ends.", "ends with a dot"),
    ("CON", "reserved"), ("nul.txt", "reserved"), ("a" * 65, "65 characters"), ("tab\there", "not allowed"),
    ("émoji🙂", "not allowed"), (None, "must be text"),
])
def test_invalid_names_say_why(name, reason):
    with pytest.raises(InputError) as info:
        validate_name(name, kind="reference set", input_name="set_name")
    assert reason in str(info.value)
    assert info.value.input == "set_name" and info.value.fix


def test_containment(tmp_path):
    root = tmp_path / "input"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.png").write_bytes(b"x")
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"s")
    os.symlink(outside, root / "link.png")
    assert contained(root, "sub/a.png", input_name="image_1") == (root / "sub" / "a.png").resolve()
    for bad, words in [("/etc/passwd", "absolute"), ("../secret.png", "leave"), ("sub/../../secret.png", "leave"),
                       ("link.png", "outside"), ("C:/x.png", "absolute"), ("", "no file")]:
        with pytest.raises(InputError) as info:
            contained(root, bad, input_name="image_1")
        assert words in str(info.value) and info.value.input == "image_1"
    assert is_within(root / "sub", root) and not is_within(outside, root)


def test_atomic_path_renames_on_success_and_cleans_up_on_failure(tmp_path):
    target = tmp_path / "out" / "clip.mp4"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".clip.") and not target.exists()
        tmp.write_bytes(b"done")
    assert target.read_bytes() == b"done"

    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "out" / "other.mp4") as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert sorted(p.name for p in target.parent.iterdir()) == ["clip.mp4"]

    with pytest.raises(StorageError):
        with atomic_path(tmp_path / "out" / "empty.bin") as tmp:
            tmp.unlink()
    assert sorted(p.name for p in target.parent.iterdir()) == ["clip.mp4"]


def test_read_json_errors_name_the_file(tmp_path):
    path = tmp_path / "manifest.json"
    atomic_write_json(path, {"b": 1, "a": [1, 2]})
    assert read_json(path, what="manifest", fix="x") == {"a": [1, 2], "b": 1}
    path.write_text("{broken")
    with pytest.raises(StorageError) as info:
        read_json(path, what="manifest", fix="Delete it.")
    assert "manifest.json" in str(info.value) and "line 1" in str(info.value) and "Delete it." in str(info.value)
    with pytest.raises(StorageError):
        read_json(tmp_path / "missing.json", what="manifest", fix="x")


def test_unique_path_counts_up(tmp_path):
    first = unique_path(tmp_path, "shot", ".mp4")
    assert first.name == "shot_00001.mp4"
    first.write_bytes(b"")
    (tmp_path / "shot_00007.mp4").write_bytes(b"")
    assert unique_path(tmp_path, "shot", ".mp4").name == "shot_00008.mp4"


def test_finished_files_get_the_users_usual_permissions(tmp_path):
    import stat

    from refvideo.engine.storage import atomic_folder, atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "skill.json", "{}")
        with atomic_folder(tmp_path / "frames") as folder:
            (folder / "f_0001.png").write_bytes(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "skill.json").stat().st_mode) == 0o644  # not mkstemp's private 0600
    assert stat.S_IMODE((tmp_path / "frames").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "frames" / "f_0001.png").stat().st_mode) == 0o644


def test_bundled_data_is_read_once_and_a_missing_file_says_reinstall():
    presets = read_data("presets.json")
    assert "default" in presets["presets"] and read_data("presets.json") is presets
    with pytest.raises(StorageError, match="does not exist") as err:
        read_data("no_such_table.json")
    assert err.value.fix == "Reinstall RefVideo."


def test_relative_parts_split_a_name_and_say_why_it_cannot_be_relative():
    assert relative_parts("org\\model/./v1/") == (["org", "model", "v1"], None)
    for name in ("/etc/passwd", "\\\\server\\share", "C:models", "c:\\models"):
        assert relative_parts(name)[1] == "absolute", name
    for name in ("a/../../b", "..", "a\x00b"):
        assert relative_parts(name)[1] == "escapes", name
