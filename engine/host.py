"""The one module that talks to the host application: ComfyUI, or nothing.

Inside ComfyUI (its ``folder_paths`` module is loaded) data and model locations, progress
bars, interrupts and memory management go through ComfyUI's own APIs, imported lazily.
Standalone (CLI, tests, scripts) the same calls fall back to directories under
``REFVIDEO_HOME`` (or a ComfyUI install named with :func:`configure`), a tqdm progress bar
and a local interrupt flag that the CLI sets on Ctrl-C. No other module imports ComfyUI.
"""

from __future__ import annotations

import contextvars
import importlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import ranks
from .errors import Interrupted

log = logging.getLogger("refvideo")

_interrupt = threading.Event()
_settings: dict[str, Path | None] = {"comfyui_dir": None, "output_dir": None}
_progress_listeners: list[Callable[[str, int, int], None]] = []
_progress_enabled = True


@dataclass(frozen=True)
class ExecutionContext:
    """Which prompt and node are running now (for ledger entries and file names)."""

    prompt_id: str | None = None
    node_id: str | None = None


_context: contextvars.ContextVar[ExecutionContext] = contextvars.ContextVar(
    "refvideo_execution", default=ExecutionContext()  # noqa: B039 (frozen: never mutated)
)


# --------------------------------------------------------------------------- host detection


def in_comfyui() -> bool:
    """True when running inside a ComfyUI process (its ``folder_paths`` is loaded)."""
    return "folder_paths" in sys.modules


def _comfy(module: str) -> Any | None:
    """A ComfyUI module when running inside ComfyUI, else None."""
    if not in_comfyui():
        return None
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def configure(
    *,
    comfyui_dir: str | os.PathLike | None = None,
    output_dir: str | os.PathLike | None = None,
) -> None:
    """Standalone only: use a ComfyUI install's data locations and/or explicit folders."""
    _settings["comfyui_dir"] = Path(comfyui_dir).expanduser().resolve() if comfyui_dir else None
    _settings["output_dir"] = Path(output_dir).expanduser().resolve() if output_dir else None


def settings() -> dict[str, Path | None]:
    """The standalone locations set with :func:`configure` (a copy)."""
    return dict(_settings)


# --------------------------------------------------------------------------- locations


def home() -> Path:
    """``REFVIDEO_HOME``, or the user's data directory for RefVideo."""
    env = os.environ.get("REFVIDEO_HOME")
    if env:
        return Path(env).expanduser().resolve()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return (base / "refvideo").resolve()


def _comfyui_dir() -> Path | None:
    return _settings["comfyui_dir"]


def _location(inside: Callable[[Any], Any], install: str | None, standalone: str,
              override: Path | None = None) -> Path:
    """Inside ComfyUI ``inside(folder_paths)``; else ``override``, ``<ComfyUI install>/<install>``
    (with :func:`configure`) or ``REFVIDEO_HOME/<standalone>``."""
    fp = _comfy("folder_paths")
    if fp is not None:
        return Path(inside(fp))
    if override is not None:
        return override
    comfyui = _comfyui_dir()
    if comfyui and install is not None:
        return comfyui / install
    return home() / standalone


def library_dir() -> Path:
    """Where named reference sets and style skills live (``sets/``, ``skills/``)."""
    return _location(lambda fp: Path(fp.get_user_directory()) / "refvideo", "user/refvideo", "")


def sets_dir() -> Path:
    return library_dir() / "sets"


def skills_dir() -> Path:
    return library_dir() / "skills"


def _system_user_dir(fp: Any) -> Path:
    getter = getattr(fp, "get_system_user_directory", None)  # missing before ComfyUI 0.3.6x
    return Path(getter("refvideo")) if getter is not None else Path(fp.get_user_directory()) / "__refvideo"


def system_dir() -> Path:
    """A private folder for the ledger, never served over ComfyUI's HTTP API."""
    return _location(_system_user_dir, "user/__refvideo", "")


def ledger_path() -> Path:
    return system_dir() / "ledger.sqlite3"


def input_dir() -> Path:
    """The folder whose files the file inputs (e.g. reference images) may name."""
    return _location(lambda fp: fp.get_input_directory(), "input", "input")


def output_dir() -> Path:
    """The folder that output nodes write into."""
    return _location(lambda fp: fp.get_output_directory(), "output", "output", _settings["output_dir"])


def temp_dir() -> Path:
    return _location(lambda fp: fp.get_temp_directory(), None, "temp")


def _register_pack_folders(fp: Any) -> None:
    for kind in ("refvideo", "rembg"):
        if kind not in getattr(fp, "folder_names_and_paths", {}):
            fp.add_model_folder_path(kind, os.path.join(fp.models_dir, kind))


def model_dirs(kind: str) -> list[Path]:
    """Folders searched for models of ``kind``: ``diffusers``, ``loras``, ``refvideo``, ``rembg``.

    Inside ComfyUI these are ComfyUI's model folders (``extra_model_paths.yaml`` included);
    with a ComfyUI install configured, its ``models/<kind>``; standalone, the folders in
    ``REFVIDEO_MODELS`` (``os.pathsep``-separated, each holding model folders) for diffusers
    models and ``REFVIDEO_HOME/models/<kind>``.
    """
    fp = _comfy("folder_paths")
    if fp is not None:
        _register_pack_folders(fp)
        try:
            return [Path(p) for p in fp.get_folder_paths(kind)]
        except KeyError:
            return [Path(fp.models_dir) / kind]
    dirs: list[Path] = []
    if kind in ("diffusers", "refvideo"):
        for entry in os.environ.get("REFVIDEO_MODELS", "").split(os.pathsep):
            if entry.strip():
                dirs.append(Path(entry).expanduser())
    comfyui = _comfyui_dir()
    if comfyui:
        dirs.append(comfyui / "models" / kind)
    dirs.append(home() / "models" / kind)
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


# --------------------------------------------------------------------------- interrupts


def request_interrupt() -> None:
    """Ask the running work to stop at its next check (the CLI's Ctrl-C)."""
    _interrupt.set()


def clear_interrupt() -> None:
    _interrupt.clear()


def interrupt_requested() -> bool:
    return _interrupt.is_set()


def check_interrupt() -> None:
    """Raise the host's interrupt exception if the user asked to stop."""
    mm = _comfy("comfy.model_management")
    if mm is not None:
        mm.throw_exception_if_processing_interrupted()
    if _interrupt.is_set():
        raise Interrupted()


def is_interrupt(exc: BaseException) -> bool:
    """True for ComfyUI's interrupt exception, ours, and KeyboardInterrupt."""
    if isinstance(exc, (Interrupted, KeyboardInterrupt)):
        return True
    return type(exc).__name__ == "InterruptProcessingException"


# --------------------------------------------------------------------------- progress


def add_progress_listener(listener: Callable[[str, int, int], None]) -> Callable[[], None]:
    """Call ``listener(description, value, total)`` on every progress update; returns a remover."""
    _progress_listeners.append(listener)
    return lambda: _progress_listeners.remove(listener) if listener in _progress_listeners else None


def set_progress_bars(enabled: bool) -> None:
    """Standalone: show (or hide) tqdm progress bars on stderr."""
    global _progress_enabled
    _progress_enabled = enabled


class Progress:
    """A progress bar that is also an interrupt check on every update.

    Inside ComfyUI it drives ``comfy.utils.ProgressBar`` (the node's bar in the UI);
    standalone it is a tqdm bar on stderr.
    """

    def __init__(self, total: int, description: str = "") -> None:
        self.total = max(int(total), 1)
        self.value = 0
        self.description = description
        self._comfy_bar = None
        self._tqdm = None
        utils = _comfy("comfy.utils")
        if utils is not None:
            self._comfy_bar = utils.ProgressBar(self.total)
        elif _progress_enabled and ranks.is_main():
            from tqdm import tqdm

            self._tqdm = tqdm(total=self.total, desc=description or None, leave=False, file=sys.stderr,
                              disable=None)
        check_interrupt()

    def update(self, n: int = 1) -> None:
        self.set(self.value + n)

    def set(self, value: int) -> None:
        value = min(int(value), self.total)
        step = value - self.value
        self.value = value
        if self._comfy_bar is not None:
            self._comfy_bar.update_absolute(value, self.total)
        if self._tqdm is not None and step:
            self._tqdm.update(step)
        for listener in list(_progress_listeners):
            listener(self.description, value, self.total)
        check_interrupt()

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
            self._tqdm = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- execution context


def current_execution() -> ExecutionContext:
    """The prompt id and node id of the node that is running now, when known."""
    ctx = _context.get()
    if ctx.prompt_id is not None:
        return ctx
    utils = _comfy("comfy_execution.utils")
    getter = getattr(utils, "get_executing_context", None) if utils else None
    if getter is not None:
        comfy_ctx = getter()
        if comfy_ctx is not None:
            return ExecutionContext(str(comfy_ctx.prompt_id), str(comfy_ctx.node_id))
    return ctx


@contextmanager
def executing(prompt_id: str | None, node_id: str | None) -> Iterator[None]:
    """Standalone runner: mark which prompt/node runs inside the block."""
    token = _context.set(ExecutionContext(prompt_id, node_id))
    try:
        yield
    finally:
        _context.reset(token)


# --------------------------------------------------------------------------- memory and devices


def free_host_models() -> None:
    """Ask ComfyUI to unload its own models before a big pipeline loads (no-op standalone)."""
    mm = _comfy("comfy.model_management")
    if mm is not None:
        mm.unload_all_models()
        mm.soft_empty_cache()


def soft_empty_cache() -> None:
    """Return cached accelerator memory to the driver."""
    mm = _comfy("comfy.model_management")
    if mm is not None:
        mm.soft_empty_cache()
        return
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def torch_device() -> Any:
    """The device models run on: ComfyUI's choice inside ComfyUI, else CUDA, MPS or CPU."""
    mm = _comfy("comfy.model_management")
    if mm is not None:
        return mm.get_torch_device()
    import torch

    if os.environ.get("REFVIDEO_DEVICE"):
        return torch.device(os.environ["REFVIDEO_DEVICE"])
    if torch.cuda.is_available():
        return torch.device("cuda", ranks.local_rank()) if ranks.distributed() else torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


# --------------------------------------------------------------------------- ComfyUI features


def metadata_disabled() -> bool:
    """True when ComfyUI runs with ``--disable-metadata``."""
    cli_args = _comfy("comfy.cli_args")
    return bool(cli_args is not None and getattr(cli_args.args, "disable_metadata", False))


def comfy_video_from_file(path: str | os.PathLike) -> Any | None:
    """ComfyUI's own file-backed VIDEO object for ``path``, or None where ComfyUI lacks one."""
    for module, attr in (("comfy_api.latest", "InputImpl"), ("comfy_api.input_impl", None)):
        mod = _comfy(module)
        if mod is None:
            continue
        holder = getattr(mod, attr, None) if attr else mod
        cls = getattr(holder, "VideoFromFile", None) if holder is not None else None
        if cls is not None:
            return cls(str(path))
    return None


def registered_node_ids() -> set[str]:
    """Node ids that ComfyUI core and packs loaded before us have registered."""
    core = sys.modules.get("nodes") if in_comfyui() else None
    mappings = getattr(core, "NODE_CLASS_MAPPINGS", None)
    return set(mappings) if isinstance(mappings, dict) else set()
