"""The built wheel (not the editable install) holds every module, node and data file of the pack.

A subpackage missing from ``pyproject.toml`` fails here instead of in a user's install.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from refvideo import NODE_CLASS_MAPPINGS

PACK_ROOT = Path(__file__).resolve().parent.parent
CODE = ("engine", "models", "jobs", "nodes", "headless")
DATA = ("engine/data/pricing.json", "engine/data/formats/mp4-h264.json", "workflows/demo_shot.json",
        "workflows/api/demo_shot.json", "samples", "web/js", "pyproject.toml")


def source_modules() -> set[str]:
    """Every module of the pack's code folders, as ``refvideo.x.y``."""
    names = {"refvideo", "refvideo.__main__"}
    for folder in CODE:
        for path in (PACK_ROOT / folder).rglob("*.py"):
            parts = path.relative_to(PACK_ROOT).with_suffix("").parts
            names.add(".".join(("refvideo", *(parts[:-1] if parts[-1] == "__init__" else parts))))
    return names


def build_and_install(tmp_path: Path) -> Path:
    """``pip wheel --no-deps`` of a clean copy of the pack, installed with ``pip install --target``."""
    source = tmp_path / "source"
    shutil.copytree(PACK_ROOT, source, ignore=shutil.ignore_patterns(
        ".*", "__pycache__", "*.egg-info", "build", "dist", "tests", "benchmarks", "scripts"))
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    built = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(wheels),
                            str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    [wheel] = wheels.glob("*.whl")
    target = tmp_path / "site"
    installed = subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    with zipfile.ZipFile(wheel) as archive:
        assert not [n for n in archive.namelist() if n.startswith("refvideo/tests/")]
    return target


@pytest.mark.slow
def test_the_wheel_installs_every_module_node_and_data_file(tmp_path):
    target = build_and_install(tmp_path)
    package = target / "refvideo"
    for name in DATA:
        assert (package / name).exists(), f"{name} is not in the wheel"

    code = textwrap.dedent(f"""
        import importlib, json, pkgutil, sys
        sys.path.insert(0, {str(target)!r})
        import refvideo
        assert refvideo.__file__.startswith({str(package)!r}), refvideo.__file__
        names = ["refvideo"]
        for info in pkgutil.walk_packages(refvideo.__path__, "refvideo."):
            if info.name != "refvideo.__main__":  # running it would start the CLI
                importlib.import_module(info.name)
            names.append(info.name)
        from refvideo.nodes import LOAD_ERRORS
        print(json.dumps({{"modules": sorted(names), "nodes": sorted(refvideo.NODE_CLASS_MAPPINGS),
                          "errors": LOAD_ERRORS}}))
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    missing = source_modules() - set(found["modules"])
    assert not missing, f"modules not in the wheel (add their packages to pyproject.toml): {sorted(missing)}"
    assert found["nodes"] == sorted(NODE_CLASS_MAPPINGS) and found["errors"] == []

    cli = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(target)!r}); "
                          "sys.argv = ['refvideo', '--help']; import runpy; runpy.run_module('refvideo')"],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert cli.returncode == 0 and "demo" in cli.stdout, cli.stderr
