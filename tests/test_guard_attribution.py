"""The store keeps which guard refused a number and which searches a default could not look in (migration 0007).

The details page and what-if had told both from words: a refusal by the text of its reason, a "No" that was not
fully checked by its note. A model folder may reword a reason after predictions were recorded with the old words, and
then what-if would give a number the card refused, or the details page would drop the caveat the card gave. Each
test rewords the stored text and checks that the stored facts still decide.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

import fhirfactory as F
from cards.advice import stored_advice
from cds_hooks.details.what_if import WhatIfError, run_what_if
from hook_calls import fire, module_app, templates
from test_details_view import details_path, prediction_of
from test_diabetes_evidence import GLARGINE, without_orders, woman_50

EGFR_UNIT = "mL/min/{1.73_m2}"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from module_app(tmp_path_factory.mktemp("guard-attribution"))


def runtime_of(api: Any, pred: dict[str, Any]) -> Any:
    return api.app.state.cds.repository.entries[pred["model_id"]].versions[pred["model_version"]]


def reworded(pred: dict[str, Any]) -> dict[str, Any]:
    """The prediction as a later model folder would read it: its stored reasons in words no rule says now."""
    pred = copy.deepcopy(pred)
    pred["guard_reasons"] = [f"(reworded) {r}" for r in pred["guard_reasons"]]
    return pred


def test_an_unreadable_ldl_refusal_is_kept_as_the_rule_that_refused(api: Any) -> None:
    """The PCE's LDL-C >= 190 mg/dL exclusion is read only when recorded; an LDL-C written '>400 mg/dL' cannot be
    read, so the card refuses (2013 ACC/AHA: the equations are not for LDL-C >= 190). What-if must refuse too, also
    once the rule's words have changed: it had matched the stored reason by its first words."""
    ldl = F.quantity_obs("13457-7", 400, "mg/dL")
    ldl["valueQuantity"]["comparator"] = ">"
    card = fire(api, "ascvd-pce-10y", F.pce_record() + [ldl])
    assert card["summary"].startswith("No 10-year ASCVD risk"), card["summary"]
    pred = prediction_of(api, details_path(card))
    assert pred["refused_by"] == ["population:ldl"], pred["refused_by"]
    with pytest.raises(WhatIfError, match="no estimate"):
        run_what_if(runtime_of(api, pred), reworded(pred), {"set": {"sbp": 130}})


def test_a_bound_outside_the_range_is_kept_as_the_range_that_refused(api: Any) -> None:
    """KFRE is validated to eGFR 59.999 (Tangri 2011); an eGFR written '>60' is outside it, and the card says so.
    What-if without an eGFR must give the card's reason, not ask for an eGFR as if none were known."""
    bound = F.quantity_obs("98979-8", 60, EGFR_UNIT, days=5)
    bound["valueQuantity"]["comparator"] = ">"
    card = fire(api, "kfre-4var", [F.patient("p1", 60, "male"), bound, F.quantity_obs("9318-7", 100, "mg/g", days=5)])
    assert "is outside the range" in card["detail"], card["detail"]
    pred = prediction_of(api, details_path(card))
    assert pred["refused_by"] == ["range:egfr"], pred["refused_by"]
    with pytest.raises(WhatIfError) as raised:
        run_what_if(runtime_of(api, pred), reworded(pred), {"set": {"age": 61}})
    assert "no estimate: (reworded) eGFR >60" in str(raised.value), str(raised.value)


def test_a_default_not_fully_checked_keeps_its_unread_searches(api: Any) -> None:
    """A woman of 50 on insulin, from an EHR that did not send the order keys: 'Diabetes: No' is not fully checked,
    and the PCE card says its band's guidance assumes no diabetes (2018 AHA/ACC: a diabetic adult of 40-75 is
    recommended a statin). The details page gives the same advice from the stored searches, not from the note's
    words."""
    orders = sorted(k for k, t in templates(api, "ascvd-pce-10y").items() if t.startswith("MedicationRequest?"))
    card = without_orders(api, "ascvd-pce-10y", woman_50(F.med_request(GLARGINE[0], display=GLARGINE[1])))
    assert "Not fully checked (taken as No): diabetes" in card["detail"], card["detail"]
    pred = prediction_of(api, details_path(card))
    diabetes = pred["features"]["diabetes"]
    assert sorted(diabetes["unchecked"]) == orders, diabetes
    diabetes["note"] = "no diabetes on record"  # a note worded for people, without "could not check"
    manifest = runtime_of(api, pred).manifest
    advice = stored_advice(manifest, pred["category"], pred["features"])
    assert advice is not None and advice.startswith("Not fully checked (taken as No): diabetes"), advice
    read = fire(api, "ascvd-pce-10y", woman_50(F.med_request(GLARGINE[0], display=GLARGINE[1])))
    assert prediction_of(api, details_path(read))["features"]["diabetes"]["unchecked"] == []


def test_the_details_page_reads_a_default_not_fully_checked_as_unknown_as_the_card_does(api: Any) -> None:
    """An advice that rests on a "No" ("when diabetes equals 0") must not apply when that "No" is a default whose
    searches were not read: nobody confirmed it. The card (`advice_for`) reads such a default as unknown; the
    details page, from the stored prediction, must choose the same advice, or the page tells the clinician something
    the card did not (here: advice for a patient known not to be diabetic, for a woman on insulin)."""
    from cards.advice import advice_for
    from fhir_mapping.result import FeatureValue, MappingResult
    from inference.manifest import Advice, When

    card = without_orders(api, "ascvd-pce-10y", woman_50(F.med_request(GLARGINE[0], display=GLARGINE[1])))
    pred = prediction_of(api, details_path(card))
    assert pred["features"]["diabetes"]["defaulted"] and pred["features"]["diabetes"]["unchecked"]
    manifest = runtime_of(api, pred).manifest
    no_diabetes = Advice(when=(When(feature="diabetes", equals=0),), guidance="No diabetes on record: the band holds.")
    manifest = manifest.model_copy(update={"advice": (no_diabetes, *manifest.advice)})
    stored = stored_advice(manifest, pred["category"], pred["features"])
    mapping = MappingResult(values={
        name: FeatureValue(name=name, value=fv["value"], defaulted=bool(fv.get("defaulted")),
                           unchecked=list(fv.get("unchecked") or ()), label=fv.get("label"))
        for name, fv in pred["features"].items()})
    on_card = advice_for(manifest, pred["category"], mapping)
    assert on_card is not None and on_card.guidance != no_diabetes.guidance, on_card
    assert stored is not None and not stored.startswith("No diabetes on record"), stored
    assert stored.startswith("Not fully checked (taken as No): diabetes"), stored
