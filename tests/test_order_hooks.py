"""order-select and order-sign: the orders being placed (`context.draftOrders`) are named on the card when they bear
on the model, and the card never suggests again an order already among them.

CDS Hooks 1.0: on order-select and order-sign, `draftOrders` is the Bundle of orders the clinician is placing (in
draft status); the hooks exist so that a service's advice takes them into account. Draft orders are not the record:
a drug being ordered is not one the patient takes, so no feature's value changes (a statin being signed does not
make a patient "on a statin", whose risk was estimated untreated)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import fhirfactory as F
from cds_hooks.bundle_prefetch import prefetch_from_resources
from hook_calls import HOOK_INSTANCE, module_app, templates

MODELS = Path(__file__).resolve().parent.parent / "models"
APIXABAN = {"system": F.RXNORM, "code": "1364445", "display": "apixaban 5 MG Oral Tablet"}
ACR = {"system": "http://loinc.org", "code": "9318-7", "display": "Albumin/Creatinine [Mass Ratio] in Urine"}
CREATININE = {"system": "http://loinc.org", "code": "2160-0",
              "display": "Creatinine [Mass/volume] in Serum or Plasma"}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The shipped eGFR, CHA2DS2-VASc and PCE folders, served on the order hooks too (a model folder says which
    hooks)."""
    root = tmp_path_factory.mktemp("order-hook-models")
    for model in ("egfr-ckd-epi-2021", "cha2ds2-vasc", "ascvd-pce-10y"):
        shutil.copytree(MODELS / model, root / model)
        manifest = root / model / "1.0.0" / "manifest.yaml"
        text = manifest.read_text()
        assert "hooks: [patient-view]" in text
        manifest.write_text(text.replace("hooks: [patient-view]", "hooks: [patient-view, order-select, order-sign]"))
    yield from module_app(tmp_path_factory.mktemp("order-hook-app"), models_root=root)


def call(api: Any, service: str, hook: str, record: list[dict[str, Any]],
         drafts: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """A call with these drafts (a resource, or a Bundle entry {fullUrl, resource}); `extra`: more request fields."""
    context: dict[str, Any] = {"userId": "Practitioner/example", "patientId": "p1"}
    entries = [d if "resource" in d else {"resource": d} for d in drafts]
    if hook != "patient-view":
        context["draftOrders"] = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    if hook == "order-select":
        first = entries[0]["resource"]
        context["selections"] = [f"{first['resourceType']}/{first['id']}"]
    prefetch = prefetch_from_resources(templates(api, service), record, context)
    resp = api.post(f"/cds-services/{service}", json={"hook": hook, "hookInstance": HOOK_INSTANCE,
                                                       "context": context, "prefetch": prefetch, **extra})
    assert resp.status_code == 200, resp.text
    cards = resp.json()["cards"]
    assert len(cards) == 1, cards
    return cards[0]


def service_request(coding: dict[str, str], rid: str = "draft-sr", status: str = "draft") -> dict[str, Any]:
    return {"resourceType": "ServiceRequest", "id": rid, "status": status, "intent": "order",
            "code": {"coding": [coding]}, "subject": {"reference": "Patient/p1"}}


def medication_request(coding: dict[str, str] | None = None, rid: str = "draft-mr", **fields: Any) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "MedicationRequest", "id": rid, "status": "draft", "intent": "order",
                           "subject": {"reference": "Patient/p1"}, **fields}
    if coding is not None:
        res["medicationCodeableConcept"] = {"coding": [coding]}
    return res


def ordered(card: dict[str, Any]) -> list[str]:
    return [c["code"] for s in card.get("suggestions", []) for a in s["actions"]
            if a["resource"]["resourceType"] == "ServiceRequest" for c in a["resource"]["code"].get("coding", [])]


def services(api: Any) -> dict[str, str]:
    return {s["id"]: s["hook"] for s in api.get("/cds-services").json()["services"]}


def service_for(api: Any, model: str, hook: str) -> str:
    return next(sid for sid, h in services(api).items() if h == hook and sid.startswith(model))


@pytest.mark.parametrize("hook", ["order-sign", "order-select"])
def test_a_urine_acr_being_ordered_is_named_and_not_suggested_again(api: Any, hook: str) -> None:
    """eGFR G3a (Inker 2021: serum creatinine 1.6 mg/dL, man of 60 → 49) with no urine ACR on record: on
    patient-view the card suggests one (KDIGO 2024: albuminuria staging). With a urine ACR among the draft orders the
    card names it and offers no second one (KDIGO asks for one ACR, not two)."""
    record = [F.patient("p1", 60, "male"), F.quantity_obs("2160-0", 1.6, "mg/dL")]
    plain = call(api, service_for(api, "egfr", "patient-view"), "patient-view", record, [])
    assert "G3a" in plain["summary"] and "9318-7" in ordered(plain), plain
    card = call(api, service_for(api, "egfr", hook), hook, record, [service_request(ACR)])
    assert "G3a" in card["summary"], card["summary"]
    assert "9318-7" not in ordered(card), card.get("suggestions")
    assert "_In this order:_ Albumin/Creatinine \\[Mass Ratio\\] in Urine" in card["detail"], card["detail"]


def test_a_creatinine_being_ordered_is_not_suggested_by_the_missing_data_card(api: Any) -> None:
    """No creatinine on record: the eGFR cannot be computed, and on patient-view the card suggests ordering one. With
    a serum creatinine among the draft orders, the card names it and suggests nothing more."""
    record = [F.patient("p1", 60, "male")]
    sid = service_for(api, "egfr", "order-sign")
    plain = call(api, sid, "order-sign", record, [])
    assert "not calculated" in plain["summary"] and "2160-0" in ordered(plain), plain
    card = call(api, sid, "order-sign", record, [service_request(CREATININE)])
    assert "not calculated" in card["summary"], card["summary"]
    assert "2160-0" not in ordered(card), card.get("suggestions")
    assert "_In this order:_ Creatinine \\[Mass/volume\\] in Serum or Plasma" in card["detail"], card["detail"]


def test_an_anticoagulant_being_signed_at_a_low_score_is_named_beside_the_low_band_guidance(api: Any) -> None:
    """A man of 50 with AF and nothing else scores CHA2DS2-VASc 0 (2023 ACC/AHA/ACCP/HRS: anticoagulation not
    recommended). Signing apixaban for him is what an order-sign card exists for: the card names the drug being
    ordered as an anticoagulant, beside the low band's guidance. The draft does not make him "on an anticoagulant"
    (the score and the advice for patients already on one are unchanged)."""
    record = [F.patient("p1", 50, "male"), F.condition("49436004", display="Atrial fibrillation")]
    card = call(api, service_for(api, "cha2ds2", "order-sign"), "order-sign", record,
                [medication_request(APIXABAN)])
    assert card["summary"].startswith("CHA2DS2-VASc 0"), card["summary"]
    assert "_In this order:_ apixaban 5 MG Oral Tablet (anticoagulant)" in card["detail"], card["detail"]
    assert "Anticoagulation is not recommended" in card["detail"], card["detail"]
    assert "On an anticoagulant (" not in card["detail"], card["detail"]


def test_a_drug_by_contained_medication_reference_is_recognised(api: Any) -> None:
    """A draft MedicationRequest naming its drug by medicationReference to a contained Medication (as Epic sends
    orders) is read like any other: rivaroxaban 20 MG Oral Tablet (RxNorm 1232086) is an anticoagulant."""
    contained = {"resourceType": "Medication", "id": "m1", "code": {"coding": [
        {"system": F.RXNORM, "code": "1232086", "display": "rivaroxaban 20 MG Oral Tablet"}]}}
    draft = medication_request(None, contained=[contained], medicationReference={"reference": "#m1"})
    record = [F.patient("p1", 78, "female"), F.condition("49436004", display="Atrial fibrillation")]
    card = call(api, service_for(api, "cha2ds2", "order-sign"), "order-sign", record, [draft])
    assert "_In this order:_ rivaroxaban 20 MG Oral Tablet (anticoagulant)" in card["detail"], card["detail"]


def test_orders_that_do_not_bear_on_the_model_or_are_not_orders_are_not_named(api: Any) -> None:
    """An antibiotic, a chest X-ray and an anticoagulant draft entered in error say nothing about the stroke score:
    none is named (the card's length is for what bears on it)."""
    record = [F.patient("p1", 78, "female"), F.condition("49436004", display="Atrial fibrillation")]
    drafts = [medication_request({"system": F.RXNORM, "code": "308191", "display": "amoxicillin 500 MG Oral Capsule"},
                                 rid="amox"),
              service_request({"system": "http://loinc.org", "code": "36643-5", "display": "XR Chest 2V"}, rid="cxr"),
              {**medication_request(APIXABAN, rid="apx"), "status": "entered-in-error"}]
    card = call(api, service_for(api, "cha2ds2", "order-sign"), "order-sign", record, drafts)
    assert "In this order" not in card["detail"], card["detail"]


def test_a_draft_about_another_patient_is_refused_naming_it(api: Any) -> None:
    """CDS Hooks: draftOrders are the orders being placed for context.patientId. One whose subject is another
    Patient contradicts the request: a 400 naming the entry, never a card that counts it or ignores it silently."""
    record = [F.patient("p1", 60, "male"), F.quantity_obs("2160-0", 1.6, "mg/dL")]
    sid = service_for(api, "egfr", "order-sign")
    context = {"userId": "Practitioner/example", "patientId": "p1", "draftOrders": {
        "resourceType": "Bundle", "type": "collection",
        "entry": [{"resource": service_request(CREATININE, rid="mine")},
                  {"resource": {**service_request(ACR), "subject": {"reference": "Patient/p2"}}}]}}
    prefetch = prefetch_from_resources(templates(api, sid), record, context)
    resp = api.post(f"/cds-services/{sid}", json={"hook": "order-sign", "hookInstance": HOOK_INSTANCE,
                                                  "context": context, "prefetch": prefetch})
    assert resp.status_code == 400, resp.text
    assert resp.json()["issue"][0]["expression"] == ["context.draftOrders.entry[1].resource.subject"], resp.text
    assert "names Patient/p2, not context.patientId (p1)" in resp.text, resp.text


def test_a_drafted_name_is_escaped_as_record_text(api: Any) -> None:
    """A draft's name is record text: Markdown in it is shown, never rendered (a name cannot bold itself or link)."""
    coding = {**APIXABAN, "display": "apixaban **5 MG** [tab](http://example.org)"}
    record = [F.patient("p1", 50, "male"), F.condition("49436004", display="Atrial fibrillation")]
    card = call(api, service_for(api, "cha2ds2", "order-sign"), "order-sign", record, [medication_request(coding)])
    shown = "\n_In this order:_ apixaban \\*\\*5 MG\\*\\* \\[tab\\](http://example.org) (anticoagulant)"
    assert shown in card["detail"], card["detail"]


def test_a_test_drafted_under_another_code_the_model_reads_is_not_suggested_again(api: Any) -> None:
    """A urine ACR drafted as LOINC 14959-1 (Microalbumin/Creatinine [Mass Ratio] in Urine), a code the eGFR spec
    reads as a urine ACR, is the 9318-7 the card would suggest: not suggested again. A whole-blood creatinine being
    ordered (38483-4) is not the serum creatinine CKD-EPI needs (the spec prefers serum): that order stays."""
    micro = {"system": "http://loinc.org", "code": "14959-1",
             "display": "Microalbumin/Creatinine [Mass Ratio] in Urine"}
    card = call(api, service_for(api, "egfr", "order-sign"), "order-sign",
                [F.patient("p1", 60, "male"), F.quantity_obs("2160-0", 1.6, "mg/dL")], [service_request(micro)])
    assert "_In this order:_ Microalbumin/Creatinine" in card["detail"], card["detail"]
    assert "9318-7" not in ordered(card), card.get("suggestions")
    whole = {"system": "http://loinc.org", "code": "38483-4", "display": "Creatinine [Mass/volume] in Blood"}
    missing = call(api, service_for(api, "egfr", "order-sign"), "order-sign", [F.patient("p1", 60, "male")],
                   [service_request(whole)])
    assert "2160-0" in ordered(missing), missing.get("suggestions")


def test_a_drug_referenced_in_the_draft_bundle_by_full_url_is_recognised(api: Any) -> None:
    """FHIR R4 Bundle: a reference resolves against the entries' fullUrl. A draft naming its drug by a urn:uuid
    Medication of the same draftOrders Bundle (a Bundle of new resources is written so) is read as that drug."""
    med_url = "urn:uuid:7f3c1a52-2b8e-4c7e-9d0f-1a2b3c4d5e6f"
    draft = medication_request(None, medicationReference={"reference": med_url})
    record = [F.patient("p1", 50, "male"), F.condition("49436004", display="Atrial fibrillation")]
    card = call(api, service_for(api, "cha2ds2", "order-sign"), "order-sign", record,
                [{"fullUrl": "urn:uuid:0b5e1d2c-3f4a-4b6c-8d9e-0f1a2b3c4d5e", "resource": draft},
                 {"fullUrl": med_url, "resource": {"resourceType": "Medication", "code": {"coding": [APIXABAN]}}}])
    assert "_In this order:_ apixaban 5 MG Oral Tablet (anticoagulant)" in card["detail"], card["detail"]


def test_a_drug_referenced_on_the_fhir_server_is_read_from_it(api: Any) -> None:
    """A draft naming its drug by 'Medication/apx', a Medication the EHR holds on its FHIR server (not in the
    draftOrders Bundle nor the prefetch): read from the server with the call's token, as for the record's own
    orders, and named."""
    import httpx
    import respx

    fhir = "http://127.0.0.1:1/fhir"
    medication = {"resourceType": "Medication", "id": "apx", "code": {"coding": [APIXABAN]}}
    draft = medication_request(None, medicationReference={"reference": "Medication/apx"})
    record = [F.patient("p1", 50, "male"), F.condition("49436004", display="Atrial fibrillation")]
    auth = {"access_token": "tok-123", "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read",
            "subject": "cds-onnx"}
    with respx.mock(assert_all_called=False) as mock:
        route = mock.get(f"{fhir}/Medication/apx").mock(return_value=httpx.Response(200, json=medication))
        mock.get(url__startswith=fhir).mock(return_value=httpx.Response(404))
        card = call(api, service_for(api, "cha2ds2", "order-sign"), "order-sign", record, [draft],
                    fhirServer=fhir, fhirAuthorization=auth)
    assert route.called and route.calls[0].request.headers["Authorization"] == "Bearer tok-123"
    assert "_In this order:_ apixaban 5 MG Oral Tablet (anticoagulant)" in card["detail"], card["detail"]


@pytest.mark.parametrize("subject", ["http://127.0.0.1:1/fhir/Patient/p2",
                                     "https://other-ehr.example/fhir/Patient/p2/_history/3"])
def test_a_draft_for_another_patient_written_as_an_absolute_url_is_refused(api: Any, subject: str) -> None:
    """FHIR R4: a reference may be an absolute URL, and one ending in Patient/p2 (versioned or not) names p2: the
    same 400 as 'Patient/p2'; 'Patient/p1/_history/2' is this patient."""
    record = [F.patient("p1", 60, "male"), F.quantity_obs("2160-0", 1.6, "mg/dL")]
    sid = service_for(api, "egfr", "order-sign")
    for who, status in ((subject, 400), ("Patient/p1/_history/2", 200)):
        context = {"userId": "Practitioner/example", "patientId": "p1", "draftOrders": {
            "resourceType": "Bundle", "type": "collection",
            "entry": [{"resource": {**service_request(ACR), "subject": {"reference": who}}}]}}
        prefetch = prefetch_from_resources(templates(api, sid), record, context)
        resp = api.post(f"/cds-services/{sid}", json={"hook": "order-sign", "hookInstance": HOOK_INSTANCE,
                                                      "context": context, "prefetch": prefetch})
        assert resp.status_code == status, resp.text


@pytest.mark.parametrize("status", ["stopped", "cancelled"])
def test_an_anticoagulant_order_being_stopped_is_not_named_as_being_ordered(api: Any, status: str) -> None:
    """CDS Hooks order-sign: orders re-signed after revision carry a status other than 'draft'. The man of 50 with AF
    (CHA2DS2-VASc 0) has apixaban apx-1 active, and the clinician re-signs it as stopped or cancelled (FHIR R4
    MedicationRequest.status: halted, or withdrawn): the anticoagulant is being taken away, and the card had said
    "_In this order:_ apixaban 5 MG Oral Tablet (anticoagulant)"."""
    record = [F.patient("p1", 50, "male"), F.condition("49436004", display="Atrial fibrillation"),
              medication_request(APIXABAN, rid="apx-1", status="active")]
    card = call(api, service_for(api, "cha2ds2", "order-sign"), "order-sign", record,
                [medication_request(APIXABAN, rid="apx-1", status=status)])
    assert "_In this order:_" not in card["detail"], card["detail"]
    assert card["summary"].startswith("CHA2DS2-VASc 0"), card["summary"]


def test_a_combination_drug_being_ordered_is_named_with_each_class_the_model_reads(api: Any) -> None:
    """amlodipine 5 MG / atorvastatin 10 MG Oral Tablet (RxNorm 404011, Caduet) is an antihypertensive and a statin,
    and the PCE reads both; the card had named the first class alone, never that a statin is being ordered."""
    record = [F.patient("p1", 55, "female", "white"), F.bp_panel(120), F.smoking(F.NEVER_SMOKER),
              F.quantity_obs("2093-3", 213, "mg/dL"), F.quantity_obs("2085-9", 50, "mg/dL")]
    caduet = {"system": F.RXNORM, "code": "404011", "display": "amlodipine 5 MG / atorvastatin 10 MG Oral Tablet"}
    card = call(api, service_for(api, "ascvd-pce", "order-sign"), "order-sign", record, [medication_request(caduet)])
    assert "_In this order:_ amlodipine 5 MG / atorvastatin 10 MG Oral Tablet (antihypertensive and statin)" in \
        card["detail"], card["detail"]


def test_a_draft_nutrition_order_for_another_patient_is_refused_naming_it(api: Any) -> None:
    """A NutritionOrder (and a VisionPrescription) names its patient in `patient`, not `subject` (FHIR R4). One for
    Patient/p2 among p1's draft orders contradicts the request, as a ServiceRequest for p2 does: a 400 naming it."""
    service = service_for(api, "egfr", "order-sign")
    diet = {"resourceType": "NutritionOrder", "id": "diet-1", "status": "draft", "intent": "order",
            "patient": {"reference": "Patient/p2"}, "dateTime": "2024-01-01",
            "oralDiet": {"type": [{"text": "Pureed diet"}]}}
    context = {"userId": "Practitioner/example", "patientId": "p1", "draftOrders": {
        "resourceType": "Bundle", "type": "collection",
        "entry": [{"resource": service_request(ACR)}, {"resource": diet}]}}
    prefetch = prefetch_from_resources(templates(api, service), [F.patient("p1", 60, "male")], context)
    resp = api.post(f"/cds-services/{service}", json={"hook": "order-sign", "hookInstance": HOOK_INSTANCE,
                                                       "context": context, "prefetch": prefetch})
    assert resp.status_code == 400, resp.text
    issue = resp.json()["issue"][0]
    assert issue["expression"] == ["context.draftOrders.entry[1].resource.patient"], issue
    assert "Patient/p2" in issue["diagnostics"], issue


@pytest.mark.parametrize(("drafted", "suggested"), [(("2093-3", "2085-9"), False), (("2093-3",), True)],
                         ids=["both-drafted", "hdl-not-drafted"])
def test_a_lipid_panel_is_not_suggested_for_inputs_whose_tests_are_being_ordered(api: Any, drafted: tuple[str, ...],
                                                                               suggested: bool) -> None:
    """No lipids on record: the PCE card suggests a lipid panel (LOINC 24331-1) for total cholesterol and HDL. With
    both tests among the orders being signed (2093-3, 2085-9), accepting it would order them twice; with only total
    cholesterol drafted, the HDL is still needed and the panel is still offered."""
    record = [F.patient("p1", 55, "female", "white"), F.bp_panel(120), F.smoking(F.NEVER_SMOKER)]
    drafts = [service_request({"system": "http://loinc.org", "code": code, "display": code}, rid=f"sr-{code}")
              for code in drafted]
    card = call(api, service_for(api, "ascvd-pce", "order-sign"), "order-sign", record, drafts)
    assert "not calculated" in card["summary"], card["summary"]
    assert ("24331-1" in ordered(card)) == suggested, card.get("suggestions")


@pytest.mark.parametrize(("model", "panel", "suggested"), [
    ("ascvd-pce", {"system": "http://loinc.org", "code": "57698-3",
                   "display": "Lipid panel with direct LDL - Serum or Plasma"}, "24331-1"),
    ("egfr", {"system": "http://loinc.org", "code": "24323-8",
              "display": "Comprehensive metabolic 2000 panel - Serum or Plasma"}, "2160-0"),
    ("egfr", {"system": "http://loinc.org", "code": "24321-2",
              "display": "Basic metabolic 2000 panel - Serum or Plasma"}, "2160-0"),
    ("egfr", {"system": "http://loinc.org", "code": "24362-6",
              "display": "Renal function 2000 panel - Serum or Plasma"}, "2160-0"),
], ids=["lipid-panel-direct-ldl", "cmp", "bmp", "renal-panel"])
def test_a_panel_being_ordered_orders_its_members(api: Any, model: str, panel: dict[str, str],
                                                  suggested: str) -> None:
    """Tests are ordered as panels (LOINC): a lipid panel with direct LDL holds total cholesterol and HDL, and the
    metabolic and renal function panels hold serum creatinine. With such a panel being ordered, the card names it
    and does not suggest the test again (it had suggested a lipid panel or a creatinine beside the drafted panel)."""
    people = {"ascvd-pce": [F.patient("p1", 55, "female", "white"), F.bp_panel(120), F.smoking(F.NEVER_SMOKER)],
              "egfr": [F.patient("p1", 60, "male")]}
    card = call(api, service_for(api, model, "order-sign"), "order-sign", people[model],
                [service_request(panel)])
    assert "not calculated" in card["summary"], card["summary"]
    assert suggested not in ordered(card), card.get("suggestions")
    assert f"_In this order:_ {panel['display']}" in card["detail"], card["detail"]


def test_a_panel_without_the_missing_test_does_not_stand_in_for_it(api: Any) -> None:
    """A lipid panel holds no creatinine: with one being ordered, the eGFR card still suggests a serum creatinine."""
    lipids = {"system": "http://loinc.org", "code": "24331-1", "display": "Lipid panel"}
    card = call(api, service_for(api, "egfr", "order-sign"), "order-sign", [F.patient("p1", 60, "male")],
                [service_request(lipids)])
    assert "2160-0" in ordered(card), card.get("suggestions")


@pytest.mark.parametrize("hook", ["order-sign", "order-select"])
def test_the_preview_sends_the_bundles_draft_orders_to_an_order_hook_service(tmp_path: Path, hook: str) -> None:
    """The preview page builds the request an EHR would send: for an order hook, the Bundle's orders written with
    status draft are `context.draftOrders` (order-select: each one selected), not the record. It had built no
    draftOrders, so every order-hook service answered the preview with a 400."""
    from fastapi.testclient import TestClient

    from cds_hooks.app import create_app
    from cds_hooks.signing import load_local_key
    from conftest import KEYS, SignedClient, make_settings

    root = tmp_path / "models"
    shutil.copytree(MODELS / "egfr-ckd-epi-2021", root / "egfr-ckd-epi-2021")
    manifest = root / "egfr-ckd-epi-2021" / "1.0.0" / "manifest.yaml"
    manifest.write_text(manifest.read_text().replace("hooks: [patient-view]", f"hooks: [{hook}]"))
    settings = make_settings(tmp_path, models={"root": str(root)},
                             preview={"enabled": True, "key_dir": str(KEYS / "local")})
    acr = service_request(ACR, rid="acr-draft")
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": r} for r in (F.patient("p1", 60, "male"), F.quantity_obs("2160-0", 1.6, "mg/dL"), acr)]}
    with TestClient(create_app(settings)) as client:
        api = SignedClient(client, load_local_key(KEYS / "local"))
        service = next(s["id"] for s in api.get("/cds-services").json()["services"] if s["hook"] == hook)
        built = client.post("/preview/request", json={"service": service, "bundle": bundle})
        assert built.status_code == 200, built.text
        body = built.json()
        assert [e["resource"]["id"] for e in body["context"]["draftOrders"]["entry"]] == ["acr-draft"]
        assert body["context"].get("selections") == (["ServiceRequest/acr-draft"] if hook == "order-select" else None)
        resp = api.post(f"/cds-services/{service}", json=body)
        assert resp.status_code == 200, resp.text
        assert "_In this order:_ Albumin/Creatinine" in resp.json()["cards"][0]["detail"]
