"""What a clip costs, in credits: one pricing function for the estimate, the node and the CLI.

Prices are data: ``engine/data/pricing.json`` holds the defaults (840 credits per clip of
5-8 s at 720p); a ``pricing.json`` in the ledger's folder (:func:`override_path`) overrides
any of its keys. A clip costs ``base x resolution multiplier x audio multiplier x model
factor``, rounded up to a whole credit, where ``base`` is the per-clip price or, in
``per_second`` mode, the per-second price times the clip's seconds.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from .. import host
from ..errors import InputError, StorageError
from ..number_text import exact_number, whole_number
from ..paths import DATA_DIR
from ..sizes import RESOLUTIONS, check_duration
from ..storage import read_data, read_json

DEFAULT_PRICING = DATA_DIR / "pricing.json"
MODES = ("per_clip", "per_second")
MAX_CLIPS = 1000
_MAPPINGS = ("resolution_multipliers", "model_factors")
_NUMBERS = ("credits_per_clip", "credits_per_second", "audio_multiplier", "default_model_factor")
_KEYS = frozenset(("description", "mode", "max_amount", *_MAPPINGS, *_NUMBERS))
LEDGER_INTEGER_LIMIT = 2**53 - 1  # JavaScript's safe integers; far below SQLite's 64-bit sums


@dataclass(frozen=True)
class PriceTable:
    """The prices in force: the defaults with the user's overrides applied."""

    mode: str
    credits_per_clip: float
    credits_per_second: float
    resolution_multipliers: dict[str, float]
    audio_multiplier: float
    model_factors: dict[str, float]
    default_model_factor: float
    max_amount: int
    source: str

    def model_factor(self, model: str | None) -> float:
        """The factor for a backend or model folder name; unknown names price as a diffusion model."""
        if model is None:
            return self.default_model_factor
        if model in self.model_factors:
            return self.model_factors[model]
        lowered = {name.lower(): factor for name, factor in self.model_factors.items()}
        return lowered.get(model.lower(), self.default_model_factor)


@dataclass(frozen=True)
class Estimate:
    """The price of a plan: ``clips`` clips, each costing ``per_clip`` credits."""

    credits: int
    per_clip: int
    clips: int
    model: str | None
    resolution: str
    seconds: float
    audio: bool
    mode: str
    base: float
    resolution_multiplier: float
    audio_multiplier: float
    model_factor: float
    pricing: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line: the total and how it was computed."""
        model = self.model or "a diffusion model"
        base = (f"{self.base:g} per clip" if self.mode == "per_clip"
                else f"{self.seconds:g} s x {self.base / self.seconds:g} per second")
        factors = [f"{self.resolution} x{self.resolution_multiplier:g}"]
        if self.audio:
            factors.append(f"audio x{self.audio_multiplier:g}")
        factors.append(f"{model} x{self.model_factor:g}")
        return (f"{self.clips} clip(s) x {self.per_clip} credits = {self.credits} credits "
                f"({base}; {', '.join(factors)})")


def override_path() -> Path:
    """Where a user's ``pricing.json`` overrides the defaults: beside the ledger, never served over HTTP."""
    return host.system_dir() / "pricing.json"


def _number(value: Any, key: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise StorageError(f"the pricing file {source}: '{key}' is {value!r}, not a finite number >= 0.",
                           fix=f"Give '{key}' a number such as 1.0 or 840.")
    return float(value)


def _merged(defaults: dict, override: dict, source: str) -> dict:
    if not isinstance(override, dict):
        raise StorageError(f"the pricing file {source} must hold a JSON object.",
                           fix="Start from engine/data/pricing.json and keep only the keys you change.")
    unknown = sorted(set(override) - _KEYS)
    if unknown:
        raise StorageError(f"the pricing file {source} has unknown keys: {', '.join(unknown)}.",
                           fix=f"Use only {', '.join(sorted(_KEYS))}.")
    merged = dict(defaults)
    for key, value in override.items():
        if key in _MAPPINGS:
            if not isinstance(value, dict):
                raise StorageError(f"the pricing file {source}: '{key}' must be an object of name: number.",
                                   fix=f'e.g. "{key}": {{"720p": 1.0}}.')
            merged[key] = {**defaults.get(key, {}), **value}
        else:
            merged[key] = value
    return merged


def _table(data: dict, source: str) -> PriceTable:
    if data.get("mode") not in MODES:
        raise StorageError(f"the pricing file {source}: mode {data.get('mode')!r} is not one of {', '.join(MODES)}.",
                           fix="Set \"mode\" to \"per_clip\" or \"per_second\".")
    numbers: dict[str, Any] = {key: _number(data.get(key), key, source) for key in _NUMBERS}
    mappings: dict[str, Any] = {key: {str(name): _number(v, f"{key}.{name}", source) for name, v in data[key].items()}
                for key in _MAPPINGS}
    missing = [r for r in RESOLUTIONS if r not in mappings["resolution_multipliers"]]
    if missing:
        raise StorageError(f"the pricing file {source} has no multiplier for {', '.join(missing)}.",
                           fix="Give every resolution a multiplier in \"resolution_multipliers\".")
    limit = data.get("max_amount")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= LEDGER_INTEGER_LIMIT:
        raise StorageError(f"the pricing file {source}: max_amount {limit!r} is not a whole number from 1 to "
                           f"{LEDGER_INTEGER_LIMIT}.", fix="Set \"max_amount\" to e.g. 1000000000.")
    return PriceTable(mode=data["mode"], max_amount=limit, source=source, **numbers, **mappings)


@functools.lru_cache(maxsize=1)
def _builtin_table() -> PriceTable:
    """The built-in prices, read and checked once: they change only with RefVideo itself."""
    return _table(read_data(DEFAULT_PRICING.name), "built-in")


def load_pricing(override: str | Path | None = None) -> PriceTable:
    """The defaults merged with ``override`` (default: :func:`override_path`, when that file exists).

    The override file is read on every call, so an edit applies to the next clip without a restart.
    """
    fix = "Fix the JSON or remove the file to use the default prices."
    path = Path(override) if override is not None else override_path()
    if override is None and not path.is_file():
        return _builtin_table()
    data = _merged(read_data(DEFAULT_PRICING.name), read_json(path, what="pricing", fix=fix), str(path))
    return _table(data, str(path))


def model_name(model: Any) -> str | None:
    """A model's name from a RefVideoModelLoader handle (``.name``), a plain name, or None."""
    if model is None:
        return None
    name = getattr(model, "name", model)
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"cannot tell which model {model!r} is.", input="model",
                         fix="Connect a RefVideoModelLoader output, or give a model name.")
    return name.strip()


def check_amount(value: Any, *, input: str, limit: int, allow_zero: bool = False) -> int:
    """A whole, finite, non-negative number of credits no larger than ``limit``, or InputError.

    Text is read exactly (``5.0000000000000001`` is not whole); other scripts' digits are refused.
    """
    text = exact_number(value) if isinstance(value, str) else value
    lowest = 0 if allow_zero else 1
    rule = f"Give a whole number of credits from {lowest} to {limit}."
    if isinstance(text, Decimal) and abs(text) <= limit:
        whole = whole_number(text)
        if whole is None:
            raise InputError(f"{value!r} is not a whole number of credits.", input=input, fix=rule)
        text = whole
    elif isinstance(text, Decimal):
        text = int(text.to_integral_value())  # far out of range: the checks below name it
    if isinstance(text, bool) or not isinstance(text, (int, float)):
        raise InputError(f"{value!r} is not a number of credits.", input=input, fix=rule)
    if isinstance(text, float) and not math.isfinite(text):
        raise InputError(f"{value!r} is not a finite number of credits.", input=input, fix=rule)
    if text != int(text):
        raise InputError(f"{value!r} is not a whole number of credits.", input=input, fix=rule)
    if text < lowest:
        raise InputError(f"{value!r} credits is {'negative' if text < 0 else 'zero'}.", input=input, fix=rule)
    if text > limit:
        raise InputError(f"{value!r} credits is more than the ledger accepts in one entry ({limit}).",
                         input=input, fix=rule)
    return int(text)


def _whole_credits(value: float) -> int:
    """Round up to a whole credit, ignoring float noise (840 x 1.1 is 924, not 925)."""
    return math.ceil(round(value, 6))


def estimate(*, model: Any = None, resolution: str, seconds: float, audio: bool = False, clips: int = 1,
             table: PriceTable | None = None) -> Estimate:
    """The price of ``clips`` clips of ``seconds`` at ``resolution`` on ``model`` (None: a diffusion model)."""
    table = table or load_pricing()
    name = model_name(model)
    if resolution not in RESOLUTIONS or resolution not in table.resolution_multipliers:
        raise InputError(f"'{resolution}' is not a known resolution.", input="resolution",
                         fix=f"Choose one of {', '.join(RESOLUTIONS)}.")
    seconds = check_duration(seconds)
    if not isinstance(audio, bool):
        raise InputError(f"audio must be true or false, not {audio!r}.", input="audio", fix="Give true or false.")
    if isinstance(clips, bool) or not isinstance(clips, int) or not 1 <= clips <= MAX_CLIPS:
        raise InputError(f"{clips!r} is not a number of clips RefVideo plans.", input="clips",
                         fix=f"Give a whole number from 1 to {MAX_CLIPS}.")
    base = table.credits_per_clip if table.mode == "per_clip" else table.credits_per_second * seconds
    res_mult = table.resolution_multipliers[resolution]
    audio_mult = table.audio_multiplier if audio else 1.0
    factor = table.model_factor(name)
    raw = base * res_mult * audio_mult * factor
    if not raw <= table.max_amount:  # also NaN and infinity, from prices pushed to their limits
        raise InputError(f"one clip would cost {raw:g} credits under the prices of {table.source}, more than the "
                         f"ledger accepts in one entry ({table.max_amount}).", input="pricing",
                         fix="Correct the prices in the pricing file (or remove it to use the defaults).")
    per_clip = _whole_credits(raw)
    total = per_clip * clips
    if total > table.max_amount:
        raise InputError(f"this plan costs {total} credits, more than the ledger accepts in one entry "
                         f"({table.max_amount}).", input="clips", fix="Plan fewer or cheaper clips.")
    return Estimate(credits=total, per_clip=per_clip, clips=clips, model=name, resolution=resolution,
                    seconds=seconds, audio=audio, mode=table.mode, base=base, resolution_multiplier=res_mult,
                    audio_multiplier=audio_mult, model_factor=factor, pricing=table.source)
