"""Mapping edge cases real records bring, on the shipped PCE feature spec."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

import fhirfactory as F
from fhir_mapping.index import ResourceIndex
from fhir_mapping.mapper import map_features
from fhir_mapping.result import MappingResult
from fhir_mapping.spec import FeatureSpec, load_feature_spec
from fhir_mapping.valuesets import ValueSetLibrary

FOLDER = Path(__file__).resolve().parent.parent / "models" / "ascvd-pce-10y" / "1.0.0"


@pytest.fixture(scope="module")
def spec() -> tuple[FeatureSpec, ValueSetLibrary]:
    library = ValueSetLibrary([FOLDER / "valuesets"])
    return load_feature_spec(FOLDER / "features.yaml", library), library


def run(spec: tuple[FeatureSpec, ValueSetLibrary], resources: list[dict[str, Any]]) -> MappingResult:
    index = ResourceIndex.from_prefetch({"all": F.bundle(resources, "searchset")})
    return map_features(spec[0], index, at=F.NOW, valuesets=spec[1], patient_id="p1")


def without(code: str, resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in resources if r.get("code", {}).get("coding", [{}])[0].get("code") != code]


def test_mmol_per_litre_cholesterol_is_converted(spec: Any) -> None:
    record = without("2093-3", F.pce_record()) + [F.quantity_obs("14647-2", 5.5, "mmol/L")]
    result = run(spec, record)
    value = result.values["total_cholesterol"]
    assert value.value == pytest.approx(5.5 * 38.67, abs=1e-9)
    assert value.unit == "mg/dL"
    src = value.sources[0]
    assert (src.original_value, src.original_unit) == (5.5, "mmol/L")
    assert src.note == "converted from 5.5 mmol/L"


@pytest.mark.parametrize("shape", ["85354-9", "55284-4", "standalone"])
def test_each_blood_pressure_shape(spec: Any, shape: str) -> None:
    bp = F.quantity_obs("8480-6", 131, "mm[Hg]") if shape == "standalone" else F.bp_panel(131, panel=shape)
    result = run(spec, without("85354-9", F.pce_record()) + [bp])
    assert result.values["sbp"].value == 131
    assert result.values["sbp"].sources[0].reference == f"Observation/{bp['id']}"


def test_latest_blood_pressure_wins_across_shapes(spec: Any) -> None:
    record = without("85354-9", F.pce_record()) + [
        F.bp_panel(150, days=100), F.quantity_obs("8480-6", 128, "mmHg", days=3, ucum=False)]
    assert run(spec, record).values["sbp"].value == 128


def test_value_older_than_window_is_ignored_and_reported(spec: Any) -> None:
    old = F.quantity_obs("2093-3", 240, "mg/dL", days=800)
    result = run(spec, without("2093-3", F.pce_record()) + [old])
    missing = result.missing["total_cholesterol"]
    assert missing.required
    assert "last 2 years" in missing.reason and "1 result passed over" in missing.reason
    assert missing.ignored[0].reference == f"Observation/{old['id']}"
    assert "older than the 2 years look-back window" in (missing.ignored[0].note or "")


def test_entered_in_error_is_never_used(spec: Any) -> None:
    wrong = F.quantity_obs("2093-3", 300, "mg/dL", days=1, status="entered-in-error")
    result = run(spec, F.pce_record() + [wrong])
    assert result.values["total_cholesterol"].value == 213
    blood = F.bp_panel(180, days=1, status="entered-in-error")
    assert run(spec, F.pce_record() + [blood]).values["sbp"].value == 120


def test_no_smoking_observation_is_missing_not_non_smoker(spec: Any) -> None:
    result = run(spec, without("72166-2", F.pce_record()))
    assert "smoker" not in result.values
    missing = result.missing["smoker"]
    assert missing.required and "never assumed" in missing.reason


def test_unknown_smoking_answer_is_reported(spec: Any) -> None:
    odd = F.smoking("999999999", days=1)
    result = run(spec, without("72166-2", F.pce_record()) + [odd])
    assert "not one the model can interpret" in (result.missing["smoker"].ignored[0].note or "")


def test_incompatible_unit_is_unusable_with_reason(spec: Any) -> None:
    bad = F.quantity_obs("2093-3", 2.1, "g", days=1)
    result = run(spec, without("2093-3", F.pce_record()) + [bad])
    note = result.missing["total_cholesterol"].ignored[0].note or ""
    assert note.startswith("unusable unit") and "'g'" in note


def test_medication_product_codes_and_contained_medication(spec: Any) -> None:
    record = F.pce_record() + [F.med_request("314076", contained=True)]
    assert run(spec, record).values["bp_treated"].value == 1
    stopped = F.pce_record() + [F.med_request("314076", status="stopped")]
    value = run(spec, stopped).values["bp_treated"]
    assert value.value == 0 and value.defaulted


def test_diabetes_from_snomed_or_icd10_and_not_from_refuted(spec: Any) -> None:
    assert run(spec, F.pce_record(diabetes=True)).values["diabetes"].value == 1
    icd = F.condition("E11.9", "http://hl7.org/fhir/sid/icd-10-cm")
    assert run(spec, F.pce_record() + [icd]).values["diabetes"].value == 1
    refuted = F.condition("44054006", verification="refuted")
    resolved = F.condition("44054006", clinical="resolved")
    value = run(spec, F.pce_record() + [refuted, resolved]).values["diabetes"]
    assert value.value == 0 and value.defaulted


def test_demographics(spec: Any) -> None:
    result = run(spec, F.pce_record(age=61, gender="male", race="black"))
    assert result.values["age"].value == 61
    assert result.values["female"].value == 0
    assert result.values["black"].value == 1 and not result.values["black"].defaulted
    unknown = run(spec, [F.patient("p1", gender="unknown")] + F.pce_record()[1:])
    assert "female" not in unknown.values
    assert "sex-specific" in unknown.missing["female"].reason


# ---- race: the US Core race extension as EHRs send it ------------------------------------------------------------
CDC = "urn:oid:2.16.840.1.113883.6.238"  # CDC Race & Ethnicity code system


def with_race(*subs: tuple[str, str, str], text: str | None = None) -> list[dict[str, Any]]:
    """The PCE record with a US Core race extension of (sub-extension url, CDC code, display) codings and text."""
    record = F.pce_record(race=None)
    parts: list[dict[str, Any]] = [{"url": url, "valueCoding": {"system": CDC, "code": code, "display": display}}
                                   for url, code, display in subs]
    if text is not None:
        parts.append({"url": "text", "valueString": text})
    record[0]["extension"] = [{"url": F.RACE_URL, "extension": parts}]
    return record


@pytest.mark.parametrize(("code", "display", "black"), [
    ("2058-6", "African American", 1),  # CDC hierarchy: under 2054-5 Black or African American
    ("2065-1", "Nigerian", 1),          # under 2054-5
    ("2108-9", "European", 0),          # under 2106-3 White
])
def test_detailed_race_code_counts_as_its_omb_category(spec: Any, code: str, display: str, black: int) -> None:
    value = run(spec, with_race(("detailed", code, display), text=display)).values["black"]
    assert value.value == black and not value.defaulted
    assert value.note is None
    assert display in str(value.sources[0].original_value)


def test_detailed_race_of_another_category_uses_white_equations_and_says_which(spec: Any) -> None:
    value = run(spec, with_race(("detailed", "2034-7", "Chinese"), text="Chinese")).values["black"]
    assert value.value == 0 and value.defaulted  # Asian: the guideline's white equations, stated as an assumption
    assert value.sources[0].original_value == "Chinese (Asian)"
    assert value.note and value.note.startswith("Race Chinese (Asian): the white-race equations are used")


def test_omb_category_decides_when_a_detailed_code_conflicts(spec: Any) -> None:
    record = with_race(("ombCategory", "2106-3", "White"), ("detailed", "2058-6", "African American"),
                       text="White")
    value = run(spec, record).values["black"]
    assert value.value == 0 and not value.defaulted
    assert value.note == ("Race extension: African American (2058-6) is under Black or African American, which the "
                          "recorded OMB category (White) does not include; only the recorded OMB category codes "
                          "were used")
    consistent = with_race(("ombCategory", "2054-5", "Black or African American"),
                           ("detailed", "2058-6", "African American"), text="African American")
    value = run(spec, consistent).values["black"]
    assert value.value == 1 and not value.defaulted and value.note is None


@pytest.mark.parametrize("subs", [
    (("ombCategory", "2106-3", "White"), ("ombCategory", "2054-5", "Black or African American")),
    (("detailed", "2108-9", "European"), ("detailed", "2058-6", "African American")),
])
def test_several_races_any_black_means_the_african_american_equations(spec: Any, subs: Any) -> None:
    value = run(spec, with_race(*subs, text="White and Black")).values["black"]
    assert value.value == 1 and not value.defaulted


def test_race_written_only_as_text_is_not_read_and_the_assumption_says_so(spec: Any) -> None:
    value = run(spec, with_race(text="Black")).values["black"]
    assert value.value == 0 and value.defaulted
    assert value.sources[0].original_value == "as text 'Black', no race or ethnicity code"
    assert value.note and value.note.startswith("Race as text 'Black', no race or ethnicity code: the white-race")


# ---- whose record: another patient's resources are never used --------------------------------------------------
def naming(res: dict[str, Any], reference: str | None) -> dict[str, Any]:
    """The resource naming its patient by `reference` (None: no subject, as some patient-scoped searches send)."""
    out = copy.deepcopy(res)
    out.pop("subject")
    if reference is not None:
        out["subject"] = {"reference": reference}
    return out


def lisinopril_diabetes_and_high_cholesterol(reference: str | None) -> list[dict[str, Any]]:
    return [naming(F.med_request("314076", display="lisinopril 10 MG Oral Tablet"), reference),
            naming(F.condition("44054006", display="Diabetes mellitus type 2"), reference),
            naming(F.quantity_obs("2093-3", 300, "mg/dL", days=1), reference)]


# F.bundle gives each entry the fullUrl urn:uuid:<type>-<id>
@pytest.mark.parametrize("reference", ["Patient/p2", "https://ehr.example.org/fhir/Patient/p2",
                                       "Patient/p2/_history/4", "urn:uuid:patient-p2", "Group/ward-7"])
def test_another_patients_order_diagnosis_and_laboratory_value_are_never_used(spec: Any, reference: str) -> None:
    record = F.pce_record(gender="male") + [F.patient("p2", 60, "male")]
    result = run(spec, record + lisinopril_diabetes_and_high_cholesterol(reference))
    treated, diabetes = result.values["bp_treated"], result.values["diabetes"]
    assert (treated.value, treated.defaulted) == (0, True)  # the patient's own record holds neither
    assert (diabetes.value, diabetes.defaulted) == (0, True)
    assert result.values["total_cholesterol"].value == 213  # the patient's own, older value
    why = ("is about Group/ward-7, not the patient" if reference.startswith("Group/")
           else f"belongs to another patient ({reference})")
    for passed_over in (treated.sources, diabetes.sources):  # a defaulted value lists what was passed over
        assert [s.note for s in passed_over] == [why]
    only_theirs = run(spec, without("2093-3", record) + lisinopril_diabetes_and_high_cholesterol(reference)[2:])
    missing = only_theirs.missing["total_cholesterol"]
    assert missing.required and "1 result passed over" in missing.reason
    assert why in (missing.ignored[0].note or "")


@pytest.mark.parametrize("reference", ["Patient/p1", "https://ehr.example.org/fhir/Patient/p1",
                                       "Patient/p1/_history/2", "urn:uuid:patient-p1"])
def test_the_patients_own_resources_count_however_the_subject_is_written(spec: Any, reference: str) -> None:
    record = F.pce_record(gender="male") + [F.patient("p2", 60, "male")]
    values = run(spec, record + lisinopril_diabetes_and_high_cholesterol(reference)).values
    assert values["bp_treated"].value == 1 and not values["bp_treated"].defaulted
    assert values["diabetes"].value == 1 and not values["diabetes"].defaulted
    assert values["total_cholesterol"].value == 300


def test_resources_without_a_subject_are_read_as_r4_allows(spec: Any) -> None:
    # Observation.subject is optional in R4: the value in the patient's search counts. Condition.subject and
    # MedicationRequest.subject are required: such a diagnosis or order cannot be read, so it is not taken as "No"
    result = run(spec, F.pce_record(gender="male") + lisinopril_diabetes_and_high_cholesterol(None))
    assert result.values["total_cholesterol"].value == 300
    for name in ("bp_treated", "diabetes"):
        assert name not in result.values
        assert "cannot be read" in result.missing[name].reason
        assert "(subject: Field required)" in result.missing[name].reason


def test_resources_naming_their_patient_as_patient_are_sorted_too() -> None:
    mine = {"resourceType": "AllergyIntolerance", "id": "a1", "patient": {"reference": "Patient/p1"}}
    theirs = {"resourceType": "Immunization", "id": "i1", "patient": {"reference": "Patient/p2"}}
    index = ResourceIndex.from_prefetch({"all": F.bundle([F.patient("p1"), mine, theirs], "searchset")})
    assert index.elsewhere("p1") == {id(index.by_ref["Immunization/i1"]): "belongs to another patient (Patient/p2)"}
    assert index.elsewhere(None) == index.elsewhere("p1")  # no patientId: the record's Patient is the patient


# ---- present but unusable is missing, not the default ----------------------------------------------------------
def dstu2_diabetes() -> dict[str, Any]:
    """A diabetes diagnosis whose verificationStatus is written as text (DSTU2 style), not R4's CodeableConcept."""
    res = F.condition("44054006", display="Diabetes mellitus type 2")
    res["verificationStatus"] = "confirmed"
    return res


def test_an_unreadable_diabetes_diagnosis_makes_diabetes_unknown(spec: Any) -> None:
    bad = dstu2_diabetes()
    result = run(spec, F.pce_record(gender="male") + [bad])
    assert "diabetes" not in result.values
    missing = result.missing["diabetes"]
    assert missing.required
    assert missing.reason.startswith(f'Diabetes mellitus type 2 (Condition/{bad["id"]}) cannot be read, so "No" is '
                                     "not assumed; not valid FHIR R4 Condition (verificationStatus: the text "
                                     "'confirmed' where R4 needs a structured element)")
    assert [s.reference for s in missing.ignored] == [f"Condition/{bad['id']}"]
    # a readable diagnosis answers, whichever of the two is newer
    good = F.condition("44054006", display="Diabetes mellitus type 2")
    for record in ([bad, good], [good, bad]):
        value = run(spec, F.pce_record(gender="male") + record).values["diabetes"]
        assert value.value == 1 and not value.defaulted
        assert value.sources[0].reference == f"Condition/{good['id']}"


def test_a_diagnosis_that_does_not_count_still_leaves_the_default(spec: Any) -> None:
    refuted = dstu2_diabetes()
    refuted["verificationStatus"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                                 "code": "refuted"}]}
    value = run(spec, F.pce_record(gender="male") + [refuted]).values["diabetes"]
    assert value.value == 0 and value.defaulted


@pytest.mark.parametrize(("change", "problem"), [
    ({"medicationReference": "Medication/123"}, "medicationReference: the text 'Medication/123'"),
    ({"authoredOn": "last Tuesday"}, "date 'last Tuesday' is not a FHIR date"),
    ({"status": None}, "has no status"),
])
def test_an_unreadable_medication_order_makes_treatment_unknown(spec: Any, change: dict[str, Any],
                                                                problem: str) -> None:
    order = F.med_request("314076", display="lisinopril 10 MG Oral Tablet")
    if "medicationReference" in change:
        order.pop("medicationCodeableConcept")
    order.update({k: v for k, v in change.items() if v is not None})
    for key in (k for k, v in change.items() if v is None):
        order.pop(key)
    result = run(spec, F.pce_record(gender="male") + [order])
    assert "bp_treated" not in result.values
    missing = result.missing["bp_treated"]
    assert f"MedicationRequest/{order['id']}) cannot be read, so \"No\" is not assumed" in missing.reason
    assert problem in missing.reason
    assert f"MedicationRequest/{order['id']}" in [s.reference for s in missing.ignored]
    readable = F.med_request("197361", display="amlodipine 5 MG Oral Tablet")
    value = run(spec, F.pce_record(gender="male") + [order, readable]).values["bp_treated"]
    assert value.value == 1 and value.sources[0].reference == f"MedicationRequest/{readable['id']}"


def test_an_unreadable_heart_attack_leaves_established_ascvd_unknown(spec: Any) -> None:
    mi = F.condition("22298006", display="Myocardial infarction")
    mi["clinicalStatus"] = "active"
    result = run(spec, F.pce_record(gender="male") + [mi])
    assert "established_ascvd" not in result.values
    assert result.missing["established_ascvd"].reason.startswith(
        f'Myocardial infarction (Condition/{mi["id"]}) cannot be read, so "None on record" is not assumed')


def test_a_converted_value_is_quoted_as_written(spec: Any) -> None:
    """A note quotes the number the record holds: 5.125 mmol/L, not '5.13' (a value the record never said)."""
    record = without("2093-3", F.pce_record()) + [F.quantity_obs("14647-2", 5.125, "mmol/L")]
    assert run(spec, record).values["total_cholesterol"].sources[0].note == "converted from 5.125 mmol/L"
