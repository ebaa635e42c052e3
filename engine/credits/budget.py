"""The REFVIDEO_BUDGET value: a priced shot plan on an account, which RefVideoSampler reserves through.

:func:`plan_budget` prices a whole plan (``clips`` clips) and refuses it up front when the
account's available credits or the cap do not cover it. The sampler then calls
:meth:`Budget.reserve` for each clip it really renders, after its input checks and before any
model work; the reservation is committed when the frames exist and released on failure or
interrupt. A re-queue that ComfyUI serves from its cache never reaches the sampler, so it is
never charged.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .. import host
from ..errors import BudgetRefused
from ..storage import validate_name
from .ledger import DEFAULT_ACCOUNT, Balance, Entry, Ledger, Reservation, shared_ledger
from .pricing import LEDGER_INTEGER_LIMIT, Estimate, check_amount, estimate, model_name


@runtime_checkable
class CreditHold(Protocol):
    """Credits held for one clip (a ledger :class:`~engine.credits.ledger.Reservation`)."""

    def commit(self, *, generation_info: dict[str, Any], wall_seconds: float, gpu_seconds: float | None = None,
               peak_vram_bytes: int | None = None) -> Entry | None:
        """Charge the held credits once the clip exists (the charge; None when it was released)."""

    def release(self, reason: str) -> object:
        """Give the held credits back (the clip failed or was interrupted)."""


@runtime_checkable
class CreditBudget(Protocol):
    """What RefVideoSampler draws on through its ``budget`` input: :class:`Budget` is the one in use."""

    def reserve(self, *, model: str, resolution: str, seconds: float, prompt_id: str | None = None,
                node_id: str | None = None) -> CreditHold:
        """Hold the price of one clip, or raise BudgetRefused."""


@dataclass(frozen=True)
class ShotPlan:
    """What the user plans to render: ``clips`` clips of ``seconds`` at ``resolution``."""

    model: str | None
    resolution: str
    seconds: float
    audio: bool
    clips: int


class Budget:
    """A priced plan on an account with an optional per-run cap (``cap`` None: no cap).

    ``balance`` is the account as it was when the plan was checked (for the report).
    """

    def __init__(self, *, account: str, plan: ShotPlan, cap: int | None, estimate: Estimate, balance: Balance,
                 ledger_path: Path) -> None:
        self.id = uuid.uuid4().hex
        self.account = account
        self.plan = plan
        self.cap = cap
        self.estimate = estimate
        self.balance = balance
        self.ledger_path = ledger_path

    def reserve(self, *, model: str, resolution: str, seconds: float, prompt_id: str | None = None,
                node_id: str | None = None) -> Reservation:
        """Hold the price of one clip (with the plan's audio choice) or raise BudgetRefused.

        Refused when the account's available credits do not cover the clip, or when this run's
        reservations through this budget would exceed the cap. ``prompt_id``/``node_id`` default
        to the node that is running.
        """
        running = host.current_execution()
        prompt_id = prompt_id if prompt_id is not None else running.prompt_id
        node_id = node_id if node_id is not None else running.node_id
        price = estimate(model=model_name(model), resolution=resolution, seconds=seconds, audio=self.plan.audio)
        plan = {"model": price.model, "resolution": resolution, "seconds": price.seconds, "audio": price.audio,
                "pricing": price.to_dict()}
        return shared_ledger(self.ledger_path).reserve(
            self.account, price.per_clip, reason=f"clip: {price.describe()}", plan=plan, prompt_id=prompt_id,
            node_id=node_id, budget_id=self.id, cap=self.cap)

    def report(self) -> str:
        """The estimate and the balance before and after the plan, as shown in the node."""
        after = self.balance.available - self.estimate.credits
        held = f", {self.balance.held} held" if self.balance.held else ""
        cap = f"Budget cap: {self.cap} credits per run." if self.cap is not None else "No budget cap."
        return "\n".join([
            f"Estimate: {self.estimate.describe()}.",
            (f"Account '{self.account}': balance {self.balance.balance}{held}, {self.balance.available} available "
             f"-> {after} after this plan."),
            cap,
        ])

    def __repr__(self) -> str:
        return f"Budget(account={self.account!r}, credits={self.estimate.credits}, cap={self.cap})"


def covered_balance(ledger: Ledger, account: str, credits: int, what: str) -> Balance:
    """The account's balance, or the ledger's refusal when its available credits do not cover ``credits``."""
    balance = ledger.balance(account)
    if credits > balance.available and balance.held and ledger.release_orphans():
        balance = ledger.balance(account)  # holds of processes that died since this one opened the ledger
    if credits > balance.available:
        raise ledger.shortfall(account, credits, what)
    return balance


def plan_budget(*, model: Any = None, resolution: str, seconds: float, audio: bool = False, clips: int = 1,
                account: str = DEFAULT_ACCOUNT, cap: Any = 0) -> Budget:
    """Price a plan and check it against the account and the cap (0: no cap); refuse with the fix."""
    account = validate_name(account, kind="account", input_name="account")
    cap_value = check_amount(cap, input="budget_cap", limit=LEDGER_INTEGER_LIMIT, allow_zero=True) or None
    price = estimate(model=model_name(model), resolution=resolution, seconds=seconds, audio=audio, clips=clips)
    if cap_value is not None and price.credits > cap_value:
        raise BudgetRefused(f"this plan costs {price.credits} credits, over the budget cap of {cap_value}.",
                            input="budget_cap",
                            fix="Raise budget_cap (0 means no cap), or plan fewer or cheaper clips.")
    ledger = shared_ledger()
    balance = covered_balance(ledger, account, price.credits, f"this plan ({price.clips} clip(s))")
    return Budget(account=account, plan=ShotPlan(price.model, resolution, price.seconds, audio, clips), cap=cap_value,
                  estimate=price, balance=balance, ledger_path=ledger.path)
