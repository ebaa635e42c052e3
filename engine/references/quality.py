"""Reference quality checks: the best practices users are given, measured.

Each check measures one number on the image (and its matte); thresholds, messages and fixes
are data in ``engine/data/quality_thresholds.json`` (documented in docs/references.md), and
so is which checks apply to which role. A clean reference has no findings.

Checks: ``blur`` (edge blur radius), ``noise`` (luminance grain), ``compression`` (JPEG
blockiness), ``resolution`` (shorter side), ``background`` (edge density around the
subject), ``cropped`` (subject touching the frame edge), ``multiple_subjects`` (separate
regions of the matte), ``aspect`` (extreme ratios).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..storage import read_data
from .matting import border_band, downsample, flat_background_key, label_components

CHECKS = ("blank", "empty_subject", "blur", "noise", "compression", "resolution", "background", "cropped",
          "multiple_subjects", "aspect")
SIDES = ("top", "bottom", "left", "right")


@dataclass(frozen=True)
class Finding:
    """One problem with one reference: which check, how bad, what it means and what to do."""

    check: str
    severity: str
    message: str
    fix: str

    def to_dict(self) -> dict:
        return {"check": self.check, "severity": self.severity, "message": self.message, "fix": self.fix}

    def line(self) -> str:
        return f"{self.severity} [{self.check}] {self.message} Fix: {self.fix}"


def thresholds() -> dict:
    """The check thresholds, messages and role table (read once)."""
    return read_data("quality_thresholds.json")


def checks_for_role(role: str) -> list[str]:
    roles = thresholds()["roles"]
    if role not in roles:
        raise InputError(f"unknown role '{role}'.", input="role", fix=f"Use one of: {', '.join(roles)}.")
    return list(roles[role])


# --------------------------------------------------------------------------- measures


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luma in 8-bit levels (0..255), float32."""
    rgb = np.asarray(rgb, dtype=np.float32)
    return (rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114) * np.float32(255.0)


def gaussian_blur(gray: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a 2-D float array (edges repeated)."""
    radius = max(1, int(3 * sigma + 0.5))
    taps = np.exp(-np.arange(-radius, radius + 1) ** 2 / (2 * sigma * sigma)).astype(np.float32)
    taps /= taps.sum()
    padded = np.pad(gray, radius, mode="edge")
    h, w = gray.shape
    rows = sum(t * padded[:, i:i + w] for i, t in enumerate(taps))
    return sum(t * rows[i:i + h] for i, t in enumerate(taps))


def _gradient(gray: np.ndarray) -> np.ndarray:
    gx = np.zeros_like(gray)
    gy = np.zeros_like(gray)
    gx[:, 1:-1] = (gray[:, 2:] - gray[:, :-2]) * 0.5
    gy[1:-1] = (gray[2:] - gray[:-2]) * 0.5
    return np.hypot(gx, gy)


def _top_mean(values: np.ndarray, share: float = 0.002, minimum: int = 200, bins: int = 1024) -> float:
    """Mean of the largest ``share`` of the (non-negative) values, via a histogram threshold.

    A histogram rather than a partition: images with large flat areas hold many equal
    values, on which numpy's selection slows down by an order of magnitude.
    """
    flat = values.ravel()
    peak = float(flat.max()) if flat.size else 0.0
    if peak <= 0:
        return 0.0
    n = min(flat.size, max(minimum, int(flat.size * share)))
    counts = np.bincount(np.minimum((flat * ((bins - 1) / peak)).astype(np.int64), bins - 1), minlength=bins)
    above = np.cumsum(counts[::-1])
    first = bins - 1 - int(np.searchsorted(above, n))
    return float(flat[flat >= first * peak / (bins - 1)].mean())


def blur_radius(gray: np.ndarray) -> float:
    """Edge blur (Gaussian sigma, px) from the strongest edges: 0.607 x gradient / second derivative.

    For an edge blurred by sigma the peak gradient over the peak |Laplacian| is sigma*e^0.5;
    the image is pre-smoothed by sigma 1 against noise, which is removed again in quadrature.
    """
    smooth = gaussian_blur(gray, 1.0)
    laplacian = np.zeros_like(smooth)
    laplacian[1:-1, 1:-1] = (smooth[2:, 1:-1] + smooth[:-2, 1:-1] + smooth[1:-1, 2:] + smooth[1:-1, :-2]
                             - 4 * smooth[1:-1, 1:-1])
    curvature = _top_mean(np.abs(laplacian))
    if curvature < 1e-3:  # no edges at all: nothing to judge
        return 0.0
    total = 0.607 * _top_mean(_gradient(smooth)) / curvature
    return float(np.sqrt(max(total * total - 1.0, 0.0)))


def noise_level(gray: np.ndarray) -> float:
    """Luminance noise sigma in 8-bit levels (Immerkaer's operator; the median ignores edges)."""
    g = gray
    response = (g[:-2, :-2] - 2 * g[:-2, 1:-1] + g[:-2, 2:] - 2 * g[1:-1, :-2] + 4 * g[1:-1, 1:-1]
                - 2 * g[1:-1, 2:] + g[2:, :-2] - 2 * g[2:, 1:-1] + g[2:, 2:])
    return float(np.median(np.abs(response)) / (0.6745 * 6.0))


def blockiness(gray: np.ndarray, block: int = 8, cap: float = 60.0) -> float:
    """JPEG blockiness: steps on the 8x8 grid versus off it (1.0 = none), both directions.

    Mean absolute luminance steps (hard edges over ``cap`` ignored) are averaged per column
    phase modulo 8; the strongest phase over the median phase, geometric mean of the two
    directions (content periodic in one direction only does not count).
    """
    ratios = []
    for steps in (np.abs(np.diff(gray, axis=1)), np.abs(np.diff(gray, axis=0)).T):
        profile = np.where(steps < cap, steps, 0.0).mean(axis=0)
        usable = profile.size // block * block
        if usable < 2 * block:
            return 1.0
        phases = profile[:usable].reshape(-1, block).mean(axis=0)
        ratios.append(phases.max() / max(float(np.median(phases)), 1e-3))
    return float(np.sqrt(ratios[0] * ratios[1]))


def edge_density(gray: np.ndarray, region: np.ndarray, sigma: float, levels: float) -> float:
    """Share of ``region`` whose smoothed luminance gradient exceeds ``levels`` per pixel."""
    if not region.any():
        return 0.0
    strong = _gradient(gaussian_blur(gray, sigma)) > levels
    return float(strong[region].mean())


def edge_contact(matte: np.ndarray, band_px: int) -> tuple[float, str]:
    """The largest share of one frame edge the subject (matte > 0.5) touches, and which edges."""
    subject = matte > 0.5
    b = max(1, band_px)
    shares = {"top": subject[:b].any(axis=0).mean(), "bottom": subject[-b:].any(axis=0).mean(),
              "left": subject[:, :b].any(axis=1).mean(), "right": subject[:, -b:].any(axis=1).mean()}
    touching = [s for s in SIDES if shares[s] > 0]
    if not touching:
        return 0.0, ""
    if len(touching) == 1:
        return float(max(shares.values())), f"the {touching[0]} edge"
    return float(max(shares.values())), f"the {', '.join(touching[:-1])} and {touching[-1]} edges"


def count_subjects(matte: np.ndarray, params: dict) -> int:
    """Separate subjects: matte regions at least a share of the largest and of the frame."""
    small = downsample(matte, int(params["component_max_side"])) > 0.5
    _, sizes = label_components(small)
    if sizes.size == 0:
        return 0
    floor = max(sizes.max() * params["min_subject_share"], small.size * params["min_subject_area"])
    return int((sizes >= floor).sum())


# --------------------------------------------------------------------------- the report


def analysis_view(rgb: np.ndarray, matte: np.ndarray | None, max_side: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The image (and matte) at most ``max_side`` px long, as the model would see it."""
    if max(rgb.shape[:2]) <= max_side:
        return rgb, matte
    return downsample(rgb, max_side), (None if matte is None else downsample(matte, max_side))


def measure(rgb: np.ndarray, *, matte: np.ndarray | None = None, wanted: list[str] | None = None) -> dict:
    """The measured value (and detail) of each wanted check.

    ``matte`` is a trusted subject matte (rembg, or the file's alpha); without one the
    subject is estimated with the flat-background key, and the subject checks (``cropped``,
    ``multiple_subjects``) are skipped when the backdrop is not flat enough to trust it.
    """
    table = thresholds()
    params = table["parameters"]
    wanted = list(CHECKS) if wanted is None else wanted
    h, w = rgb.shape[:2]
    view, view_matte = analysis_view(rgb, matte, int(table["analysis_max_side"]))
    gray = luminance(view)
    results: dict[str, tuple[float, str]] = {}
    if "resolution" in wanted:
        results["resolution"] = (float(min(h, w)), f"{w}x{h}")
    if "aspect" in wanted:
        results["aspect"] = (max(h, w) / max(1, min(h, w)), f"{w}x{h}")
    if "blank" in wanted:
        low, high = np.quantile(gray, (0.001, 0.999)) if gray.size else (0.0, 0.0)
        results["blank"] = (float(high - low) * 255.0, "")
    if "empty_subject" in wanted and view_matte is not None:
        results["empty_subject"] = (float(np.mean(view_matte >= 0.5)), "")
    if "blur" in wanted:
        results["blur"] = (blur_radius(gray), "")
    if "noise" in wanted:
        results["noise"] = (noise_level(gray), "")
    if "compression" in wanted:
        results["compression"] = (blockiness(luminance(rgb)), "")
    subject = view_matte
    if subject is None and ({"background", "cropped", "multiple_subjects"} & set(wanted)):
        key = flat_background_key(view)
        subject = key.matte if key.trusted else None
    if "background" in wanted:
        region = border_band(gray.shape, params["border_band"])
        if subject is not None:
            region &= subject < 0.5
        results["background"] = (edge_density(gray, region, params["background_smoothing_sigma"],
                                              params["background_edge_levels"]), "")
        if results["background"][0] > table["checks"]["background"]["warning"]["above"] and view_matte is None:
            subject = None  # a busy backdrop: the key cannot tell the subject apart
    if subject is not None and "cropped" in wanted:
        results["cropped"] = edge_contact(subject, int(params["edge_band_px"]))
    if subject is not None and "multiple_subjects" in wanted:
        results["multiple_subjects"] = (float(count_subjects(subject, params)), "")
    return results


def _fires(level: dict | None, value: float) -> bool:
    if not level:
        return False
    return ("above" in level and value > level["above"]) or ("below" in level and value < level["below"])


def judge(check: str, value: float, detail: str = "") -> Finding | None:
    """The finding for one measured value, or None when it passes."""
    spec = thresholds()["checks"][check]
    for severity in ("error", "warning", "info"):
        if _fires(spec.get(severity), value):
            prefix = "" if severity == "warning" else f"{severity}_"
            message = spec.get(f"{prefix}message", spec["message"])
            fix = spec.get(f"{prefix}fix", spec["fix"])
            return Finding(check, severity, message.format(value=value, detail=detail), fix)
    return None


def check_reference(rgb: np.ndarray, *, role: str = "character", matte: np.ndarray | None = None) -> list[Finding]:
    """Every finding for one prepared reference (RGB float ``[H, W, 3]``), in check order."""
    wanted = checks_for_role(role)
    measured = measure(rgb, matte=matte, wanted=wanted)
    findings = [judge(check, *measured[check]) for check in CHECKS if check in measured]
    return [f for f in findings if f is not None]


def strict(findings: list[Finding]) -> list[Finding]:
    """Warnings become errors (the ``strict`` option)."""
    return [Finding(f.check, "error", f.message, f.fix) if f.severity == "warning" else f for f in findings]
