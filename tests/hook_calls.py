"""One app per test module and hook calls fired through it the way an EHR sends them (prefetch built from the
service's own templates), shared by the HTTP tests of clinical behaviour."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cds_hooks.bundle_prefetch import prefetch_from_resources

HOOK_INSTANCE = "5b0e3f1c-7d4a-4c55-9a8e-2f6b1d0c9e77"


def module_app(directory: Path, models_root: Path | None = None) -> Iterator[Any]:
    """The app with the shipped models (or those under `models_root`), started and stopped around a module, calling
    with signed tokens (each call is independent: fresh token, own prefetch); built like conftest's `api`."""
    from fastapi.testclient import TestClient

    from cds_hooks.app import create_app
    from cds_hooks.signing import load_local_key
    from conftest import KEYS, SignedClient, make_settings

    overrides = {"models": {"root": str(models_root)}} if models_root is not None else {}
    with TestClient(create_app(make_settings(directory, **overrides))) as client:
        yield SignedClient(client, load_local_key(KEYS / "local"))


def templates(api: Any, service: str) -> dict[str, str]:
    return next(s for s in api.get("/cds-services").json()["services"] if s["id"] == service).get("prefetch", {})


def fire_all(api: Any, service: str, resources: list[dict[str, Any]], *, leave_out: tuple[str, ...] = (),
             unsent: tuple[str, ...] = (), **extra: Any) -> list[dict[str, Any]]:
    """The cards of a patient-view call for patient p1; `leave_out`: resource ids the EHR did not include;
    `unsent`: the starts of the prefetch templates whose keys the EHR did not send ("MedicationRequest?")."""
    context = {"userId": "Practitioner/example", "patientId": "p1"}
    tmpl = templates(api, service)
    prefetch = prefetch_from_resources(tmpl, resources, context)
    for key in [k for k, t in tmpl.items() if unsent and t.startswith(unsent)]:
        prefetch.pop(key, None)
    for bundle in prefetch.values():
        if isinstance(bundle, dict) and bundle.get("entry"):
            bundle["entry"] = [e for e in bundle["entry"] if e["resource"].get("id") not in leave_out]
    body = {"hook": "patient-view", "hookInstance": HOOK_INSTANCE, "context": context, "prefetch": prefetch, **extra}
    resp = api.post(f"/cds-services/{service}", json=body)
    assert resp.status_code == 200, resp.text
    return resp.json()["cards"]


def fire(api: Any, service: str, resources: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    """The one card of a patient-view call."""
    cards = fire_all(api, service, resources, **kw)
    assert len(cards) == 1, cards
    return cards[0]


def risk(card: dict[str, Any]) -> float:
    """The primary probability on the card's RiskAssessment; fails when the card offers none."""
    for sug in card.get("suggestions", []):
        for action in sug["actions"]:
            if action["resource"]["resourceType"] == "RiskAssessment":
                return float(action["resource"]["prediction"][0]["probabilityDecimal"])
    raise AssertionError(f"no RiskAssessment on the card: {card['summary']}")


def horizon_years(prediction: dict[str, Any]) -> int:
    """The whole years a RiskAssessment.prediction's whenPeriod spans (from the assessment on)."""
    period = prediction["whenPeriod"]
    return int(period["end"][:4]) - int(period["start"][:4])
