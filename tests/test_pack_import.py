"""Importing the pack is cheap, works the way ComfyUI loads it, and never breaks the host."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from refvideo import NODE_CLASS_MAPPINGS
from refvideo.engine.errors import MissingDependency, require

PACK_ROOT = Path(__file__).resolve().parent.parent
HEAVY = ["torch", "diffusers", "transformers", "av", "rembg", "onnxruntime", "cv2", "scipy", "websocket"]


def python(code: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def comfy_style_load(pack_dir: Path, prelude: str = "") -> str:
    """Code that loads ``pack_dir/__init__.py`` the way ComfyUI's load_custom_node does."""
    return prelude + textwrap.dedent(f"""
        import importlib.util, json, sys
        path = {str(pack_dir)!r}
        spec = importlib.util.spec_from_file_location(path, path + "/__init__.py",
                                                      submodule_search_locations=[path])
        module = importlib.util.module_from_spec(spec)
        sys.modules[path] = module
        spec.loader.exec_module(module)
        errors = sys.modules[path + ".nodes"].LOAD_ERRORS
        print(json.dumps({{"nodes": sorted(module.NODE_CLASS_MAPPINGS), "errors": errors,
                          "web": module.WEB_DIRECTORY}}))
    """)


def test_import_loads_no_heavy_library():
    result = python(f"""
        import sys, json
        import refvideo
        print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))
    """, cwd=Path("/"))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_loads_like_a_comfyui_custom_node():
    result = python(comfy_style_load(PACK_ROOT))
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["nodes"] == sorted(NODE_CLASS_MAPPINGS) and loaded["errors"] == []
    assert (PACK_ROOT / loaded["web"] / "js").is_dir()


def test_a_broken_node_module_does_not_break_the_host(tmp_path):
    copy = tmp_path / "custom_nodes" / "RefVideo-broken"
    for folder in ("engine", "jobs", "models", "nodes", "web", "samples"):  # the pack's code and data, nothing else
        shutil.copytree(PACK_ROOT / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PACK_ROOT / "__init__.py", copy / "__init__.py")
    (copy / "nodes" / "join_clips.py").write_text("raise ImportError('simulated broken install')\n")
    result = python(comfy_style_load(copy))
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert "JoinClips" not in loaded["nodes"]
    assert set(loaded["nodes"]) == set(NODE_CLASS_MAPPINGS) - {"JoinClips"}
    assert any("join_clips" in e and "simulated broken install" in e for e in loaded["errors"])
    assert "could not load nodes/join_clips.py" in result.stderr


def test_clashing_node_id_is_logged():
    prelude = """
        import sys, types
        sys.modules["folder_paths"] = types.ModuleType("folder_paths")  # what ComfyUI has loaded
        core = types.ModuleType("nodes")
        core.NODE_CLASS_MAPPINGS = {"JoinClips": object, "KSampler": object}
        sys.modules["nodes"] = core
    """
    result = python(comfy_style_load(PACK_ROOT, textwrap.dedent(prelude)))
    assert result.returncode == 0, result.stderr
    assert "node id 'JoinClips' is already registered" in result.stderr
    assert "KSampler" not in result.stderr


def test_missing_optional_packages_keep_every_node_listed():
    blocked = ["torch", "diffusers", "transformers", "rembg", "av"]
    prelude = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in blocked)
    result = python(comfy_style_load(PACK_ROOT, prelude))
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["nodes"] == sorted(NODE_CLASS_MAPPINGS) and loaded["errors"] == []


def test_require_names_the_package_to_install():
    try:
        require("refvideo_no_such_package.sub", "Background removal", pip_name="rembg[cpu]")
    except MissingDependency as exc:
        assert "refvideo_no_such_package" in str(exc) and "pip install rembg[cpu]" in str(exc)
    else:
        raise AssertionError("require() imported a package that does not exist")
