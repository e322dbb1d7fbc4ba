"""The mapping engine on the shapes real records take: units, dates, aggregation, derivation, odd JSON, synthetic patients."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fhirfactory as F
from fhir_mapping.index import ResourceIndex
from fhir_mapping.mapper import map_features
from fhir_mapping.result import FeatureValue
from fhir_mapping.spec import FeatureSpec, SpecError, load_feature_spec
from fhir_mapping.units import UnitError, default_registry
from fhir_mapping.valuesets import ValueSetLibrary

ROOT = Path(__file__).resolve().parent.parent
LIB = ValueSetLibrary()
AT = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


# ---- units ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "unit", "target", "analyte", "expected"), [
    (5.5, "mmol/L", "mg/dL", "cholesterol", 5.5 * 38.67),
    (213, "mg/dL", "mmol/L", "cholesterol", 213 / 38.67),
    (123.76, "umol/L", "mg/dL", "creatinine", 1.4),
    (123.76, "µmol/L", "mg/dL", "creatinine", 1.4),
    (53, "mmol/mol", "%", "hba1c", 53 / 10.929 + 2.15),
    (7.0, "%", "mmol/mol", "hba1c", (7.0 - 2.15) * 10.929),
    (3.4, "mg/mmol", "mg/g", None, 3.4 * 8.84),
    (98.6, "[degF]", "Cel", None, 37.0),
    (180, "[lb_av]", "kg", None, 180 * 0.45359237),
    (70, "[in_i]", "cm", None, 177.8),
    (2.13, "g/L", "mg/dL", None, 213.0),
    (120, "mmHg", "mm[Hg]", None, 120.0),
    (50, "ug/L", "mg/L", None, 0.05),  # not in the registry: through the UCUM parser
    (0.40, "1", "%", None, 40.0),      # UCUM: % is 10^-2, so the dimensionless fraction 0.40 is 40 %
    (0.97, "{ratio}", "%", None, 97.0),
])
def test_unit_conversions_are_exact(value: float, unit: str, target: str, analyte: str | None,
                                    expected: float) -> None:
    assert default_registry().convert(value, unit, target, analyte) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("unit", "target", "analyte", "message"), [
    ("kg", "mg/dL", "cholesterol", "cannot be converted"),
    ("mmol/L", "mg/dL", None, "cannot be converted to 'mg/dL'"),
    ("furlongs", "mg/dL", None, "not a recognised UCUM unit"),
    (None, "mg/dL", None, "no unit given"),
    ("", "mm[Hg]", None, "no unit given"),
    ("{score}", "%", None, "cannot be converted"),   # a score is not a fraction
])
def test_unit_mismatches_are_reported(unit: str | None, target: str, analyte: str | None, message: str) -> None:
    with pytest.raises(UnitError, match=message):
        default_registry().convert(1.0, unit, target, analyte)


# ---- a spec exercising the language ------------------------------------------------------------------------------
SPEC = {
    "spec_version": 1,
    "features": {
        "age": {"label": "Age", "demographic": "age"},
        "hispanic": {"label": "Ethnicity", "demographic": "ethnicity", "required": False, "default": 0,
                     "default_note": "not recorded",
                     "answers": {"map": {"urn:oid:2.16.840.1.113883.6.238|2135-2": 1}}},
        "sbp_latest": {"label": "SBP", "unit": "mm[Hg]", "sources": [{"resource": "Observation",
                                                                      "codes": ["http://loinc.org|8480-6"]}]},
        "sbp_earliest": {"label": "SBP first", "unit": "mm[Hg]", "aggregate": "earliest",
                         "sources": [{"resource": "Observation", "codes": ["http://loinc.org|8480-6"]}]},
        "sbp_min": {"label": "SBP min", "unit": "mm[Hg]", "aggregate": "min",
                    "sources": [{"resource": "Observation", "codes": ["http://loinc.org|8480-6"]}]},
        "sbp_max": {"label": "SBP max", "unit": "mm[Hg]", "aggregate": "max",
                    "sources": [{"resource": "Observation", "codes": ["http://loinc.org|8480-6"]}]},
        "sbp_mean": {"label": "SBP mean", "unit": "mm[Hg]", "aggregate": "mean", "lookback_days": 90,
                     "sources": [{"resource": "Observation", "codes": ["http://loinc.org|8480-6"]}]},
        "sbp_count": {"label": "SBP count", "unit": "mm[Hg]", "aggregate": "count",
                      "sources": [{"resource": "Observation", "codes": ["http://loinc.org|8480-6"]}]},
        "days_since_sbp": {"label": "Days since SBP", "unit": "mm[Hg]", "aggregate": "days_since",
                           "sources": [{"resource": "Observation", "codes": ["http://loinc.org|8480-6"]}]},
        "weight": {"label": "Weight", "unit": "kg", "required": False,
                   "sources": [{"resource": "Observation", "codes": ["http://loinc.org|29463-7"]}]},
        "height": {"label": "Height", "unit": "cm", "required": False,
                   "sources": [{"resource": "Observation", "codes": ["http://loinc.org|8302-2"]}]},
        "bmi": {"label": "BMI", "unit": "kg/m2", "derived": "weight / (height / 100) ** 2",
                "sources": [{"resource": "Observation", "codes": ["http://loinc.org|39156-5"]}]},
        "inpatient": {"label": "Inpatient", "value": "exists", "default": 0, "default_note": "no encounter",
                      "sources": [{"resource": "Encounter", "where": "class.code = 'IMP'"}]},
    },
}


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> FeatureSpec:
    path = tmp_path_factory.mktemp("spec") / "features.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    return load_feature_spec(path, LIB)


def obs(code: str, value: float, unit: str, when: str, **extra: Any) -> dict[str, Any]:
    res = F.quantity_obs(code, value, unit)
    res["effectiveDateTime"] = when
    res.update(extra)
    return res


def run(spec: FeatureSpec, resources: list[dict[str, Any]], prefetch: dict[str, Any] | None = None) -> Any:
    index = ResourceIndex.from_prefetch(prefetch or {"all": F.bundle(resources, "searchset")})
    return map_features(spec, index, at=AT, valuesets=LIB, patient_id="p1")


def test_aggregations(spec: FeatureSpec) -> None:
    record = [F.patient("p1", 60), obs("8480-6", 150, "mm[Hg]", "2026-01-10"), obs("8480-6", 130, "mm[Hg]", "2026-05-01"),
              obs("8480-6", 140, "mm[Hg]", "2026-05-20T08:00:00-05:00"), obs("8480-6", 170, "mm[Hg]", "2024-02-01")]
    v = run(spec, record).values
    assert v["sbp_latest"].value == 140 and v["sbp_latest"].date == "2026-05-20"
    assert v["sbp_earliest"].value == 170
    assert v["sbp_min"].value == 130 and v["sbp_max"].value == 170
    assert v["sbp_mean"].value == pytest.approx(135.0)  # only the two within 90 days
    assert len(v["sbp_mean"].sources) == 2
    assert v["sbp_count"].value == 4
    assert v["days_since_sbp"].value == 11  # 2026-05-20 13:00 UTC to 2026-06-01 12:00 UTC
    assert v["days_since_sbp"].display == "11 days ago" and v["sbp_count"].display == "4"


def test_time_zones_and_partial_dates(spec: FeatureSpec) -> None:
    late_utc = obs("8480-6", 111, "mm[Hg]", "2026-05-20T23:30:00+00:00")
    earlier_instant = obs("8480-6", 122, "mm[Hg]", "2026-05-21T01:00:00+05:00")  # 20:00 UTC on the 20th
    assert run(spec, [F.patient("p1"), late_utc, earlier_instant]).values["sbp_latest"].value == 111
    year_only = obs("8480-6", 133, "mm[Hg]", "2026")
    year_month = obs("8480-6", 144, "mm[Hg]", "2026-04")
    values = run(spec, [F.patient("p1"), year_only, year_month]).values
    assert values["sbp_latest"].value == 144 and values["sbp_earliest"].value == 133
    bad = obs("8480-6", 155, "mm[Hg]", "last Tuesday")
    result = run(spec, [F.patient("p1"), bad])
    assert "sbp_latest" not in result.values
    assert "is not a FHIR date" in (result.missing["sbp_latest"].ignored[0].note or "")
    future = obs("8480-6", 166, "mm[Hg]", "2027-01-01")
    assert "dated in the future" in (run(spec, [F.patient("p1"), future]).missing["sbp_latest"].ignored[0].note or "")


def test_value_shapes_units_and_code_systems(spec: FeatureSpec) -> None:
    coded = obs("8480-6", 0, "mm[Hg]", "2026-05-01")
    del coded["valueQuantity"]
    coded["valueCodeableConcept"] = {"text": "high"}
    no_unit = obs("8480-6", 120, "mm[Hg]", "2026-05-02")
    no_unit["valueQuantity"] = {"value": 120}
    other_system = obs("8480-6", 125, "mm[Hg]", "2026-05-03")
    other_system["code"]["coding"][0]["system"] = "http://example.org/local-codes"
    result = run(spec, [F.patient("p1"), coded, no_unit, other_system])
    notes = sorted(s.note or "" for s in result.missing["sbp_latest"].ignored)
    # the newest matching result has no unit: it stands (the feature is missing, naming it) and the older coded one
    # is not read; the unknown code system never matched
    assert notes == ["unusable unit: no unit given (expected mm[Hg])"]
    assert result.missing["sbp_latest"].reason.startswith("Newest result (2026-05-02) not usable: unusable unit: no "
                                                          "unit given")


def test_searchset_with_paging_links_and_contained(spec: FeatureSpec) -> None:
    page = F.bundle([F.patient("p1"), obs("8480-6", 128, "mm[Hg]", "2026-05-01")], "searchset")
    page["link"] = [{"relation": "self", "url": "https://ehr.example/fhir/Observation?page=1"},
                    {"relation": "next", "url": "https://ehr.example/fhir/Observation?page=2"}]
    assert run(spec, [], {"page": page}).values["sbp_latest"].value == 128


def test_derived_bmi_and_fhirpath_filter(spec: FeatureSpec) -> None:
    record = [F.patient("p1"), obs("29463-7", 81, "kg", "2026-05-01"), obs("8302-2", 180, "cm", "2025-01-01"),
              F.encounter("e1", klass="AMB")]
    v = run(spec, record).values
    assert v["bmi"].value == pytest.approx(81 / 1.8 ** 2)
    # the note names each input with the value used, so the details page shows what the BMI rests on
    assert v["bmi"].note == "computed from height 180 cm, weight 81 kg" and len(v["bmi"].sources) == 2
    assert v["inpatient"].value == 0 and v["inpatient"].defaulted
    measured = run(spec, record + [obs("39156-5", 27.1, "kg/m2", "2026-05-02"), F.encounter("e2")]).values
    assert measured["bmi"].value == 27.1 and measured["inpatient"].value == 1
    missing = run(spec, [F.patient("p1"), obs("29463-7", 81, "kg", "2026-05-01")]).missing["bmi"]
    assert "cannot be computed without height" in missing.reason


def test_ethnicity_and_defaults_flagged(spec: FeatureSpec) -> None:
    patient = F.patient("p1")
    assert run(spec, [patient]).values["hispanic"].defaulted
    patient["extension"] = [{"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity",
                             "extension": [{"url": "ombCategory", "valueCoding": {
                                 "system": "urn:oid:2.16.840.1.113883.6.238", "code": "2135-2",
                                 "display": "Hispanic or Latino"}}]}]
    value = run(spec, [patient]).values["hispanic"]
    assert value.value == 1 and not value.defaulted


def test_spec_errors_name_file_feature_and_field(tmp_path: Path) -> None:
    bad = {"spec_version": 1, "features": {"sbp": {"label": "SBP", "unit": "mm[Hg]", "aggregate": "median",
                                                   "sources": [{"resource": "Observation",
                                                                "codes": ["http://loinc.org|8480-6"]}]}}}
    path = tmp_path / "features.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(SpecError, match=r"features\.yaml: features\.sbp\.aggregate"):
        load_feature_spec(path, LIB)
    bad["features"]["sbp"]["aggregate"] = "latest"
    bad["features"]["sbp"]["sources"][0]["codes"] = ["8480-6"]
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(SpecError, match=r"features\.sbp\.sources\.0\.codes.*system\|code"):
        load_feature_spec(path, LIB)
    circular = {"spec_version": 1, "features": {"a": {"label": "A", "unit": "1", "derived": "b + 1"},
                                                "b": {"label": "B", "unit": "1", "derived": "a + 1"}}}
    path.write_text(yaml.safe_dump(circular))
    with pytest.raises(SpecError, match="circular derivation"):
        load_feature_spec(path, LIB)
    evil = {"spec_version": 1, "features": {"a": {"label": "A", "unit": "1", "derived": "__import__('os')"}}}
    path.write_text(yaml.safe_dump(evil))
    with pytest.raises(SpecError, match="not allowed"):
        load_feature_spec(path, LIB)
    two = {"spec_version": 1, "features": {"sbp": {"label": "SBP", "unit": "mm[Hg]", "aggregate": "median",
                                                   "sources": [{"resource": "Observation", "codes": ["8480-6"]}]}}}
    path.write_text(yaml.safe_dump(two))
    with pytest.raises(SpecError) as both:  # every problem at once, not the first alone
        load_feature_spec(path, LIB)
    assert "features.sbp.aggregate" in str(both.value) and "features.sbp.sources.0.codes" in str(both.value)


def test_prefetch_templates_follow_the_spec(spec: FeatureSpec) -> None:
    plan = spec.prefetch_plan(LIB)
    assert plan["patient"].template == "Patient/{{context.patientId}}"
    sbp = [pk for pk in plan.values() if "8480-6" in pk.template]
    assert len(sbp) == 1 and "_sort=-date" in sbp[0].template
    assert {"sbp_latest", "sbp_mean", "days_since_sbp"} <= set(sbp[0].features)


# ---- property-based: the mapper never raises ---------------------------------------------------------------------
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=12))
json_value = st.recursive(json_leaf, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)), max_leaves=12)
RESOURCE_KEYS = ["status", "code", "valueQuantity", "valueCodeableConcept", "effectiveDateTime", "component",
                 "clinicalStatus", "verificationStatus", "medicationCodeableConcept", "medicationReference",
                 "contained", "birthDate", "gender", "extension", "subject", "onsetDateTime", "class", "id"]
resource_like = st.builds(
    lambda rtype, body: {"resourceType": rtype, **body},
    st.sampled_from(["Observation", "Condition", "MedicationRequest", "Patient", "Encounter", "Procedure", "Bundle"]),
    st.dictionaries(st.sampled_from(RESOURCE_KEYS), json_value, max_size=8))


def mutate(resource: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(resource))
    out[key] = value
    return out


PCE = load_feature_spec(ROOT / "models" / "ascvd-pce-10y" / "1.0.0" / "features.yaml", LIB)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(resource_like, max_size=6), st.sampled_from(RESOURCE_KEYS), json_value)
def test_mapper_never_raises_on_arbitrary_resources(junk: list[dict[str, Any]], key: str, value: Any) -> None:
    valid = F.pce_record()
    mutated = [mutate(r, key, value) for r in valid[1:]]
    for resources in (junk, mutated, valid[:1] + mutated):
        bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
        index = ResourceIndex.from_prefetch({"a": bundle, "b": junk[0] if junk else None})
        result = map_features(PCE, index, at=F.NOW, valuesets=LIB, patient_id="p1")
        for name in PCE.features:
            assert (name in result.values) != (name in result.missing)
            if name in result.missing:
                assert result.missing[name].reason


# ---- synthetic patients: every record maps through every model -------------------------------------------------
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "synthea"
INDEX = json.loads((FIXTURES / "index.json").read_text())
# each spec with the value sets the service gives it: its model folder's own (looked up first), then the shipped ones
LIBS = {p.parent.parent.name: ValueSetLibrary([p.parent / "valuesets"])
        for p in sorted((ROOT / "models").glob("*/*/features.yaml"))}
SPECS = {p.parent.parent.name: load_feature_spec(p, LIBS[p.parent.parent.name])
         for p in sorted((ROOT / "models").glob("*/*/features.yaml"))}


@pytest.mark.parametrize("patient", INDEX["patients"], ids=[p["file"][:12] for p in INDEX["patients"]])
def test_generated_patients_map_and_present_features_are_found(patient: dict[str, Any]) -> None:
    bundle = json.loads((FIXTURES / patient["file"]).read_text())
    at = datetime.fromisoformat(INDEX["settings"]["reference_date"]).replace(tzinfo=UTC) + timedelta(days=1)
    index = ResourceIndex.from_prefetch({"record": bundle})
    results = {}
    for model_id, spec in SPECS.items():
        results[model_id] = map_features(spec, index, at=at, valuesets=LIBS[model_id],
                                          patient_id=patient["patient_id"])
    pce = results["ascvd-pce-10y"]
    assert pce.values["age"].value == patient["age"]
    counts = patient["observation_counts"]
    def found(result: Any, name: str) -> bool:
        """Used, or seen and passed over with a reason (e.g. older than the look-back window)."""
        return isinstance(result.values.get(name), FeatureValue) or bool(result.missing[name].ignored)

    if counts.get("total_cholesterol"):
        assert found(pce, "total_cholesterol")
    if counts.get("bp_panel"):
        assert found(pce, "sbp")
    if counts.get("smoking_status"):
        assert found(pce, "smoker")
    if patient["has_diabetes"]:
        assert pce.values["diabetes"].value == 1
    if counts.get("bmi"):
        assert found(results["prevent-base"], "bmi")
    if patient["has_atrial_fibrillation"]:
        assert results["cha2ds2-vasc"].values["atrial_fibrillation"].value == 1


def test_prefetch_date_limits_are_opt_in(tmp_path: Path) -> None:
    from cds_hooks.prefetch import render_template

    doc = dict(SPEC, prefetch_date_limits=True)
    path = tmp_path / "features.yaml"
    path.write_text(yaml.safe_dump(doc))
    limited = load_feature_spec(path, LIB).prefetch_plan(LIB)
    mean = [pk.template for pk in limited.values() if "sbp_mean" in pk.features and "date=ge" in pk.template]
    assert mean and "date=ge{{today() - 90 days}}" in mean[0]
    rendered = render_template(mean[0], {"patientId": "p1"}, now=AT)
    assert "date=ge2026-03-03" in rendered


# ---- presence read from values (`above`): the newest reading decides, an unusable one is never "no" -----------------
OXYGEN_SPEC = {
    "spec_version": 1,
    "features": {
        "on_oxygen": {
            "label": "Supplemental oxygen", "value": "exists", "lookback_days": 1, "default": 0,
            "default_note": "nothing recorded: air", "display": {"1": "Oxygen", "0": "Air"},
            "sources": [
                {"resource": "Observation", "codes": ["http://loinc.org|3150-0"], "above": 21, "above_unit": "%",
                 "usable_range": [20, 100]},
                {"resource": "Observation", "codes": ["http://loinc.org|3151-8"], "above": 0, "above_unit": "L/min"},
                {"resource": "Procedure", "codes": ["http://snomed.info/sct|57485005"], "statuses": ["in-progress"]},
            ],
        },
        "any_oxygen": {  # aggregate exists: any value above the threshold in the window counts
            "label": "Any oxygen", "value": "exists", "aggregate": "exists", "lookback_days": 1, "default": 0,
            "default_note": "none",
            "sources": [{"resource": "Observation", "codes": ["http://loinc.org|3151-8"], "above": 0,
                         "above_unit": "L/min"}],
        },
    },
}


def _at(hours: float) -> str:
    return (AT - timedelta(hours=hours)).isoformat()


def _oxygen(tmp_path: Path, resources: list[dict[str, Any]]) -> Any:
    path = tmp_path / "features.yaml"
    path.write_text(yaml.safe_dump(OXYGEN_SPEC))
    return run(load_feature_spec(path, LIB), [F.patient("p1"), *resources])


def test_a_newer_reading_at_the_threshold_is_a_recorded_no(tmp_path: Path) -> None:
    result = _oxygen(tmp_path, [obs("3150-0", 21, "%", _at(1)), obs("3151-8", 2, "L/min", _at(20))])
    value = result.values["on_oxygen"]
    assert value.value == 0 and not value.defaulted and value.display == "Air"
    assert "read as no" in (value.sources[0].note or "")
    assert result.values["any_oxygen"].value == 1  # `exists` still means any flow above 0 in the window
    flow = _oxygen(tmp_path, [obs("3151-8", 0, "L/min", _at(1)), obs("3151-8", 2, "L/min", _at(20))])
    assert flow.values["on_oxygen"].value == 0
    newer_oxygen = _oxygen(tmp_path, [obs("3150-0", 21, "%", _at(20)), obs("3151-8", 2, "L/min", _at(1))])
    assert newer_oxygen.values["on_oxygen"].value == 1


def _therapy(started: str | None) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Procedure", "id": "o2", "status": "in-progress",
                           "code": {"coding": [{"system": "http://snomed.info/sct", "code": "57485005"}]},
                           "subject": {"reference": "Patient/p1"}}
    if started is not None:
        res["performedPeriod"] = {"start": started}
    return res


def test_an_oxygen_procedure_in_progress_is_current_whenever_it_started(tmp_path: Path) -> None:
    for started in (_at(10), _at(30), None):  # within the 1-day window or not, or with no start at all
        assert _oxygen(tmp_path, [_therapy(started)]).values["on_oxygen"].value == 1, started
    # an air reading from before the therapy started does not override it
    assert _oxygen(tmp_path, [obs("3150-0", 21, "%", _at(10)), _therapy(_at(1))]).values["on_oxygen"].value == 1


def test_a_reading_of_air_after_the_oxygen_therapy_started_decides(tmp_path: Path) -> None:
    """The newest oxygen record decides: therapy left in progress since yesterday, then FiO2 21 % an hour ago, is
    air now (the procedure is placed by its start, not taken as newer than everything)."""
    result = _oxygen(tmp_path, [obs("3150-0", 21, "%", _at(1)), _therapy(_at(10))])
    assert result.values["on_oxygen"].value == 0 and result.values["on_oxygen"].display == "Air"
    flow = _oxygen(tmp_path, [obs("3151-8", 0, "L/min", _at(1)), _therapy(_at(30))])
    assert flow.values["on_oxygen"].value == 0


@pytest.mark.parametrize(("quantity", "why"), [
    ({"value": 0.40}, "no unit given"),
    ({"value": 0.40, "unit": "%", "system": F.UCUM, "code": "%"}, "outside the usable range 20–100 %"),
    # a bound whose edge is outside the usable range is the same mistake as a value there (a fraction sent as %)
    ({"value": 0.4, "comparator": ">", "unit": "%", "system": F.UCUM, "code": "%"}, "is a bound"),
    # a bound straddling the threshold (it may be 20 % or 60 %) decides nothing
    ({"value": 60, "comparator": "<", "unit": "%", "system": F.UCUM, "code": "%"}, "is a bound"),
])
@pytest.mark.parametrize("older_air", [False, True])
def test_an_unusable_newest_reading_is_unknown_never_the_default(tmp_path: Path, quantity: dict[str, Any], why: str,
                                                                 older_air: bool) -> None:
    newest = obs("3150-0", 0, "%", _at(1))
    newest["valueQuantity"] = quantity
    record = [newest] + ([obs("3150-0", 21, "%", _at(5))] if older_air else [])
    result = _oxygen(tmp_path, record)
    assert "on_oxygen" not in result.values
    missing = result.missing["on_oxygen"]
    assert missing.reason.startswith("Newest result not usable: ") and why in missing.reason
    assert "absence cannot be assumed" in missing.reason


def test_a_bound_wholly_on_one_side_of_the_threshold_and_inside_the_usable_range_decides(tmp_path: Path) -> None:
    """FiO2 '>40 %': every value it allows is above 21 % and inside 20-100 %: oxygen, as 45 % would be."""
    newest = obs("3150-0", 0, "%", _at(1))
    newest["valueQuantity"] = {"value": 40, "comparator": ">", "unit": "%", "system": F.UCUM, "code": "%"}
    result = _oxygen(tmp_path, [newest, obs("3150-0", 21, "%", _at(5))])
    assert result.values["on_oxygen"].value == 1


@pytest.mark.parametrize("older_air", [False, True])
def test_a_newest_reading_that_is_not_valid_fhir_is_unknown(tmp_path: Path, older_air: bool) -> None:
    newest = obs("3150-0", 40, "%", _at(1), issued="yesterday")  # `issued` must be an instant: not valid R4
    record = [newest] + ([obs("3150-0", 21, "%", _at(5))] if older_air else [])
    result = _oxygen(tmp_path, record)
    assert "on_oxygen" not in result.values
    assert result.missing["on_oxygen"].reason.startswith("Newest result not usable: ")


def test_a_fraction_with_unit_1_is_read_as_percent(tmp_path: Path) -> None:
    result = _oxygen(tmp_path, [obs("3150-0", 0.40, "1", _at(1))])
    assert result.values["on_oxygen"].value == 1
    assert result.values["on_oxygen"].sources[0].note == "converted from 0.4 1"


def test_a_source_usable_range_needs_a_threshold(tmp_path: Path) -> None:
    bad = {"spec_version": 1, "features": {"x": {"label": "X", "unit": "%", "sources": [
        {"resource": "Observation", "codes": ["http://loinc.org|3150-0"], "usable_range": [20, 100]}]}}}
    path = tmp_path / "features.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(SpecError, match="usable_range"):
        load_feature_spec(path, LIB)


# ---- a bare number read in the one unit its code has (`bare_number_unit`) -------------------------------------------
BARE = {"spec_version": 1, "features": {
    "sbp": {"label": "Systolic", "unit": "mm[Hg]", "bare_number_unit": "mm[Hg]", "lookback_days": 30, "sources": [
        {"resource": "Observation", "codes": ["http://loinc.org|85354-9"], "component": ["http://loinc.org|8480-6"]},
        {"resource": "Observation", "codes": ["http://loinc.org|8480-6"]}]},
    "sbp_kpa": {"label": "Systolic in kPa", "unit": "kPa", "bare_number_unit": "mm[Hg]", "lookback_days": 30,
                "sources": [{"resource": "Observation", "codes": ["http://loinc.org|8480-6"]}]},
    "temp": {"label": "Temperature", "unit": "Cel", "lookback_days": 30,
             "sources": [{"resource": "Observation", "codes": ["http://loinc.org|8310-5"]}]}}}


def _bare_spec(tmp_path: Path, doc: dict[str, Any] = BARE) -> FeatureSpec:
    path = tmp_path / "features.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_feature_spec(path, LIB)


def _panel(systolic: dict[str, Any], hours: float) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": f"bp{hours}", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]}, "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": _at(hours),
            "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}, **systolic}]}


@pytest.mark.parametrize(("written", "expected"), [
    ({"valueInteger": 142}, 142.0),
    ({"valueQuantity": {"value": 142}}, 142.0),                                  # a Quantity with neither unit nor code
    ({"valueQuantity": {"value": 142, "unit": "mmHg"}}, 142.0),                  # a unit as text: read as before
])
def test_a_bare_number_is_read_in_the_only_unit_its_code_has(tmp_path: Path, written: dict[str, Any],
                                                              expected: float) -> None:
    result = run(_bare_spec(tmp_path), [F.patient("p1"), _panel(written, 1)])
    assert result.values["sbp"].value == expected
    bare = "unit" not in json.dumps(written)
    assert (result.values["sbp"].sources[0].note == "written without a unit; read as 142 mmHg") is bare


def test_a_bare_number_is_converted_from_its_unit_and_other_shapes_stay_unreadable(tmp_path: Path) -> None:
    sbp = obs("8480-6", 0, "mm[Hg]", _at(1))
    del sbp["valueQuantity"]
    sbp["valueInteger"] = 150
    temp = obs("8310-5", 0, "Cel", _at(1))
    del temp["valueQuantity"]
    temp["valueInteger"] = 38  # temperature has two units: never read bare
    result = run(_bare_spec(tmp_path), [F.patient("p1"), sbp, temp])
    assert result.values["sbp_kpa"].value == pytest.approx(150 * 0.133322, rel=1e-4)  # mmHg to kPa
    assert result.values["sbp_kpa"].sources[0].note == "written without a unit; read as 150 mmHg, converted to 20 kPa"
    assert "temp" in result.missing and "has valueInteger instead of a valueQuantity" in result.missing["temp"].reason
    for flag in (True, False):  # valueBoolean is not a number, nor is a bool in valueInteger's place
        sbp["valueInteger"] = flag
        again = run(_bare_spec(tmp_path), [F.patient("p1"), sbp])
        assert "sbp_kpa" not in again.values


def test_derived_only_if_spec_errors(tmp_path: Path) -> None:
    base = {"label": "K", "unit": "1", "derived": "2 * x"}
    for extra, message in [({"derived_only_if": "x > 1"}, "go together"),
                           ({"derived_only_if": "x >", "derived_only_if_note": "n"}, "derived_only_if"),
                           ({"derived": None, "sources": [{"resource": "Observation", "codes": ["http://loinc.org|1-8"]}],
                             "derived_only_if": "x > 1", "derived_only_if_note": "n"}, "needs `derived`")]:
        feature = {k: v for k, v in {**base, **extra}.items() if v is not None}
        doc = {"spec_version": 1, "features": {"x": {"label": "X", "unit": "1", "sources": [
            {"resource": "Observation", "codes": ["http://loinc.org|1-8"]}]}, "k": feature}}
        with pytest.raises(SpecError, match=message):
            _bare_spec(tmp_path, doc)


@pytest.mark.parametrize(("feature", "message"), [
    ({"label": "T", "unit": "Cel", "bare_number_unit": "mm[Hg]",
      "sources": [{"resource": "Observation", "codes": ["http://loinc.org|8310-5"]}]}, "does not measure what"),
    ({"label": "T", "unit": "Cel", "bare_number_unit": "furlong",
      "sources": [{"resource": "Observation", "codes": ["http://loinc.org|8310-5"]}]}, "not in the unit registry"),
    ({"label": "S", "value": "exists", "bare_number_unit": "%",
      "sources": [{"resource": "Condition", "codes": ["http://snomed.info/sct|1201005"]}]}, "quantity feature"),
])
def test_bare_number_unit_spec_errors(tmp_path: Path, feature: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        _bare_spec(tmp_path, {"spec_version": 1, "features": {"x": feature}})


# ---- a derived value that competes by date (`derived_when: newer`) and an age on a result's date (`on_date_of`) ---
NEWEST = {
    "spec_version": 1,
    "features": {
        "age": {"label": "Age", "demographic": "age"},
        "creatinine": {"label": "Serum creatinine", "unit": "mg/dL", "analyte": "creatinine", "required": False,
                       "lookback_days": 365,
                       "sources": [{"resource": "Observation", "codes": ["http://loinc.org|2160-0"]}]},
        "age_at_creatinine": {"label": "Age at the creatinine", "demographic": "age", "required": False,
                              "on_date_of": "creatinine"},
        "kidney": {"label": "Kidney function", "unit": "1", "lookback_days": 365, "derived_when": "newer",
                   "derived": "100 * creatinine + age_at_creatinine",
                   "sources": [{"resource": "Observation", "codes": ["http://loinc.org|98979-8"]}]},
        "kidney_if_missing": {"label": "Kidney function (fallback only)", "unit": "1", "lookback_days": 365,
                              "derived": "100 * creatinine + age_at_creatinine",
                              "sources": [{"resource": "Observation", "codes": ["http://loinc.org|98979-8"]}]},
    },
}


@pytest.fixture(scope="module")
def newest(tmp_path_factory: pytest.TempPathFactory) -> FeatureSpec:
    path = tmp_path_factory.mktemp("newest") / "features.yaml"
    path.write_text(yaml.safe_dump(NEWEST))
    return load_feature_spec(path, LIB)


def born(day: str) -> dict[str, Any]:
    patient = F.patient("p1")
    patient["birthDate"] = day
    return patient


@pytest.mark.parametrize(("recorded_on", "creatinine_on", "expected"), [
    ("2025-08-05", "2026-05-27", 100 * 2.2 + 61),  # the reported value is 10 months older: the creatinine wins
    ("2026-05-27T09:00:00Z", "2026-05-27T16:00:00Z", 45),  # same day: the reported value stands
    ("2026-05-28", "2026-05-27", 45),  # the reported value is newer
])
def test_derived_when_newer_takes_the_newest_evidence(newest: FeatureSpec, recorded_on: str, creatinine_on: str,
                                                      expected: float) -> None:
    record = [born("1965-01-15"), obs("98979-8", 45, "1", recorded_on), obs("2160-0", 2.2, "mg/dL", creatinine_on)]
    v = run(newest, record).values
    assert v["kidney"].value == pytest.approx(expected)
    assert v["kidney_if_missing"].value == 45  # the default rule: the derivation only fills a gap
    if expected != 45:
        assert v["kidney"].date == "2026-05-27" and v["kidney"].sources[0].code == "http://loinc.org|2160-0"
        assert "newer than the recorded Kidney function 45 of 2025-08-05" in (v["kidney"].note or "")


def unitless(code: str, value: float, when: str) -> dict[str, Any]:
    res = obs(code, value, "mg/dL", when)
    res["valueQuantity"] = {"value": value}  # a number the EHR sent without a unit
    return res


@pytest.mark.parametrize("older_creatinine", [False, True])
def test_a_newer_creatinine_that_cannot_be_read_leaves_the_newest_evidence_missing(newest: FeatureSpec,
                                                                                   older_creatinine: bool) -> None:
    record = [born("1965-01-15"), obs("98979-8", 45, "1", "2025-08-05"), unitless("2160-0", 2.2, "2026-05-27")]
    if older_creatinine:
        record.append(obs("2160-0", 1.1, "mg/dL", "2025-10-01"))  # newer than the recorded value, older than the unread
    result = run(newest, record)
    assert "kidney" not in result.values
    missing = result.missing["kidney"]
    assert missing.reason.startswith("Newest serum creatinine (2026-05-27) not usable: unusable unit: no unit given")
    assert "the recorded Kidney function 45 of 2025-08-05" in missing.reason
    assert missing.newest_unusable is not None and missing.newest_unusable.date == "2026-05-27"
    assert result.values["kidney_if_missing"].value == 45  # `derived_when: missing`: the recorded value, as before
    # the creatinine's newest result cannot be read, so the creatinine is missing too, naming it: the older 1.1 mg/dL
    # is not its current value
    assert "creatinine" not in result.values
    assert result.missing["creatinine"].newest_unusable is not None
    assert result.missing["creatinine"].newest_unusable.date == "2026-05-27"


@pytest.mark.parametrize(("recorded_on", "unread_on", "expected"), [
    ("2026-05-27T09:00:00Z", "2026-05-27T16:00:00Z", 45),  # same day: the reported value stands
    ("2026-05-28", "2026-05-27", 45),  # the reported value is newer than the creatinine that cannot be read
])
def test_a_creatinine_that_cannot_be_read_does_not_displace_a_reported_value_of_its_day_or_later(
        newest: FeatureSpec, recorded_on: str, unread_on: str, expected: float) -> None:
    result = run(newest, [born("1965-01-15"), obs("98979-8", 45, "1", recorded_on), unitless("2160-0", 2.2, unread_on)])
    assert result.values["kidney"].value == expected


def test_a_newer_reported_value_that_cannot_be_read_is_not_replaced_by_an_older_creatinine(newest: FeatureSpec) -> None:
    bad = obs("98979-8", 45, "1", "2026-05-28")
    bad["valueQuantity"] = {"value": 45, "unit": "furlong"}
    result = run(newest, [born("1965-01-15"), bad, obs("2160-0", 2.2, "mg/dL", "2026-05-01")])
    assert "kidney" not in result.values
    assert result.missing["kidney"].reason.startswith("Newest result (2026-05-28) not usable: unusable unit")
    # a later creatinine is newer evidence than the unreadable report: it is used, and says what it replaced
    later = run(newest, [born("1965-01-15"), bad, obs("2160-0", 2.2, "mg/dL", "2026-05-30")]).values["kidney"]
    assert later.value == pytest.approx(100 * 2.2 + 61)
    assert "newer than the recorded result of 2026-05-28, which could not be used" in (later.note or "")


def test_age_on_the_date_of_a_result(newest: FeatureSpec) -> None:
    # 61 at the hook (2026-06-01), 60 when the creatinine was drawn before the birthday on 2026-04-10
    v = run(newest, [born("1965-04-10"), obs("2160-0", 1.0, "mg/dL", "2026-03-01")]).values
    assert v["age"].value == 61 and v["age_at_creatinine"].value == 60
    assert v["kidney"].value == pytest.approx(100 * 1.0 + 60)
    assert v["age_at_creatinine"].display == "60 years on 2026-03-01"
    missing = run(newest, [born("1965-04-10")]).missing
    assert missing["age_at_creatinine"].reason == "No serum creatinine to date it by"
    assert "kidney" in missing


@pytest.mark.parametrize(("feature", "message"), [
    ({"label": "K", "unit": "1", "derived": "1", "derived_when": "newer"}, "needs both `sources` and `derived`"),
    ({"label": "A", "demographic": "gender", "answers": {"map": {"male": 1}}, "on_date_of": "creatinine"},
     "only applies to `demographic: age`"),
    ({"label": "A", "demographic": "age", "on_date_of": "nothing"}, "on_date_of must name a feature"),
])
def test_newest_evidence_spec_errors(tmp_path: Path, feature: dict[str, Any], message: str) -> None:
    doc = {"spec_version": 1, "features": {**NEWEST["features"], "odd": feature}}
    path = tmp_path / "features.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(SpecError, match=message):
        load_feature_spec(path, LIB)


# ---- a derived value its unknown inputs cannot change -----------------------------------------------------------------
UNDIAGNOSED_SPEC = {"spec_version": 1, "features": {
    "hba1c": {"label": "HbA1c", "unit": "%", "lookback_days": 730, "analyte": "hba1c",
              "sources": [{"resource": "Observation", "codes": ["http://loinc.org|4548-4"]}]},
    "diabetes": {"label": "Diabetes", "value": "exists", "default": 0, "default_note": "none on record",
                 "sources": [{"resource": "Condition", "codes": ["http://snomed.info/sct|44054006"]}]},
    "undiagnosed": {"label": "Undiagnosed HbA1c", "required": False, "unit": "1",
                    "derived": "(1 if hba1c >= 6.5 else 0) * (1 - diabetes)"},
}}


@pytest.mark.parametrize(("hba1c", "diabetic", "expected"), [
    ({"value": 5.6}, True, 0.0),  # no unit: unknown, but a diabetic's check is 0 whatever it says
    ({"value": 5.6}, False, None),  # ... and unknown for anyone else
    ({"value": 4, "comparator": "<", "unit": "%", "system": F.UCUM, "code": "%"}, False, 0.0),  # wholly below 6.5
    ({"value": 7, "comparator": ">", "unit": "%", "system": F.UCUM, "code": "%"}, False, 1.0),  # wholly above
    ({"value": 7, "comparator": "<", "unit": "%", "system": F.UCUM, "code": "%"}, False, None),  # may be either
])
def test_a_derived_value_is_given_when_its_unknown_inputs_cannot_change_it(
        tmp_path: Path, hba1c: dict[str, Any], diabetic: bool, expected: float | None) -> None:
    from fhir_mapping.unread import carry_into_derived

    path = tmp_path / "features.yaml"
    path.write_text(yaml.safe_dump(UNDIAGNOSED_SPEC))
    spec = load_feature_spec(path, LIB)
    result = obs("4548-4", 0, "%", "2026-05-01T10:00:00Z")
    result["valueQuantity"] = hba1c
    records = [result] + ([F.condition("44054006")] if diabetic else [])
    mapping = run(spec, records)
    got = mapping.values.get("undiagnosed")
    assert (got.value if got is not None else None) == expected, mapping.missing.get("undiagnosed")
    if expected is not None:
        assert "whatever hba1c" in (got.note or "")
    if diabetic:  # the HbA1c search not read in full later (cds_hooks/service_call.py): the value still stands
        mapping.values.pop("hba1c", None)
        mapping.missing["hba1c"] = mapping.missing.get("hba1c") or next(iter(mapping.missing.values()))
        carry_into_derived(spec, mapping, ["hba1c"])
        assert mapping.values["undiagnosed"].value == 0.0
