"""Input and output drift: the population stability index (PSI) of each input, and of the model output, against the
reference distribution the model ships (manifest `monitoring.reference`, else the model card's
`reference_distribution`), or, when it ships none, against the first half of the reporting window.

The report always says which reference it used, and says why when it could not compute drift (too few predictions,
or a reference that is not well formed), instead of printing an empty "Reference: None".
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import ValidationError

from inference.manifest import Manifest, ReferenceBins
from monitoring.metrics import not_enough
from monitoring.stats import proportions, psi, quantile_edges

PSI_THRESHOLD = 0.2
MIN_PREDICTIONS = 100  # fewer leave bins of a 10-bin PSI nearly empty, and PSI then means nothing
SCORE = "__score__"  # the reference key of the model output


def reference_bins(manifest: Manifest | None) -> tuple[dict[str, ReferenceBins] | None, str | None]:
    """The model's reference bins and where they come from; (None, why) when there are none or they are unusable."""
    if manifest is None:
        return None, "the model version is not in the model repository"
    if manifest.monitoring.reference:
        return dict(manifest.monitoring.reference), "manifest monitoring.reference"
    raw = manifest.model_card.get("reference_distribution")
    if not raw:
        return None, "the model card has no reference distribution"
    if not isinstance(raw, dict):
        return None, "model_card.reference_distribution is not a mapping of input to {edges, proportions}"
    bins: dict[str, ReferenceBins] = {}
    for name, spec in raw.items():
        try:
            bins[str(name)] = ReferenceBins.model_validate(spec)
        except ValidationError as exc:
            first = exc.errors()[0]
            return None, f"model_card.reference_distribution.{name} is not usable ({first['msg']})"
    return bins, "model card reference distribution"


def column(rows: list[dict[str, Any]], name: str) -> np.ndarray:
    if name == SCORE:
        return np.array([r["score"] for r in rows if r["score"] is not None], dtype=float)
    return np.array([r["features"][name] for r in rows if r["features"].get(name) is not None], dtype=float)


def drift(scored: list[dict[str, Any]], manifest: Manifest | None, threshold: float = PSI_THRESHOLD) -> dict[str, Any]:
    bins, source = reference_bins(manifest)
    out: dict[str, Any] = {"threshold": threshold, "features": {}, "flagged": [], "n": len(scored), "note": None}
    names = sorted({k for r in scored for k in r["features"]})
    if bins is not None:
        out["reference"] = source
        out["not_in_reference"] = [n for n in names if n not in bins]
    else:
        out["reference"] = "first half of the reporting window"
        out["note"] = f"{source}, so drift is measured against the first half of the reporting window"
        out["not_in_reference"] = []
    if len(scored) < MIN_PREDICTIONS:
        out["note"] = not_enough("scored predictions for drift", len(scored), MIN_PREDICTIONS)
        return out
    features: dict[str, Any] = {}
    if bins is not None:
        for name in [*names, SCORE]:
            spec = bins.get(name)
            values = column(scored, name)
            if spec is None or not len(values):
                continue
            edges = np.asarray(spec.edges, dtype=float)
            edges[0], edges[-1] = -np.inf, np.inf  # values beyond the outer reference edges fall in the end bins
            value = psi(np.asarray(spec.proportions, dtype=float), proportions(values, edges))
            features[name] = {"psi": value, "flagged": value > threshold, "n": int(len(values))}
    else:
        ordered = sorted(scored, key=lambda r: r["created_at"])
        half = len(ordered) // 2
        base, current = ordered[:half], ordered[half:]
        for name in [*names, SCORE]:
            b, c = column(base, name), column(current, name)
            if len(np.unique(b)) < 2 or not len(c):
                continue
            edges = quantile_edges(b)
            value = psi(proportions(b, edges), proportions(c, edges))
            features[name] = {"psi": value, "flagged": value > threshold, "n": int(len(c))}
    out["features"] = features
    out["flagged"] = sorted(n for n, f in features.items() if f["flagged"])
    return out
