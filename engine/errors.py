"""The exceptions RefVideo raises, one type per kind of problem.

Every user-facing error carries the input it is about and what would fix it, so the
ComfyUI node layer, the workflow runner and the CLI all show the same clear message.
"""

from __future__ import annotations


class RefVideoError(Exception):
    """Base class: a problem the user can act on.

    ``input`` names the node input (or CLI argument) at fault, ``fix`` says what to do.
    ``exit_code`` is what the CLI returns for it.
    """

    exit_code = 1

    def __init__(self, message: str, *, input: str | None = None, fix: str | None = None) -> None:
        self.message = message
        self.input = input
        self.fix = fix
        super().__init__(self.__str__())

    def __str__(self) -> str:
        text = self.message
        if self.input and f"'{self.input}'" not in text and f"`{self.input}`" not in text:
            text = f"{self.input}: {text}"
        if self.fix:
            text = f"{text} Fix: {self.fix}"
        return text

    def to_dict(self) -> dict:
        return {"type": type(self).__name__, "input": self.input, "message": str(self)}


class InputError(RefVideoError, ValueError):
    """Bad input, found before any expensive work started (CLI exit code 2)."""

    exit_code = 2


class BudgetRefused(InputError):
    """The credit plan is not covered by the balance or the cap; nothing was run."""


class ModelNotFound(InputError):
    """A model folder or file is missing or unusable."""


class StorageError(InputError):
    """A saved asset (reference set, skill, ledger) is missing, corrupt or cannot be used as asked."""


class WriteFailed(RefVideoError):
    """A file or the ledger could not be written while running (disk full, no permission, locked).

    Not bad input: it happens after work started, and the input was fine, so the CLI exits 1.
    """


class MissingDependency(RefVideoError):
    """An optional package needed by this feature is not installed."""

    def __init__(self, package: str, feature: str, *, pip_name: str | None = None) -> None:
        self.package = package
        super().__init__(
            f"{feature} needs the Python package '{package}', which is not installed.",
            fix=f"pip install {pip_name or package} (in the Python environment that runs ComfyUI or refvideo).",
        )


class GenerationError(RefVideoError):
    """A failure while running a model or encoder (CLI exit code 1)."""


class Terminated(KeyboardInterrupt):
    """The process was asked to end (SIGTERM, SIGHUP): unwinds like Ctrl-C, so nothing half-written or
    held is left behind; the exit code is 128 + the signal's number."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(f"Stopped by signal {signum}; no partial output was kept.")


class Interrupted(RuntimeError):
    """The user stopped the run (Ctrl-C in the CLI); nothing half-written is left behind."""

    exit_code = 130

    def __init__(self, message: str = "Interrupted by the user.") -> None:
        super().__init__(message)


def is_out_of_memory(exc: BaseException) -> bool:
    """An accelerator out-of-memory error (torch raises a RuntimeError subclass saying so)."""
    return "out of memory" in str(exc).lower()


def require(module: str, feature: str, *, pip_name: str | None = None):
    """Import ``module`` or raise :class:`MissingDependency` naming the package to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        if getattr(exc, "name", None) not in (None, top, module):
            raise
        raise MissingDependency(top, feature, pip_name=pip_name) from exc
