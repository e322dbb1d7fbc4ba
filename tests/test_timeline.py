"""The timeline spec: a record becomes the event stream a plain reading of its bundle gives, and bad files are named.

`plain_timeline` below is a second, independent reading of a bundle written straight from docs/timeline-models.md
(statuses, times, code preference, components, unit conversion, bins, order) without fhir_mapping; the timeline
module must agree with it event for event and token for token.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from fhir_mapping.index import ResourceIndex
from fhir_mapping.timeline import (TimelineSpecError, extract_timeline, load_timeline_spec, truncate,
                                   TimelineFeatureSpec)
from fhir_mapping.timeline_vocab import load_vocabulary
from fhir_mapping.valuesets import ValueSetLibrary

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "models" / "t2d-timeline-5y" / "1.0.0"
FIXTURES = ROOT / "tests" / "fixtures" / "synthea"
AT = datetime(2025, 1, 1, tzinfo=UTC)

# Plain unit conversions for the hand-written records (the Synthea fixtures already use the declared units).
PLAIN_CONVERSIONS = {("LOINC/4548-4", "mmol/mol"): lambda v: v / 10.929 + 2.15,  # IFCC → NGSP master equation
                     ("LOINC/2339-0", "mmol/L"): lambda v: v * 18.016}  # glucose, 180.16 g/mol


def plain_timeline(bundle: dict[str, Any], at: datetime, spec_doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The events of a bundle read plainly: what docs/timeline-models.md says, one resource at a time."""
    systems = spec_doc["code_systems"]  # prefix -> url, in preference order
    prefix_of = {url: prefix for prefix, url in systems.items()}
    values = spec_doc.get("values", {})
    since = at - timedelta(days=spec_doc["lookback_days"])
    resources = [e["resource"] for e in bundle["entry"]]
    by_ref = {f"{r['resourceType']}/{r['id']}": r for r in resources if "id" in r}
    by_ref.update({e["fullUrl"]: e["resource"] for e in bundle["entry"] if "fullUrl" in e})
    events: list[dict[str, Any]] = []

    def when(text: str | None) -> datetime | None:
        if not text:
            return None
        if len(text) == 4:
            text += "-01-01"
        if len(text) == 7:
            text += "-01"
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)

    def pick(concept: dict[str, Any] | None) -> str | None:
        found = {}
        for coding in (concept or {}).get("coding", []):
            prefix = prefix_of.get(coding.get("system"))
            if prefix and prefix not in found:
                found[prefix] = coding["code"]
        return next((f"{p}/{found[p]}" for p in systems if p in found), None)

    patient = next(r for r in resources if r["resourceType"] == "Patient")
    birth = when(patient["birthDate"])
    events.append({"time": birth, "static": True, "code": "MEDS_BIRTH", "token": "MEDS_BIRTH", "value": None,
                   "source": f"Patient/{patient['id']}"})
    events.append({"time": birth, "static": True, "code": f"Gender/{patient['gender']}",
                   "token": f"Gender/{patient['gender']}", "value": None, "source": f"Patient/{patient['id']}"})

    def add(t: datetime, code: str | None, element: dict[str, Any], source: str) -> None:
        if code is None:
            return
        rule = values.get(code)
        token, value = code, None
        qty = element.get("valueQuantity")
        if rule and rule.get("answers"):
            answer = pick(element.get("valueCodeableConcept"))
            token = f"{code}|{answer}" if answer else code
        elif qty is not None and "value" in qty:
            value = float(qty["value"])
            if rule:
                unit = qty.get("code") or qty.get("unit")
                if unit != rule["unit"]:
                    value = PLAIN_CONVERSIONS[(code, unit)](value)
                token = f"{code}|bin{sum(1 for b in rule['bins'] if b <= value)}"
        events.append({"time": t, "static": False, "code": code, "token": token, "value": value, "source": source})

    for r in resources:
        rtype, source = r["resourceType"], f"{r['resourceType']}/{r.get('id')}"
        if rtype == "Condition":
            verification = [c["code"] for c in r.get("verificationStatus", {}).get("coding", [])]
            if any(v in ("entered-in-error", "refuted", "provisional", "differential", "unconfirmed")
                   for v in verification) and "confirmed" not in verification:
                continue
            clinical = [c["code"] for c in r.get("clinicalStatus", {}).get("coding", [])]
            if clinical and clinical[0] not in ("active", "recurrence", "relapse", "inactive", "remission",
                                                "resolved"):
                continue
            t = when(r.get("onsetDateTime") or r.get("recordedDate"))
            concept = r.get("code")
        elif rtype == "Observation":
            if r.get("status") not in ("final", "amended", "corrected"):
                continue
            t = when(r.get("effectiveDateTime") or r.get("issued"))
            concept = r.get("code")
        elif rtype == "MedicationRequest":
            if r.get("status") not in ("active", "completed", "stopped", "on-hold") or r.get("intent") == "proposal" \
                    or r.get("doNotPerform") is True:
                continue
            concept = r.get("medicationCodeableConcept")
            if concept is None:
                med = by_ref.get(r["medicationReference"]["reference"])
                if med is None or med.get("status") == "entered-in-error":
                    continue
                concept = med.get("code")
            t = when(r.get("authoredOn"))
        elif rtype == "Encounter":
            if r.get("status") not in ("finished", "in-progress", "arrived", "triaged", "onleave"):
                continue
            t = when(r.get("period", {}).get("start"))
            concept = (r.get("type") or [None])[0]
        elif rtype == "Procedure":
            if r.get("status") not in ("completed", "in-progress"):
                continue
            t = when(r.get("performedDateTime") or r.get("performedPeriod", {}).get("start"))
            concept = r.get("code")
        else:
            continue
        if t is None or t > at or t < since:
            continue
        if rtype == "Observation" and r.get("component"):
            before = len(events)
            for comp in r["component"]:
                add(t, pick(comp.get("code")), comp, source)
            if len(events) > before:
                continue
        add(t, pick(concept), r if rtype == "Observation" else {}, source)
    events.sort(key=lambda e: (e["time"], 0 if e["static"] else 1, e["code"],
                               -math.inf if e["value"] is None else e["value"], e["token"], e["source"]))
    once: list[dict[str, Any]] = []  # a copy (another id, same time, code, token and value) is listed once
    for event in events:
        if not any((o["time"], o["code"], o["token"], o["value"], o["static"]) ==
                   (event["time"], event["code"], event["token"], event["value"], event["static"]) for o in once):
            once.append(event)
    return once


def _spec() -> Any:
    return load_timeline_spec(FOLDER / "timeline.yaml", ValueSetLibrary([FOLDER / "valuesets"]))


def _spec_doc() -> dict[str, Any]:
    return yaml.safe_load((FOLDER / "timeline.yaml").read_text())


def _index(bundle: dict[str, Any]) -> ResourceIndex:
    return ResourceIndex.from_prefetch({"record": bundle}, _spec().resource_types())


def _plain_ids(events: list[dict[str, Any]]) -> tuple[list[int], int]:
    doc = json.loads((FOLDER / "vocab.json").read_text())
    ids = [doc["tokens"].get(e["token"], doc["special"]["[UNK]"]) for e in events]
    return ids, sum(1 for e in events if e["token"] not in doc["tokens"])


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("patient-*.json")))
def test_timeline_of_a_synthetic_patient_equals_a_plain_reading(name: str) -> None:
    bundle = orjson.loads((FIXTURES / name).read_bytes())
    timeline = extract_timeline(_spec(), _index(bundle), at=AT)
    expected = plain_timeline(bundle, AT, _spec_doc())
    got = [{"time": e.time, "static": e.static, "code": e.code, "token": e.token,
            "value": None if e.value is None else pytest.approx(e.value, rel=1e-12), "source": e.source}
           for e in timeline.events]
    assert len(expected) > 2
    assert got == expected
    ids, unknown = load_vocabulary(FOLDER / "vocab.json").encode(timeline.events)
    assert (ids, unknown) == _plain_ids(expected)
    assert [r["code"] for r in timeline.meds_rows()] == [e["code"] for e in expected]


SNOMED, ICD10CM = "http://snomed.info/sct", "http://hl7.org/fhir/sid/icd-10-cm"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"


def _record(*resources: dict[str, Any]) -> dict[str, Any]:
    patient = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1970-06-15"}
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"resource": r} for r in (patient, *resources)]}


def _obs(rid: str, code: str, value: float | None, unit: str | None, when: str, status: str = "final",
         **extra: Any) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Observation", "id": rid, "status": status,
                           "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                           "effectiveDateTime": when, **extra}
    if value is not None:
        res["valueQuantity"] = {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}
    return res


def _condition(rid: str, codings: list[tuple[str, str]], when: str, verification: str | None = None,
               clinical: str = "active") -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Condition", "id": rid, "onsetDateTime": when,
                           "clinicalStatus": {"coding": [{"system": CLINICAL, "code": clinical}]},
                           "code": {"coding": [{"system": s, "code": c} for s, c in codings]}}
    if verification:
        res["verificationStatus"] = {"coding": [{"system": VERIFICATION, "code": verification}]}
    return res


def _med(rid: str, rxnorm: str, when: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "MedicationRequest", "id": rid, "status": "active", "intent": "order",
            "authoredOn": when, "medicationCodeableConcept": {"coding": [
                {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": rxnorm}]}, **extra}




def test_status_rules_time_window_units_bins_answers_components_and_code_preference() -> None:
    bundle = _record(
        _obs("hba1c-ifcc", "4548-4", 48, "mmol/mol", "2024-03-01T10:00:00Z"),  # 6.54 % → bin2
        _obs("glucose-mmol", "2339-0", 5.0, "mmol/L", "2024-03-01T10:00:00Z"),  # 90.1 mg/dL → bin0
        _obs("hba1c-bad-unit", "4548-4", 6.0, "furlong", "2024-04-01"),  # unusable unit: code token, counted
        _obs("hba1c-error", "4548-4", 9.9, "%", "2024-05-01", status="entered-in-error"),
        _obs("hba1c-prelim", "4548-4", 9.9, "%", "2024-05-02", status="preliminary"),
        _obs("hba1c-future", "4548-4", 9.9, "%", "2025-02-01"),
        _obs("hba1c-old", "4548-4", 9.9, "%", "2010-01-01"),
        _obs("no-date", "4548-4", 5.0, "%", ""),
        _obs("smoking", "72166-2", None, None, "2023-01-01", valueCodeableConcept={"coding": [
            {"system": SNOMED, "code": "449868002"}]}),
        _obs("bp", "85354-9", None, None, "2023-06-01", component=[
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
             "valueQuantity": {"value": 142, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org",
                               "code": "mm[Hg]"}},
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
             "valueQuantity": {"value": 85, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org",
                               "code": "mm[Hg]"}}]),
        # dual-coded: SNOMED CT is preferred (code_systems order), the system the model's vocabulary was trained on
        _condition("prediabetes", [(ICD10CM, "R73.03"), (SNOMED, "714628002")], "2022-01-01"),
        _condition("refuted", [(SNOMED, "59621000")], "2022-02-01", verification="refuted"),
        _condition("error", [(SNOMED, "59621000")], "2022-02-02", verification="entered-in-error"),
        _condition("resolved", [(SNOMED, "444814009")], "2021-01-01", clinical="resolved"),  # history counts
        _condition("local-only", [("http://ehr.example/codes", "X1")], "2021-01-01"),
        _med("amlodipine", "197361", "2023-01-01"),
        _med("no-amlodipine", "197361", "2023-01-02", doNotPerform=True),
        _med("proposal", "197361", "2023-01-03", intent="proposal"),
        {"resourceType": "MedicationRequest", "id": "by-ref", "status": "active", "intent": "order",
         "authoredOn": "2023-02-01", "medicationReference": {"reference": "Medication/m-bad"}},
        {"resourceType": "Medication", "id": "m-bad", "status": "entered-in-error",
         "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "314076"}]}},
    )
    timeline = extract_timeline(_spec(), _index(bundle), at=AT)
    tokens = [(e.time.date().isoformat(), e.token) for e in timeline.events]
    assert tokens == [
        ("1970-06-15", "Gender/female"), ("1970-06-15", "MEDS_BIRTH"),
        ("2021-01-01", "SNOMED/444814009"),
        ("2022-01-01", "SNOMED/714628002"),
        ("2023-01-01", "LOINC/72166-2|SNOMED/449868002"),
        ("2023-01-01", "RxNorm/197361"),
        ("2023-06-01", "LOINC/8462-4|bin1"), ("2023-06-01", "LOINC/8480-6|bin3"),
        ("2024-03-01", "LOINC/2339-0|bin0"), ("2024-03-01", "LOINC/4548-4|bin2"),
        ("2024-04-01", "LOINC/4548-4"),
    ]
    hba1c = next(e for e in timeline.events if e.token == "LOINC/4548-4|bin2")
    assert hba1c.value == pytest.approx(48 / 10.929 + 2.15) and hba1c.unit == "%"
    assert timeline.unusable_values == 1
    passed = timeline.passed_over
    assert passed["Observation: entered in error"] == 1 and passed["Observation: status is 'preliminary'"] == 1
    assert passed["Observation: after the prediction time"] == 1
    assert passed["Observation: older than the look-back"] == 1
    assert passed["Observation: no usable date"] == 1
    assert passed["Condition: verification status is refuted"] == 1
    assert passed["Condition: verification status is entered-in-error"] == 1
    assert passed["Condition: no code in the declared code systems"] == 1
    assert passed["MedicationRequest: is an order not to give it (doNotPerform)"] == 1
    assert passed["MedicationRequest: is a proposal, not an order"] == 1
    assert passed["MedicationRequest: entered in error"] == 1
    plain = plain_timeline({"entry": [e for e in bundle["entry"] if e["resource"].get("id") not in
                                      ("hba1c-bad-unit", "no-date")]}, AT, _spec_doc())
    assert [(e["time"].date().isoformat(), e["token"]) for e in plain] == tokens[:-1]


def test_another_patients_resources_never_become_events() -> None:
    theirs = {"subject": {"reference": "Patient/p2"}}
    bundle = _record(_obs("mine", "4548-4", 6.0, "%", "2024-01-02", subject={"reference": "Patient/p1"}),
                     _obs("unnamed", "4548-4", 6.1, "%", "2024-01-03"),  # no subject: the patient's search
                     _obs("theirs", "4548-4", 9.9, "%", "2024-01-04", **theirs),
                     _condition("their-diabetes", [(SNOMED, "44054006")], "2023-01-01") | theirs,
                     _med("their-metformin", "860975", "2023-01-01", **theirs))
    timeline = extract_timeline(_spec(), _index(bundle), at=AT, patient_id="p1")
    assert [(e.source, e.token) for e in timeline.events if not e.static] == [
        ("Observation/mine", "LOINC/4548-4|bin1"), ("Observation/unnamed", "LOINC/4548-4|bin1")]
    assert timeline.passed_over["Observation: about another patient"] == 1
    assert timeline.passed_over["Condition: about another patient"] == 1
    assert timeline.passed_over["MedicationRequest: about another patient"] == 1


def test_unknown_tokens_are_counted_and_read_as_the_unknown_id() -> None:
    vocab = load_vocabulary(FOLDER / "vocab.json")
    bundle = _record(_condition("rare", [(SNOMED, "999999999")], "2024-01-01"),
                     _obs("hba1c", "4548-4", 6.0, "%", "2024-01-02"))
    timeline = extract_timeline(_spec(), _index(bundle), at=AT)
    ids, unknown = vocab.encode(timeline.events)
    assert unknown == 1 and ids[2] == vocab.unknown_id
    assert ids[3] == json.loads((FOLDER / "vocab.json").read_text())["tokens"]["LOINC/4548-4|bin1"]


def test_truncation_keeps_birth_and_gender_and_the_most_recent_events() -> None:
    bundle = _record(*[_obs(f"o{i}", "4548-4", 5.0 + i / 10, "%", f"2024-01-{i + 1:02d}") for i in range(10)])
    events = extract_timeline(_spec(), _index(bundle), at=AT).events
    kept = truncate(events, 5)
    assert [e.code for e in kept[:2]] == ["Gender/female", "MEDS_BIRTH"]
    assert [e.time.day for e in kept[2:]] == [8, 9, 10]


def test_prefetch_asks_for_every_resource_type_the_timeline_reads() -> None:
    from fhir_mapping.spec import load_feature_spec

    library = ValueSetLibrary([FOLDER / "valuesets"])
    features = load_feature_spec(FOLDER / "features.yaml", library)
    spec = TimelineFeatureSpec(features=features.features, timeline=_spec())
    plan = spec.prefetch_plan(library)
    templates = {pk.template for pk in plan.values()}
    patient = "patient={{context.patientId}}"
    # whole-record searches, one per type; the features' unfiltered Condition search already is one (not asked twice)
    assert {f"Condition?{patient}", f"Observation?{patient}&_sort=-date&_count=1000", f"Procedure?{patient}",
            f"MedicationRequest?{patient}&_include=MedicationRequest:medication",
            f"Encounter?{patient}&_sort=-date&_count=1000", "Patient/{{context.patientId}}"} <= templates
    assert len(templates) == len(plan) and "timeline-condition" not in plan
    assert spec.resource_types() >= {"Condition", "Observation", "MedicationRequest", "Encounter", "Procedure"}


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["values"].update({"LOINC/4548-4": {"unit": "%", "bins": [6.5, 5.7]}}),
     "values.LOINC/4548-4: Value error, `bins` must be strictly increasing"),
    (lambda d: d["values"].update({"LOINC/4548-4": {"bins": [5.7]}}), "need the `unit`"),
    (lambda d: d["values"].update({"CPT/99213": {"answers": True}}), "which code_systems does not declare"),
    (lambda d: d["groups"].append({"id": "x", "label": "X"}), "needs `codes` or `valuesets`"),
    (lambda d: d["groups"].append({"id": "y", "label": "Y", "valuesets": ["no-such-set"]}),
     "groups.y.valuesets: value set 'no-such-set' not found"),
    (lambda d: d.pop("lookback_days"), "lookback_days: Field required"),
])
def test_a_broken_timeline_yaml_is_named_with_its_field(tmp_path: Path, change: Any, message: str) -> None:
    doc = _spec_doc()
    change(doc)
    path = tmp_path / "timeline.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(TimelineSpecError) as err:
        load_timeline_spec(path, ValueSetLibrary([]))
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)


@pytest.mark.parametrize(("doc", "message"), [
    ({"format": "other"}, "not a vocabulary"),
    ({"format": "cds-onnx-vocab", "version": 1, "special": {"[PAD]": 0, "[UNK]": 0}, "tokens": {"A/1": 2}},
     "need different ids"),
    ({"format": "cds-onnx-vocab", "version": 1, "special": {"[PAD]": 0, "[UNK]": 1}, "tokens": {"A/1": 1}},
     "tokens.A/1: id 1 is already used by [UNK]"),
    ({"format": "cds-onnx-vocab", "version": 1, "special": {"[PAD]": 0, "[UNK]": 1}, "tokens": {"A/1": -3}},
     "id must be a non-negative integer"),
])
def test_a_broken_vocabulary_is_named(tmp_path: Path, doc: dict[str, Any], message: str) -> None:
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(TimelineSpecError) as err:
        load_vocabulary(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)


def test_medication_statements_and_years_before_the_prediction(tmp_path: Path) -> None:
    from fhir_mapping.timeline import event_times

    doc = _spec_doc()
    doc["resources"] = {"MedicationStatement": {}}
    path = tmp_path / "timeline.yaml"
    path.write_text(yaml.safe_dump(doc))
    spec = load_timeline_spec(path, ValueSetLibrary([FOLDER / "valuesets"]))
    rx = {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "860975"}]}
    bundle = _record(
        {"resourceType": "MedicationStatement", "id": "taken", "status": "completed", "medicationCodeableConcept": rx,
         "effectivePeriod": {"start": "2022-07-02T12:00:00Z", "end": "2022-12-31"}},
        {"resourceType": "MedicationStatement", "id": "wrong", "status": "entered-in-error",
         "medicationCodeableConcept": rx, "effectiveDateTime": "2023-01-01"},
        {"resourceType": "MedicationStatement", "id": "asserted", "status": "active", "medicationCodeableConcept": rx,
         "dateAsserted": "2024-07-02T12:00:00Z"})
    timeline = extract_timeline(spec, ResourceIndex.from_prefetch({"r": bundle}, spec.resource_types()), at=AT)
    coded = [e for e in timeline.events if not e.static]
    assert [(e.source, e.code) for e in coded] == [("MedicationStatement/taken", "RxNorm/860975"),
                                                    ("MedicationStatement/asserted", "RxNorm/860975")]
    assert timeline.passed_over["MedicationStatement: entered in error"] == 1
    years_before = event_times(timeline, coded, "times")
    assert years_before == pytest.approx([913.5 / 365.25, 182.5 / 365.25])  # 2022-07-02 12:00 and 2024-07-02 12:00
    ages = event_times(timeline, coded, "ages")
    assert ages[0] == pytest.approx((datetime(2022, 7, 2, 12, tzinfo=UTC) - datetime(1970, 6, 15, tzinfo=UTC))
                                    .total_seconds() / 86400 / 365.25)


def test_every_problem_of_a_timeline_yaml_is_reported_at_once_in_plain_words(tmp_path: Path) -> None:
    """`models validate` and start-up read timeline.yaml through the same collecting translator as the other files."""
    from inference.sequence_loader import timeline_problems

    doc = _spec_doc()
    doc.pop("lookback_days")
    doc["groups"].append({"id": "y", "label": "Y", "valuesets": ["no-such-set"]})
    doc["spec_version"] = "one"
    path = tmp_path / "timeline.yaml"
    path.write_text(yaml.safe_dump(doc))
    spec, problems = timeline_problems(path, ValueSetLibrary([FOLDER / "valuesets"]))
    assert spec is None
    fields = {p.field for p in problems}
    assert {"lookback_days", "spec_version"} <= fields, problems
    assert all("Field required" not in p.problem and "[type=" not in p.problem for p in problems)
    with pytest.raises(TimelineSpecError) as err:  # the plain loader (training script) lists both too
        load_timeline_spec(path, ValueSetLibrary([FOLDER / "valuesets"]))
    assert "lookback_days" in str(err.value) and "spec_version" in str(err.value)

    doc = _spec_doc()
    doc["groups"].append({"id": "y", "label": "Y", "valuesets": ["no-such-set"]})
    doc["groups"].append({"id": "z", "label": "Z", "valuesets": ["nor-this-one"]})
    path.write_text(yaml.safe_dump(doc))
    spec, problems = timeline_problems(path, ValueSetLibrary([FOLDER / "valuesets"]))
    assert spec is None and len(problems) == 2
    assert [p.field for p in problems] == [f"groups[{len(doc['groups']) - 2}].valuesets",
                                           f"groups[{len(doc['groups']) - 1}].valuesets"]
    assert all(p.fix for p in problems)
