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
    assert host.metadata_disabled() is False
    host.free_host_models()  # a no-op standalone: it must not import ComfyUI (checked below)
    assert host.comfy_video_from_file("x.mp4") is None
    assert host.registered_node_ids() == set()
    assert not any(m == "folder_paths" or m.startswith("comfy.") for m in sys.modules)


def test_executing_context():
    assert host.current_execution().prompt_id is None
    with host.executing("p1", "7"):
        assert host.current_execution() == host.ExecutionContext("p1", "7")
    assert host.current_execution().node_id is None


INSIDE_COMFYUI = r'''
import json, sys, types

calls = []
fp = types.ModuleType("folder_paths")
fp.models_dir = "/comfy/models"
fp.folder_names_and_paths = {"diffusers": (["/comfy/models/diffusers", "/extra/diffusers"], set())}
fp.get_user_directory = lambda: "/comfy/user"
fp.get_input_directory = lambda: "/comfy/input"
fp.get_output_directory = lambda: "/comfy/output"
fp.get_temp_directory = lambda: "/comfy/temp"
fp.get_folder_paths = lambda kind: list(fp.folder_names_and_paths[kind][0])
def add_model_folder_path(kind, path):
    fp.folder_names_and_paths.setdefault(kind, ([], set()))[0].append(path)
fp.add_model_folder_path = add_model_folder_path
if SYSTEM_DIR:
    fp.get_system_user_directory = lambda name: "/comfy/user/__" + name

class InterruptProcessingException(Exception):
    pass
comfy = types.ModuleType("comfy")
mm = types.ModuleType("comfy.model_management")
mm.interrupted = False
def throw():
    if mm.interrupted:
        raise InterruptProcessingException()
mm.throw_exception_if_processing_interrupted = throw
mm.unload_all_models = lambda: calls.append("unload")
mm.soft_empty_cache = lambda: calls.append("empty")
utils = types.ModuleType("comfy.utils")
class ProgressBar:
    def __init__(self, total):
        calls.append(("bar", total))
    def update_absolute(self, value, total=None):
        calls.append(("at", value, total))
utils.ProgressBar = ProgressBar
cli_args = types.ModuleType("comfy.cli_args")
cli_args.args = types.SimpleNamespace(disable_metadata=True)
for name, module in {"folder_paths": fp, "comfy": comfy, "comfy.model_management": mm, "comfy.utils": utils,
                     "comfy.cli_args": cli_args}.items():
    sys.modules[name] = module

from refvideo.engine import host
bar = host.Progress(3, "steps")
bar.update()
mm.interrupted = True
try:
    bar.update()
    interrupted = None
except Exception as exc:
    interrupted = [type(exc).__name__, host.is_interrupt(exc)]
host.free_host_models()
print(json.dumps({
    "in_comfyui": host.in_comfyui(), "sets": str(host.sets_dir()), "ledger": str(host.ledger_path()),
    "input": str(host.input_dir()), "output": str(host.output_dir()), "temp": str(host.temp_dir()),
    "diffusers": [str(p) for p in host.model_dirs("diffusers")], "rembg": [str(p) for p in host.model_dirs("rembg")],
    "metadata_disabled": host.metadata_disabled(), "interrupted": interrupted, "calls": calls}))
'''


@pytest.mark.parametrize("system_dir", [True, False])
def test_inside_comfyui_everything_goes_through_its_apis(system_dir):
    """ComfyUI's modules stand in for a running ComfyUI (the real one: test_comfyui_integration.py)."""
    import json
    import subprocess

    code = f"SYSTEM_DIR = {system_dir}\n" + INSIDE_COMFYUI
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["in_comfyui"] and seen["metadata_disabled"]
    assert seen["sets"] == "/comfy/user/refvideo/sets"
    assert seen["ledger"] == "/comfy/user/__refvideo/ledger.sqlite3"  # the system folder, or its fallback
    assert (seen["input"], seen["output"], seen["temp"]) == ("/comfy/input", "/comfy/output", "/comfy/temp")
    assert seen["diffusers"] == ["/comfy/models/diffusers", "/extra/diffusers"]
    assert seen["rembg"] == ["/comfy/models/rembg"]  # the pack registers its own model folders
    assert seen["interrupted"] == ["InterruptProcessingException", True]
    assert seen["calls"] == [["bar", 3], ["at", 1, 3], ["at", 2, 3], "unload", "empty"]
