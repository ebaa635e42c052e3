"""CreditMeter: price a shot plan, check it against the account and the cap, hand the budget on."""

from __future__ import annotations

from typing import Any

from ..engine import ranks
from ..engine.credits.budget import plan_budget
from ..engine.credits.ledger import DEFAULT_ACCOUNT
from ..engine.credits.pricing import LEDGER_INTEGER_LIMIT, MAX_CLIPS
from ..engine.sizes import DEFAULT_RESOLUTION, DEFAULT_SECONDS, MAX_SECONDS, MIN_SECONDS, RESOLUTIONS
from .common import BUDGET, CATEGORY, MODEL, with_ui


class CreditMeter:
    """Estimates a plan's cost and refuses, before any model work, a plan the credits do not cover."""

    CATEGORY = CATEGORY
    DESCRIPTION = ("Prices a shot plan (clips x resolution x duration, audio, model) and checks it against the "
                   "account's credits and an optional cap before anything renders. Connect its budget to "
                   "RefVideoSampler, which reserves each clip's credits and is charged only when frames exist.")
    RETURN_TYPES = (BUDGET, "STRING")
    RETURN_NAMES = ("budget", "report")
    OUTPUT_TOOLTIPS = ("The checked plan: RefVideoSampler reserves and charges each clip through it.",
                       "The estimate and the balance before and after the plan.")
    FUNCTION = "meter"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "resolution": (list(RESOLUTIONS), {"default": DEFAULT_RESOLUTION,
                                                   "tooltip": "Resolution of each planned clip (1080p costs more)."}),
                "duration": ("FLOAT", {"default": DEFAULT_SECONDS, "min": MIN_SECONDS, "max": MAX_SECONDS,
                                       "step": 0.1, "tooltip": "Seconds per clip (5-8)."}),
                "audio": ("BOOLEAN", {"default": False,
                                      "tooltip": "Each clip also gets AI-generated audio (charged in the same plan)."}),
                "clips": ("INT", {"default": 1, "min": 1, "max": MAX_CLIPS,
                                  "tooltip": "How many clips the plan renders: the whole sequence is checked up "
                                             "front."}),
                "account": ("STRING", {"default": DEFAULT_ACCOUNT,
                                       "tooltip": "Credit account to charge (top up with `refvideo credits topup "
                                                  "N --account NAME`)."}),
                "budget_cap": ("INT", {"default": 0, "min": 0, "max": LEDGER_INTEGER_LIMIT,
                                       "tooltip": "The most one run may spend through this meter; 0 = no cap."}),
            },
            "optional": {
                "model": (MODEL, {"tooltip": "The RefVideoModelLoader output, so that the model's own price "
                                             "applies (previz is free). Unconnected: priced as a diffusion model."}),
            },
        }

    def meter(self, resolution: str, duration: float, audio: bool, clips: int, account: str, budget_cap: int,
              model: Any = None) -> dict[str, Any]:
        # under torchrun only rank 0 reads and holds the ledger; a refusal there stops every rank
        budget = ranks.on_main(lambda: plan_budget(model=model, resolution=resolution, seconds=duration, audio=audio,
                                                   clips=clips, account=account, cap=budget_cap))
        report = budget.report() if budget is not None else f"Credits are metered by rank 0 (this is {ranks.rank()})."
        return with_ui((budget, report), report)


NODES = {"CreditMeter": (CreditMeter, "Credit Meter")}
