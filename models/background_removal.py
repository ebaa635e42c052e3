"""Background removal with rembg and a model file already on disk (never downloaded).

The models rembg can run are listed in ``engine/data/rembg_models.json``. Their files
(``<name>.onnx``) are looked up in the pack's registered model folder
(``host.model_dirs("rembg")``: ComfyUI's ``models/rembg/``, standalone
``REFVIDEO_HOME/models/rembg/``), then in ``U2NET_HOME`` (and rembg's own
``<home>/models/<name>/`` layout). A missing file is an error that names the file, the
folder it goes into and where to get it; rembg's downloader is never reached.

rembg is imported on first use only: its first import compiles numba code (about a minute
once per environment).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..engine import host
from ..engine.errors import InputError, ModelNotFound, require
from ..engine.references.images import from_uint8, to_uint8
from ..engine.storage import read_data

FEATURE = "Background removal with rembg"
_sessions: dict[tuple[str, str, float], Any] = {}
_lock = threading.Lock()


def catalogue() -> dict:
    """The model table: name -> file, size, about, url; plus the default name."""
    return read_data("rembg_models.json")


def model_names() -> list[str]:
    """Model names for a combo, the default first."""
    table = catalogue()
    return [table["default"]] + [name for name in table["models"] if name != table["default"]]


def search_folders(name: str) -> list[Path]:
    """Where the model file for ``name`` is looked for, in order."""
    folders = list(host.model_dirs("rembg"))
    for variable in ("U2NET_HOME", "REMBG_HOME"):
        value = os.environ.get(variable)
        if value:
            home = Path(value).expanduser()
            folders += [home, home / "models" / name]
    return folders


def find_model_file(name: str, *, input_name: str = "rembg_model") -> Path:
    """The model file for ``name``, or :class:`ModelNotFound` saying which file goes where."""
    models = catalogue()["models"]
    if name not in models:
        raise InputError(f"'{name}' is not a background-removal model RefVideo knows.", input=input_name,
                         fix=f"Use one of: {', '.join(model_names())}.")
    entry = models[name]
    folders = search_folders(name)
    for folder in folders:
        candidate = folder / entry["file"]
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(f) for f in folders)
    raise ModelNotFound(
        f"the rembg model file '{entry['file']}' ({name}, {entry['size']}) is not installed; looked in {looked}.",
        input=input_name,
        fix=f"Download {entry['url']} and save it as {folders[0] / entry['file']} (or into the folder U2NET_HOME "
            "names). RefVideo never downloads models itself.")


def _session(name: str, path: Path) -> Any:
    """A rembg session for ``name`` whose model file is ``path`` (cached per file version)."""
    key = (name, str(path), path.stat().st_mtime)
    with _lock:
        if key in _sessions:
            return _sessions[key]
        require("onnxruntime", FEATURE, pip_name="rembg[cpu]")
        require("rembg", FEATURE, pip_name="rembg[cpu]")
        from rembg.sessions import sessions

        base = sessions[name]
        local = type(f"Local{base.__name__}", (base,), {
            # rembg's sessions fetch their file through download_models(); point it at ours.
            "download_models": classmethod(lambda cls, *args, **kwargs: str(path)),
        })
        import onnxruntime

        session = local(name, onnxruntime.SessionOptions())
        for stale in [k for k in _sessions if k[0] == name]:
            del _sessions[stale]
        _sessions[key] = session
        return session


def remove_background(image: np.ndarray, model: str, *, input_name: str = "rembg_model") -> np.ndarray:
    """The subject matte (float32 ``[H, W]``, 1 = subject, 8-bit-exact) of an RGB float image."""
    path = find_model_file(model, input_name=input_name)
    session = _session(model, path)
    host.check_interrupt()
    import rembg

    pil = Image.fromarray(to_uint8(image), "RGB")
    mask = rembg.remove(pil, session=session, only_mask=True)
    # models with several masks stack them vertically; the first is the subject
    return from_uint8(np.asarray(mask.convert("L"))[: pil.height, : pil.width])
