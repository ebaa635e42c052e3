"""Rendering a storyboard: resume, credits per shot, dependency order, then the editor hand-off.

The driver (this module) alone owns the output folder and the ledger. For each shot it
computes the manifest digest (the parent's digest included, so a changed shot re-renders the
shots that continue from it); a shot whose file already records that digest is ``skipped`` and
not charged. The others are priced and checked up front (refused as a whole when the credits
or caps do not cover them), then each one, once the shot it continues from exists, has its
credits reserved and is handed to a :class:`ShotRunner` (in this process, or Ray workers).
The clip's bytes come back, are written under the shot's fixed name (temporary file + rename),
and only then is the reservation committed. A failed shot releases its credits and fails the
shots that continue from it; independent shots go on. An interrupt cancels what runs, releases
every reservation and leaves no partial file.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ...engine import host
from ...engine.credits.ledger import Reservation, shared_ledger
from ...engine.errors import GenerationError, RefVideoError
from ...engine.references.reference import ReferenceSet
from ...engine.sequence.handoff import Handoff, ShotFile, write_handoff
from ...engine.sequence.storyboard import Storyboard
from ...engine.storage import atomic_write_bytes
from ...engine.style import StyleDirection
from ...engine.video.files import VideoFile
from ..generation import DEFAULT_CONTINUE_FRAMES
from .plan import PreparedShot, check_credits, prepare
from .shot import FrameFilter, ShotOutput, ShotTask, digest, recorded_digest, render_shot, shot_file_name, shot_manifest

if TYPE_CHECKING:
    from ...models.registry import ModelHandle

log = logging.getLogger("refvideo")
RENDERED, SKIPPED, FAILED = "rendered", "skipped", "failed"


class ShotRunner(Protocol):
    """Where shots render: :meth:`submit` queues one, :meth:`next_done` waits for any one to finish."""

    def submit(self, task: ShotTask) -> None: ...

    def next_done(self) -> tuple[str, ShotOutput | Exception]: ...

    def cancel(self) -> None: ...


class InProcessRunner:
    """Renders queued shots one after another in this process (progress per step, cancel between steps)."""

    def __init__(self) -> None:
        self.queue: deque[ShotTask] = deque()

    def submit(self, task: ShotTask) -> None:
        self.queue.append(task)

    def next_done(self) -> tuple[str, ShotOutput | Exception]:
        task = self.queue.popleft()
        try:
            return task.name, render_shot(task)
        except Exception as exc:
            if host.is_interrupt(exc):
                raise
            return task.name, exc

    def cancel(self) -> None:
        self.queue.clear()


@dataclass
class ShotResult:
    """What happened to one shot."""

    name: str
    status: str
    file: Path | None
    credits: int = 0
    error: str | None = None
    seconds: float = 0.0          # from reserving its credits to its file existing, as the driver saw it
    render_seconds: float = 0.0   # rendering and encoding, as the worker measured it

    def to_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "file": str(self.file) if self.file else None,
                "credits": self.credits, "error": self.error}


@dataclass
class SequenceResult:
    """Every shot's result and, when all shots exist, the hand-off files."""

    sequence: str
    shots: list[ShotResult]
    output_dir: Path
    handoff: Handoff | None = None

    @property
    def ok(self) -> bool:
        return all(s.status != FAILED for s in self.shots)

    def to_dict(self) -> dict:
        files = self.handoff
        return {"ok": self.ok, "shots": [s.to_dict() for s in self.shots],
                "sequence": str(files.joined) if files else None,
                "timeline": str(files.timeline) if files else None,
                "contact_sheet": str(files.contact_sheet) if files else None}

    def text(self) -> str:
        lines = [f"{s.name}: {s.status}" + (f" ({s.credits} credits)" if s.credits else "")
                 + (f": {s.error}" if s.error else "") for s in self.shots]
        if self.handoff is not None:
            lines += [f"sequence: {self.handoff.joined}", f"timeline: {self.handoff.timeline}",
                      f"contact sheet: {self.handoff.contact_sheet}"]
        return "\n".join(lines)


Notify = Callable[[str], None]


def last_frames(path: Path, count: int = DEFAULT_CONTINUE_FRAMES) -> np.ndarray:
    """The last ``count`` decoded frames of a written shot, float32 0..1: where a continuing shot starts."""
    tail = deque(VideoFile(path).iter_frames(), maxlen=count)
    return np.stack(tail).astype(np.float32) / np.float32(255.0)


def _task(storyboard: Storyboard, prepared: PreparedShot, manifest: dict, shot_digest: str,
          first_frames: np.ndarray | None, filters: tuple[FrameFilter, ...]) -> ShotTask:
    shot = prepared.shot
    return ShotTask(sequence=storyboard.sequence, name=shot.name, model=prepared.handle.name,
                    options=prepared.handle.options, references=prepared.references, style=prepared.style,
                    prompt=shot.prompt, seed=shot.seed, steps=shot.steps, resolution=shot.resolution,
                    aspect=shot.aspect, duration=shot.duration, format=shot.format, first_frames=first_frames,
                    manifest=manifest, digest=shot_digest, filters=filters,
                    needs_accelerator=prepared.handle.spec.needs_weights)


class _Driver:
    """The render loop's state: reservations held, results so far, shots waiting for their parent."""

    def __init__(self, storyboard: Storyboard, shots: tuple[PreparedShot, ...], output_dir: Path,
                 runner: ShotRunner, filters: tuple[FrameFilter, ...], notify: Notify) -> None:
        self.storyboard, self.output_dir, self.runner, self.filters, self.notify = (
            storyboard, output_dir, runner, filters, notify)
        self.shots = {p.shot.name: p for p in shots}
        self.manifests: dict[str, dict] = {}
        self.digests: dict[str, str] = {}
        for p in shots:  # dependency order: a parent's digest is known before its children's
            parent = self.digests.get(p.shot.continue_from) if p.shot.continue_from else None
            self.manifests[p.shot.name] = shot_manifest(p, parent, filters)
            self.digests[p.shot.name] = digest(self.manifests[p.shot.name])
        self.results: dict[str, ShotResult] = {}
        self.held: dict[str, tuple[Reservation, float]] = {}
        self.run_id = uuid.uuid4().hex

    def path(self, name: str) -> Path:
        return self.output_dir / shot_file_name(name, self.shots[name].shot.format)

    def to_render(self) -> list[PreparedShot]:
        """Shots whose file does not record their current digest; the rest are marked skipped."""
        pending = []
        for name, prepared in self.shots.items():
            if recorded_digest(self.path(name)) == self.digests[name]:
                self.results[name] = ShotResult(name, SKIPPED, self.path(name))
            else:
                pending.append(prepared)
        return pending

    def ready(self, waiting: list[PreparedShot]) -> list[PreparedShot]:
        """Waiting shots whose parent is done; shots whose parent failed fail too."""
        out = []
        for prepared in list(waiting):
            parent = prepared.shot.continue_from
            done = self.results.get(parent) if parent else None
            if parent and done is None:
                continue
            waiting.remove(prepared)
            if done is not None and done.status == FAILED:
                self.results[prepared.shot.name] = ShotResult(prepared.shot.name, FAILED, None,
                                                              error=f"it continues from '{parent}', which failed.")
            else:
                out.append(prepared)
        return out

    def start(self, prepared: PreparedShot) -> bool:
        """Reserve the shot's credits and hand it to the runner; a refusal fails the shot."""
        shot = prepared.shot
        try:
            reservation = shared_ledger().reserve(
                shot.account, prepared.credits, reason=f"sequence {self.storyboard.sequence}, shot {shot.name}: "
                f"{prepared.price.describe()}", plan={"sequence": self.storyboard.sequence, "shot": shot.name,
                                                      "pricing": prepared.price.to_dict()},
                prompt_id=self.run_id, node_id=shot.name, budget_id=self.run_id,
                cap=self.storyboard.sequence_cap or None)
        except RefVideoError as exc:
            self.results[shot.name] = ShotResult(shot.name, FAILED, None, error=str(exc))
            return False
        self.held[shot.name] = (reservation, time.perf_counter())
        try:
            first = last_frames(self.path(shot.continue_from)) if shot.continue_from else None
            self.runner.submit(_task(self.storyboard, prepared, self.manifests[shot.name], self.digests[shot.name],
                                     first, self.filters))
        except Exception as exc:  # noqa: BLE001 - a shot that cannot start fails alone; the others go on
            self.fail(shot.name, exc)
            return False
        self.notify(f"{shot.name}: rendering on {prepared.handle.name} ({prepared.credits} credits held)")
        return True

    def fail(self, name: str, exc: BaseException) -> None:
        reservation, _ = self.held.pop(name)
        reservation.release(reason=f"failed: {type(exc).__name__}: {exc}"[:500])
        error = exc if isinstance(exc, RefVideoError) else GenerationError(f"{type(exc).__name__}: {exc}")
        self.results[name] = ShotResult(name, FAILED, None, error=str(error))
        self.notify(f"{name}: failed: {error}")

    def finish(self, output: ShotOutput) -> None:
        """Write the clip under its fixed name, then charge its reservation."""
        reservation, started = self.held[output.name]
        path = atomic_write_bytes(self.path(output.name), output.data)
        self.held.pop(output.name)
        wall = time.perf_counter() - started
        try:
            reservation.commit(generation_info=output.info, wall_seconds=wall)
        except RefVideoError as exc:  # the clip exists; the hold lapses at its expiry
            log.error("RefVideo: shot %s was made but could not be charged (%s).", output.name, exc)
        self.results[output.name] = ShotResult(output.name, RENDERED, path, reservation.amount, seconds=wall,
                                               render_seconds=output.seconds)
        self.notify(f"{output.name}: rendered in {wall:.1f} s -> {path.name}")

    def release_all(self, reason: str) -> None:
        for name, (reservation, _) in list(self.held.items()):
            try:
                reservation.release(reason=reason)
            except Exception as exc:  # noqa: BLE001 - the interrupt matters more; the ledger releases it later
                log.error("RefVideo: could not release the credits of shot %s (%s).", name, exc)
            self.held.pop(name)


def render_sequence(storyboard: Storyboard, output_dir: str | Path, *, runner: ShotRunner | None = None,
                    filters: tuple[FrameFilter, ...] = (), notify: Notify | None = None,
                    references: ReferenceSet | None = None, style: StyleDirection | None = None,
                    model: ModelHandle | None = None, handoff: bool = True) -> SequenceResult:
    """Render (or resume) a storyboard into ``output_dir`` (see the module docstring)."""
    shots = prepare(storyboard, references=references, style=style, model=model)
    out = Path(output_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    say = notify or (lambda _text: None)
    driver = _Driver(storyboard, shots, out, runner or InProcessRunner(), filters, say)
    waiting = driver.to_render()
    check_credits(storyboard, waiting, account=shots[0].shot.account)
    say(f"{storyboard.sequence}: {len(waiting)} shot(s) to render, {len(shots) - len(waiting)} up to date")
    in_flight = 0
    try:
        with host.Progress(max(len(waiting), 1), f"Sequence {storyboard.sequence}") as progress:
            while True:
                batch = driver.ready(waiting)
                while batch:  # a shot refused at its start fails the shots continuing from it at once
                    in_flight += sum(driver.start(prepared) for prepared in batch)
                    batch = driver.ready(waiting)
                if in_flight == 0:
                    break
                name, output = driver.runner.next_done()
                in_flight -= 1
                if isinstance(output, Exception):
                    driver.fail(name, output)
                else:
                    driver.finish(output)
                progress.update()
    except BaseException as exc:
        driver.runner.cancel()
        driver.release_all("interrupted" if host.is_interrupt(exc) else f"stopped: {type(exc).__name__}")
        raise
    result = SequenceResult(storyboard.sequence, [driver.results[p.shot.name] for p in shots], out)
    if handoff and result.ok:
        files = [ShotFile(p.shot.name, p.shot.prompt, r.file) for p, r in zip(shots, result.shots) if r.file]
        result.handoff = write_handoff(storyboard, out, files)
    return result
