"""Kidney records as laboratories write them, read by the eGFR (CKD-EPI 2021) and KFRE services (audit 59).

References: KDIGO 2012 acute kidney injury definition (serum creatinine up by 0.3 mg/dL or more within 48 hours, or
to 1.5 times baseline within 7 days), kept in KDIGO 2024; Inker 2021 (CKD-EPI 2021 assumes a steady state); Tangri
2011/2016 (KFRE: stable CKD G3-G5)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

import fhirfactory as F
from hook_calls import fire, module_app

KFRE, EGFR = "kfre-4var", "egfr-ckd-epi-2021"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from module_app(tmp_path_factory.mktemp("kidney-records"))


def _has_number(card: dict[str, Any]) -> bool:
    """A card that gives its number: neither 'No … estimate' nor '… not calculated'."""
    return not card["summary"].startswith("No ") and "not calculated" not in card["summary"]


def _creatinines(*pairs: tuple[float, int]) -> list[dict[str, Any]]:
    """Serum creatinines (mg/dL) taken so many hours ago."""
    out = []
    for value, hours in pairs:
        obs = F.quantity_obs("2160-0", value, "mg/dL")
        obs["effectiveDateTime"] = (F.NOW - timedelta(hours=hours)).isoformat().replace("+00:00", "Z")
        out.append(obs)
    return out


def _record(*pairs: tuple[float, int]) -> list[dict[str, Any]]:
    return [F.patient("p1", 60, "male"), *_creatinines(*pairs), F.quantity_obs("9318-7", 300, "mg/g", days=30)]


@pytest.mark.parametrize("service", [KFRE, EGFR])
@pytest.mark.parametrize(("pairs", "why"), [
    (((1.0, 72), (2.6, 24)), "2.6 times the value of 3 days before"),
    (((1.2, 40), (1.5, 2)), "up by 0.3 mg/dL within 48 hours"),
    (((1.4, 150), (2.1, 3)), "1.5 times the value of 6 days before"),
], ids=["1.0-to-2.6", "up-0.3-in-48h", "1.5x-in-7-days"])
def test_a_creatinine_rising_as_in_acute_kidney_injury_gives_no_kidney_number(
        api: Any, service: str, pairs: tuple[tuple[float, int], ...], why: str) -> None:
    """A creatinine rising by KDIGO's acute kidney injury criteria is not a steady state: no eGFR stage and no
    kidney failure risk (the card had said 'eGFR 27 (G4)' and 'KFRE 31.4 % (high)', with a referral)."""
    card = fire(api, service, _record(*pairs))
    assert not _has_number(card), (why, card["summary"])
    assert "acute kidney injury" in card["detail"], card["detail"]


@pytest.mark.parametrize("service", [KFRE, EGFR])
@pytest.mark.parametrize(("pairs", "why"), [
    (((1.5, 120), (1.6, 2)), "up by 0.1 mg/dL: stable"),
    (((1.0, 300), (2.0, 2)), "the lower value is older than 7 days, and nothing else within 48 hours"),
    (((2.6, 40), (1.6, 2)), "falling, not rising"),
], ids=["stable", "old-baseline", "falling"])
def test_a_creatinine_not_rising_so_keeps_its_number(api: Any, service: str, pairs: tuple[tuple[float, int], ...],
                                                    why: str) -> None:
    """Creatinines that do not meet the criteria leave the estimate as before."""
    card = fire(api, service, _record(*pairs))
    assert _has_number(card), (why, card["summary"], card["detail"])
