"""Each refusal's attribution stands in the same place as its reason (what-if pairs the two lists by position)."""

from __future__ import annotations

import math

from conftest import ROOT
from fhir_mapping.result import MappingResult
from inference.manifest import load_manifest
from inference.runtime import Prediction, stopped_by_guards


def test_a_refusal_no_guard_attributes_has_an_empty_attribution_in_its_place() -> None:
    manifest = load_manifest(ROOT / "models" / "ascvd-pce-10y" / "1.0.0")
    pred = Prediction(manifest.id, manifest.version, "champion", inputs={})
    assert stopped_by_guards(manifest, MappingResult(), {"age": 55.0, "total_cholesterol": math.nan}, pred)
    assert len(pred.refusals) == 1 and pred.refused_by == [""], (pred.refusals, pred.refused_by)
    ranged = Prediction(manifest.id, manifest.version, "champion", inputs={})
    assert stopped_by_guards(manifest, MappingResult(), {"age": 55.0, "sbp": 250.0}, ranged)
    # population rules whose features could not be read come first, then the validated range
    assert ranged.refused_by[-1] == "range:sbp" and len(ranged.refused_by) == len(ranged.refusals), ranged.refused_by
    assert all(by.startswith("population:") for by in ranged.refused_by[:-1]), ranged.refused_by
