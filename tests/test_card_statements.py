"""What a card states to the clinician, checked against the guideline it cites (the twenty-second audit).

Expected categories are written from the guideline texts quoted in each test, never from the model's own output.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import fhirfactory as F
import pytest
from hook_calls import fire, module_app

AF = "49436004"  # atrial fibrillation (SNOMED CT)
HTN = "38341003"  # hypertensive disorder (SNOMED CT)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from module_app(tmp_path_factory.mktemp("card-statements"))


def category(card: dict[str, Any]) -> tuple[str, str]:
    """("low-moderate", "info") from "CHA2DS2-VASc 1 (low-moderate stroke risk in AF)"."""
    return card["summary"].split("(", 1)[1].split(" stroke risk")[0], card["indicator"]


# 2023 ACC/AHA/ACCP/HRS AF guideline (and ESC 2020): anticoagulation is recommended at a CHA2DS2-VASc of >= 2 in men
# and >= 3 in women, reasonable to consider at 1 in men and 2 in women; a woman's single point is sex alone, low risk
# like a man's 0 (the 2024 ESC guideline drops the sex point: CHA2DS2-VA).
@pytest.mark.parametrize(("sex", "age", "problems", "score", "band"), [
    ("male", 55, [], 0, ("low", "info")),
    ("female", 55, [], 1, ("low", "info")),
    ("male", 68, [], 1, ("low-moderate", "info")),
    ("female", 68, [], 2, ("low-moderate", "info")),
    ("female", 55, [HTN], 2, ("low-moderate", "info")),
    ("male", 55, [HTN], 1, ("low-moderate", "info")),
    ("male", 76, [], 2, ("elevated", "warning")),
    ("female", 68, [HTN], 3, ("elevated", "warning")),
    ("female", 76, [], 3, ("elevated", "warning")),
])
def test_cha2ds2_vasc_bands_for_women_are_one_point_above_mens(api: Any, sex: str, age: int, problems: list[str],
                                                               score: int, band: tuple[str, str]) -> None:
    card = fire(api, "cha2ds2-vasc", [F.patient("p1", age, sex), F.condition(AF),
                                      *(F.condition(code) for code in problems)])
    assert card["summary"].startswith(f"CHA2DS2-VASc {score} "), card["summary"]
    assert category(card) == band, card["summary"]
    if band[0] == "low":
        assert "not recommended" in card["detail"], card["detail"]
    if band[0] == "elevated":
        assert "recommended for a score ≥2 in men or ≥3 in women" in card["detail"], card["detail"]
