"""Shots as Ray tasks: a :class:`~.render.ShotRunner` over a local or existing Ray cluster.

Each shot is one task asking for ``gpus_per_shot`` GPUs (none for previz) and one CPU; the
worker runs :func:`~.shot.render_shot` (the same in-process engine) and returns the clip's
bytes and generation info, so workers need no shared disk and never open the ledger. A
reference set is put into Ray's object store once and shared by the shots that use it. A worker
that dies mid-shot is retried by Ray on another worker (``max_retries``); the driver reserved
the shot's credits once and commits them once, when the one result arrives.

Ray is optional (``pip install "comfyui-refvideo[ray]"``) and imported only here. A local
cluster listens on loopback only, with the dashboard and usage reporting off; it is shut down
when the runner closes. With ``address`` the runner joins an existing cluster and leaves it up.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

from ...engine import host
from ...engine.errors import GenerationError, InputError, require
from ...engine.references.reference import ReferenceSet
from .shot import ShotOutput, ShotTask, render_shot

NO_REFERENCES = ReferenceSet(())  # a task's own set when the set travels beside it

LOOPBACK = "127.0.0.1"
MAX_RETRIES = 3
WAIT_SECONDS = 0.2


def _ray(local: bool) -> Any:
    """Ray, imported with usage reporting off and, for a local cluster, every address on loopback
    (Ray reads both settings from the environment when it is first imported)."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    if local:
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # single-node mode: loopback addresses only
    return require("ray", "Rendering a sequence on Ray (--ray)", pip_name='"comfyui-refvideo[ray]"')


def start_local(ray: Any, *, num_cpus: int | None = None, num_gpus: int | None = None) -> None:
    """A Ray cluster on this machine: loopback only, no dashboard, no usage reporting, quiet logs."""
    ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, _node_ip_address=LOOPBACK,
             log_to_driver=False, configure_logging=False)


class RayRunner:
    """Runs shots as Ray tasks; :meth:`close` shuts down a local cluster it started."""

    def __init__(self, address: str | None = None, *, gpus_per_shot: float = 0.0, num_cpus: int | None = None,
                 max_retries: int = MAX_RETRIES) -> None:
        if not 0 <= gpus_per_shot <= 64:
            raise InputError(f"{gpus_per_shot} GPUs per shot is not possible.", input="--gpus-per-shot",
                             fix="Give 0 (CPU, e.g. previz) to 64; 1 for a diffusion model.")
        self.ray = _ray(local=not address)
        self.owned = False
        if not self.ray.is_initialized():
            if address:
                self.ray.init(address=address, log_to_driver=False, configure_logging=False)
            else:
                start_local(self.ray, num_cpus=num_cpus)
                self.owned = True
        self.gpus = gpus_per_shot
        self.remote = self.ray.remote(max_retries=max_retries, retry_exceptions=False)(render_shot)
        self.running: dict[Any, str] = {}
        self.references: dict[int, tuple[ReferenceSet, Any]] = {}

    def submit(self, task: ShotTask) -> None:
        """Start the shot as a Ray task; refused when no node of the cluster has the GPUs it asks for."""
        gpus = self.gpus if task.needs_accelerator else 0
        if gpus > self.ray.cluster_resources().get("GPU", 0):
            raise InputError(f"each shot asks for {gpus:g} GPU(s) and the Ray cluster has "
                             f"{self.ray.cluster_resources().get('GPU', 0):g}.", input="--gpus-per-shot",
                             fix="Give --gpus-per-shot 0 to render on CPUs, or join a cluster with GPUs.")
        ref = self.remote.options(num_gpus=gpus, num_cpus=1, name=f"refvideo-shot:{task.name}").remote(
            replace(task, references=NO_REFERENCES), self._shared(task.references))
        self.running[ref] = task.name

    def _shared(self, references: ReferenceSet) -> Any:
        """The reference set in Ray's object store, put there once for all the shots that use it."""
        entry = self.references.get(id(references))
        if entry is None:  # the set is kept with its object, so its id is not reused while the runner lives
            entry = self.references[id(references)] = (references, self.ray.put(references))
        return entry[1]

    def next_done(self) -> tuple[str, ShotOutput | Exception]:
        """The next shot to finish (its output, or the error that ended it); checks for Ctrl-C meanwhile."""
        while True:
            host.check_interrupt()
            ready, _ = self.ray.wait(list(self.running), num_returns=1, timeout=WAIT_SECONDS)
            if ready:
                break
        ref = ready[0]
        name = self.running.pop(ref)
        try:
            return name, self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:  # the shot's own error, raised on the worker
            cause = exc.as_instanceof_cause()
            return name, cause if isinstance(cause, Exception) else GenerationError(str(exc))
        except self.ray.exceptions.RayError as exc:  # workers died more often than the retries allow
            return name, GenerationError(f"the Ray worker rendering '{name}' was lost ({type(exc).__name__}).",
                                         fix="Check the cluster's workers (memory, GPUs), then render again; "
                                             "finished shots are kept.")

    def cancel(self) -> None:
        for ref in list(self.running):
            self.ray.cancel(ref, force=True)
        self.running.clear()

    def close(self) -> None:
        self.cancel()
        if self.owned and self.ray.is_initialized():
            self.ray.shutdown()
