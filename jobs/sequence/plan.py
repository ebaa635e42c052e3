"""Planning a storyboard: every shot resolved (model, references, style, frames, size, price) and the
credits checked against the ledger and the caps, before anything renders.

:func:`prepare` turns each :class:`~.storyboard.Shot` into a :class:`PreparedShot` (reading the
reference images and saved sets once each); :func:`check_credits` refuses, with the ledger's own
message and fix, when an account's available credits, a shot's ``budget_cap`` or the sequence's
cap (``defaults.budget_cap``) do not cover the shots about to be charged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from ...engine.credits.budget import covered_balance
from ...engine.credits.ledger import Balance, shared_ledger
from ...engine.credits.pricing import Estimate, estimate
from ...engine.errors import BudgetRefused, InputError
from ...engine.paths import SAMPLES_PREFIX, contained
from ...engine.references.images import read_image_file, resolve_image_name
from ...engine.references.reference import Reference, ReferenceSet
from ...engine.sequence.storyboard import FROM_SOCKET, ReferenceImage, Shot, Storyboard, checked_as, field_name
from ...engine.sizes import RenderPlan
from ...engine.style import StyleDirection
from ..generation import check_prompt, plan_for, sampling
from ..reference_prep import judge_set, load_saved, matte_for

if TYPE_CHECKING:
    from ...models.registry import ModelHandle


@dataclass(frozen=True, eq=False)
class PreparedShot:
    """A shot ready to render: its model handle, references, style, render plan and price."""

    shot: Shot
    handle: ModelHandle
    references: ReferenceSet
    style: StyleDirection | None
    render: RenderPlan
    price: Estimate

    @property
    def credits(self) -> int:
        return self.price.per_clip

    def row(self) -> dict:
        """The shot as ``plan --json`` lists it."""
        return {"name": self.shot.name, "model": self.handle.name, "frames": self.render.frames,
                "width": self.render.width, "height": self.render.height, "credits": self.credits}


@dataclass(frozen=True)
class SequencePlan:
    """The prepared shots, their total and the sequence account's balance before and after."""

    storyboard: Storyboard
    shots: tuple[PreparedShot, ...]
    credits: int
    account: str
    balance: Balance

    def to_dict(self) -> dict:
        return {"sequence": self.storyboard.sequence, "shots": [s.row() for s in self.shots],
                "credits": self.credits, "balance": self.balance.available,
                "balance_after": self.balance.available - self.credits}

    def text(self) -> str:
        lines = [f"Sequence '{self.storyboard.sequence}': {len(self.shots)} shot(s)"]
        for s in self.shots:
            after = f" (continues from {s.shot.continue_from})" if s.shot.continue_from else ""
            lines.append(f"  {s.shot.name}: {s.render.frames} frames {s.render.width}x{s.render.height} at "
                         f"{s.render.fps:g} fps on {s.handle.name}, {s.credits} credits{after}")
        lines.append(f"Total: {self.credits} credits. Account '{self.account}': {self.balance.available} available "
                     f"-> {self.balance.available - self.credits} after.")
        return "\n".join(lines)


def _image_path(entry: ReferenceImage, base_dir: Path | None, where: str) -> Path:
    """An input-folder name or ``samples/...`` as LoadReferenceSet resolves it, else a file beside the storyboard."""
    if base_dir is None or entry.image.replace("\\", "/").startswith(SAMPLES_PREFIX):
        return resolve_image_name(entry.image, input_name=where)
    try:
        return resolve_image_name(entry.image, input_name=where)
    except InputError:
        path = contained(base_dir, entry.image, input_name=where)
        if not path.is_file():
            raise InputError(f"'{entry.image}' is neither in the input folder nor beside the storyboard.",
                             input=where, fix="Give a file in the storyboard's folder, an input-folder name or "
                                              "samples/<file>.") from None
        return path


def load_references(value: str | tuple[ReferenceImage, ...], base_dir: Path | None, where: str) -> ReferenceSet:
    """A saved set by name, or the listed images read, matted and checked like LoadReferenceSet does."""
    if isinstance(value, str):
        return checked_as(where, load_saved, value).references
    references, notes = [], []
    for i, entry in enumerate(value):
        at = f"{where}[{i}].image"
        loaded = read_image_file(_image_path(entry, base_dir, at), input_name=at, source=entry.image)
        references.append(Reference(image=loaded.rgb, mask=matte_for(loaded, entry.background, "u2netp"),
                                    role=entry.role, label=entry.label, sha256=loaded.sha256, source=entry.image))
        notes.append(loaded.notes)
    return judge_set(ReferenceSet(tuple(references)), [e.background for e in value], notes, [where] * len(value),
                     strict=False).references


def _style(name: str | None, where: str) -> StyleDirection | None:
    from ...engine.skills import load_skill

    return None if name is None else load_skill(name, input_name=where)


def _handle(shot: Shot) -> ModelHandle:
    from ...models.registry import resolve
    from ...models.spec import LoadOptions

    known = {f.name for f in fields(LoadOptions)}
    unknown = [k for k, _ in shot.loader if k not in known]
    if unknown:
        raise InputError(f"'{unknown[0]}' is not a loader input.", input=field_name(shot.name, "loader"),
                         fix=f"Use any of: {', '.join(sorted(known))}.")
    options = checked_as(field_name(shot.name, "loader"), LoadOptions, **dict(shot.loader))
    return resolve(shot.model, options, input_name=field_name(shot.name, "model"))


K = TypeVar("K")
V = TypeVar("V")


def _once(cache: dict[K, V], key: K, make: Callable[[], V]) -> V:
    """``make()`` the first time ``key`` is asked for (each set, image list, skill and model is read once)."""
    if key not in cache:
        cache[key] = make()
    return cache[key]


def _socket(value: V | None, shot: Shot, name: str) -> V:
    if value is None:
        raise InputError(f"takes the node's {name} socket, and nothing is connected to it.",
                         input=field_name(shot.name, name), fix=f"Connect {name}, or name it in the storyboard.")
    return value


def prepare(storyboard: Storyboard, *, references: ReferenceSet | None = None, style: StyleDirection | None = None,
            model: ModelHandle | None = None) -> tuple[PreparedShot, ...]:
    """Resolve every shot; raises InputError naming the shot and field. ``references``, ``style`` and
    ``model`` (a node's sockets) serve the shots whose value is :data:`FROM_SOCKET`."""
    sets: dict[object, ReferenceSet] = {}
    styles: dict[str | None, StyleDirection | None] = {}
    handles: dict[tuple, ModelHandle] = {}
    prepared: list[PreparedShot] = []
    for shot in storyboard.shots:
        where = field_name(shot.name, "references")
        refs = _socket(references, shot, "references") if shot.references == FROM_SOCKET else _once(
            sets, shot.references, partial(load_references, shot.references, storyboard.base_dir, where))
        shot_style = _socket(style, shot, "style") if shot.style == FROM_SOCKET else _once(
            styles, shot.style, partial(_style, shot.style, field_name(shot.name, "style")))
        handle = _socket(model, shot, "model") if shot.model == FROM_SOCKET else _once(
            handles, (shot.model, shot.loader), partial(_handle, shot))
        render = checked_as(field_name(shot.name, "resolution"), plan_for, handle.spec, handle.options,
                            shot.resolution, shot.aspect, shot.duration)
        checked_as(field_name(shot.name, "prompt"), check_prompt, shot.prompt)
        checked_as(field_name(shot.name, "steps"), sampling, handle.spec, handle.options.preset, shot_style,
                   shot.steps, 0)
        price = estimate(model=handle.name, resolution=shot.resolution, seconds=shot.duration)
        if shot.budget_cap and price.per_clip > shot.budget_cap:
            raise BudgetRefused(f"this shot costs {price.per_clip} credits, over its budget cap of "
                                f"{shot.budget_cap}.", input=field_name(shot.name, "budget_cap"),
                                fix="Raise the shot's budget_cap (0 means no cap), or render it cheaper.")
        first = prepared[0].render if prepared else render
        if (render.width, render.height, render.fps) != (first.width, first.height, first.fps):
            raise InputError(f"renders {render.width}x{render.height} at {render.fps:g} fps, the first shot "
                             f"{first.width}x{first.height} at {first.fps:g} fps: the shots could not be joined.",
                             input=field_name(shot.name, "resolution"),
                             fix="Give every shot of a sequence the same resolution, aspect and model timing.")
        prepared.append(PreparedShot(shot, handle, refs, shot_style, render, price))
    return tuple(prepared)


def check_credits(storyboard: Storyboard, shots: Iterable[PreparedShot], *, account: str) -> tuple[int, Balance]:
    """Refuse when the sequence cap or an account does not cover ``shots``; returns their total and the
    balance of ``account`` (the sequence's own account)."""
    shots = list(shots)
    total = sum(s.credits for s in shots)
    if storyboard.sequence_cap and total > storyboard.sequence_cap:
        raise BudgetRefused(f"this sequence costs {total} credits, over its budget cap of {storyboard.sequence_cap}.",
                            input="defaults.budget_cap", fix="Raise defaults.budget_cap (0 means no cap), or plan "
                                                              "fewer or cheaper shots.")
    ledger = shared_ledger()
    per_account: dict[str, int] = {account: 0}
    for s in shots:
        per_account[s.shot.account] = per_account.get(s.shot.account, 0) + s.credits
    balances = {name: covered_balance(ledger, name, credits, f"this sequence ({len(shots)} shot(s))")
                for name, credits in per_account.items()}
    return total, balances[account]


def plan_sequence(storyboard: Storyboard, *, references: ReferenceSet | None = None,
                  style: StyleDirection | None = None, model: ModelHandle | None = None) -> SequencePlan:
    """Prepare every shot and check the whole sequence's price (``refvideo sequence plan``)."""
    shots = prepare(storyboard, references=references, style=style, model=model)
    account = shots[0].shot.account if len({s.shot.account for s in shots}) == 1 else "default"
    total, balance = check_credits(storyboard, shots, account=account)
    return SequencePlan(storyboard, shots, total, account, balance)
