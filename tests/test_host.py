"""The host adapter standalone: locations, progress with interrupt checks, no ComfyUI imported."""

from __future__ import annotations

import sys

import pytest

from refvideo.engine import host
from refvideo.engine.errors import Interrupted


def test_standalone_locations_live_under_refvideo_home(refvideo_home):
    assert not host.in_comfyui()
    assert host.sets_dir() == refvideo_home / "sets"
    assert host.skills_dir() == refvideo_home / "skills"
    assert host.ledger_path() == refvideo_home / "ledger.sqlite3"
    assert host.input_dir() == refvideo_home / "input"
    assert host.output_dir() == refvideo_home / "output"
    assert host.model_dirs("diffusers") == [refvideo_home / "models" / "diffusers"]


def test_comfyui_install_locations(tmp_path, refvideo_home):
    comfy = tmp_path / "ComfyUI"
    host.configure(comfyui_dir=comfy)
    assert host.sets_dir() == comfy.resolve() / "user" / "refvideo" / "sets"
    assert host.ledger_path() == comfy.resolve() / "user" / "__refvideo" / "ledger.sqlite3"
    assert host.input_dir() == comfy.resolve() / "input"
    assert host.output_dir() == comfy.resolve() / "output"
    assert comfy.resolve() / "models" / "diffusers" in host.model_dirs("diffusers")
    host.configure(comfyui_dir=comfy, output_dir=tmp_path / "renders")
    assert host.output_dir() == (tmp_path / "renders").resolve()


def test_refvideo_models_env_adds_model_folders(tmp_path, monkeypatch, refvideo_home):
    a, b = tmp_path / "a", tmp_path / "b"
    monkeypatch.setenv("REFVIDEO_MODELS", f"{a}{__import__('os').pathsep}{b}")
    assert host.model_dirs("diffusers")[:2] == [a, b]
    assert host.model_dirs("loras") == [refvideo_home / "models" / "loras"]


def test_progress_reports_and_checks_interrupts():
    seen = []
    remove = host.add_progress_listener(lambda d, v, t: seen.append((d, v, t)))
    try:
        with host.Progress(4, "steps") as bar:
            bar.update()
            bar.set(3)
            host.request_interrupt()
            with pytest.raises(Interrupted):
                bar.update()
    finally:
        remove()
    assert seen == [("steps", 1, 4), ("steps", 3, 4), ("steps", 4, 4)]
    host.clear_interrupt()
    host.check_interrupt()
    assert host.is_interrupt(Interrupted()) and host.is_interrupt(KeyboardInterrupt())
    assert not host.is_interrupt(ValueError())


def test_no_comfyui_module_is_imported():
    host.metadata_disabled()
    host.free_host_models()
    assert host.comfy_video_from_file("x.mp4") is None
    assert host.registered_node_ids() == set()
    assert not any(m == "folder_paths" or m.startswith("comfy.") for m in sys.modules)


def test_executing_context():
    assert host.current_execution().prompt_id is None
    with host.executing("p1", "7"):
        assert host.current_execution() == host.ExecutionContext("p1", "7")
    assert host.current_execution().node_id is None
