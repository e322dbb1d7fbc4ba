"""The Pooled Cohort Equations from records as US EHRs write them (audit 62).

References: Goff 2013 (Table A worked example: a man of 55, total cholesterol 213 mg/dL, HDL 50, untreated systolic
120, non-smoker, no diabetes: 5.3 % white, printed from rounded intermediates (5.4 % exactly), and 6.1 % African
American); the 2018 AHA/ACC cholesterol guideline (clinical ASCVD: acute coronary syndrome, history of MI, stable or
unstable angina, coronary or other arterial revascularisation, stroke, TIA, or peripheral artery disease including
aortic aneurysm, all of atherosclerotic origin; statins stopped when a pregnancy is discovered)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import fhirfactory as F
from hook_calls import fire, module_app

SERVICE = "ascvd-pce-10y"
CM = "http://hl7.org/fhir/sid/icd-10-cm"
CPT = "http://www.ama-assn.org/go/cpt"
PCS = "http://www.cms.gov/Medicare/Coding/ICD10"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from module_app(tmp_path_factory.mktemp("pce-records"))


def table_a_man(race: str = "white") -> list[dict[str, Any]]:
    return F.pce_record(gender="male", race=race)


def is_secondary_prevention(card: dict[str, Any]) -> bool:
    return card["summary"].startswith("No ") and "clinical ASCVD" in card["summary"] + card["detail"]


def procedure(system: str, code: str, display: str) -> dict[str, Any]:
    return {"resourceType": "Procedure", "id": F._id("proc"), "status": "completed",
            "subject": {"reference": "Patient/p1"}, "performedDateTime": F.days_ago(1500),
            "code": {"coding": [{"system": system, "code": code, "display": display}]}}


def test_the_table_a_man_is_scored_as_published(api: Any) -> None:
    assert fire(api, SERVICE, table_a_man())["summary"].startswith("10-year ASCVD risk 5.4%")


@pytest.mark.parametrize("record", [
    F.condition("Z98.62", CM, display="Peripheral vascular angioplasty status"),
    F.condition("Z95.820", CM, display="Peripheral vascular angioplasty status with implants and grafts"),
    F.condition("I71.4", CM, display="Abdominal aortic aneurysm, without rupture"),
    F.condition("233985008", display="Abdominal aortic aneurysm"),
    procedure(CPT, "33533", "Coronary artery bypass, using arterial graft(s); single arterial graft"),
    procedure(CPT, "92928", "Percutaneous transcatheter placement of intracoronary stent(s)"),
    procedure(PCS, "021009W", "Bypass Coronary Artery, One Artery from Aorta with Autologous Venous Tissue"),
    procedure(PCS, "0270346", "Dilation of Coronary Artery, One Artery with Drug-eluting Intraluminal Device"),
], ids=["Z98.62", "Z95.820", "I71.4", "snomed-aaa", "cpt-cabg", "cpt-stent", "pcs-cabg", "pcs-pci"])
def test_clinical_ascvd_as_us_records_code_it_gives_no_primary_prevention_number(api: Any,
                                                                                   record: dict[str, Any]) -> None:
    """The Table A man with a peripheral angioplasty, an abdominal aortic aneurysm, or a coronary bypass or stent
    coded in CPT or ICD-10-PCS (the codes US claims and procedure lists carry) has clinical ASCVD: the card had given
    'borderline 5.4 %' and a statin discussion, as if for primary prevention."""
    card = fire(api, SERVICE, table_a_man() + [record])
    assert is_secondary_prevention(card), card["summary"]


def test_a_thoracic_aneurysm_or_a_dissection_is_not_taken_for_atherosclerotic_disease(api: Any) -> None:
    """Thoracic aortic aneurysms and dissections are mostly not atherosclerotic: not listed."""
    card = fire(api, SERVICE, table_a_man() + [F.condition("I71.2", CM, display="Thoracic aortic aneurysm")])
    assert card["summary"].startswith("10-year ASCVD risk 5.4%"), card["summary"]


def test_a_coronary_bypass_in_cpt_is_vascular_disease_for_cha2ds2_vasc(api: Any) -> None:
    card = fire(api, "cha2ds2-vasc", [F.patient("p1", 60, "male"), F.condition("49436004"),
                                      procedure(CPT, "33533", "Coronary artery bypass, arterial graft")])
    assert card["summary"].startswith("CHA2DS2-VASc 1 "), card["summary"]


@pytest.mark.parametrize("system", ["http://terminology.hl7.org/CodeSystem/v3-Race", "http://hl7.org/fhir/v3/Race",
                                    "urn:oid:2.16.840.1.113883.5.104"])
def test_black_race_coded_in_hl7s_race_code_system_gets_the_african_american_equations(api: Any,
                                                                                       system: str) -> None:
    """HL7's v3 Race code system holds the CDC codes (2054-5 Black or African American). Coded so, the card had
    used the white equations (5.4 %) while it listed the race as recorded; Goff 2013 Table A gives 6.1 %."""
    record = table_a_man("black")
    patient = record[0]
    for ext in patient["extension"]:
        for sub in ext.get("extension", []):
            if "valueCoding" in sub:
                sub["valueCoding"]["system"] = system
    card = fire(api, SERVICE, record)
    assert card["summary"].startswith("10-year ASCVD risk 6.1%"), card["summary"]


def _pregnancy(days: int, code: str = "77386006", system: str = F.SNOMED) -> dict[str, Any]:
    pregnancy = F.condition(code, system, display="Pregnancy")
    pregnancy["onsetDateTime"] = F.days_ago(days)
    return pregnancy


@pytest.mark.parametrize("service", [SERVICE, "prevent-base", "prevent-full"])
@pytest.mark.parametrize("pregnancy", [_pregnancy(100), _pregnancy(60, "Z33.1", CM),
                                       F.coded_obs("82810-3", "LA15173-0", days=20, answer_system=F.LOINC)],
                         ids=["snomed", "Z33.1", "pregnancy-status"])
def test_a_pregnant_woman_gets_no_risk_estimate_and_no_statin(api: Any, service: str,
                                                              pregnancy: dict[str, Any]) -> None:
    """A woman of 42 at intermediate risk (12.3 %) with a current pregnancy had been told 'a moderate-intensity statin
    is an option'. Her cholesterol and blood pressure are those of pregnancy, and statins are stopped when a
    pregnancy is discovered (2018 AHA/ACC, class I): no estimate, and the card says so."""
    record = F.pce_record(gender="female", race="black", age=42, tc=260, hdl=38, sbp=160, smoker=True)
    if service != SERVICE:
        record += [F.quantity_obs("98979-8", 90, "mL/min/{1.73_m2}"), F.quantity_obs("39156-5", 28, "kg/m2")]
    card = fire(api, service, record + [pregnancy])
    assert card["summary"].startswith("No "), card["summary"]
    assert "not for use in pregnancy" in card["summary"] + card["detail"], card["detail"]
    assert "Statins are not used in pregnancy" in card["detail"], card["detail"]
    assert not card.get("suggestions"), card.get("suggestions")


@pytest.mark.parametrize("service", [SERVICE, "egfr-ckd-epi-2021"])
def test_a_mans_card_says_nothing_of_pregnancy_checks_it_could_not_make(api: Any, service: str) -> None:
    """The Observation search cut short: a woman's card says the pregnancy status was not checked (the estimate
    stands; NEWS2 does the same), a man's says nothing of it (`only_if` in the manifest), and his details page does
    not list pregnancy checks at all."""
    from test_card_statements import details_page
    from test_diabetes_records import _fire_with

    for gender, said in (("female", True), ("male", False)):
        record = F.pce_record(gender=gender, age=50) + [F.quantity_obs("2160-0", 1.0, "mg/dL", days=20)]
        card = _fire_with(api, service, record, truncate=("Observation?",))
        assert ("Pregnancy status" in card["detail"]) is said, card["detail"]
        assert ("Pregnancy" in details_page(api, card)) is said


def test_a_pregnancy_coded_on_a_mans_record_does_not_refuse(api: Any) -> None:
    """A pregnancy code on a man's record is a data error, not a pregnancy: the rules are for women."""
    card = fire(api, SERVICE, table_a_man() + [_pregnancy(100)])
    assert card["summary"].startswith("10-year ASCVD risk 5.4%"), card["summary"]
    woman = F.pce_record(gender="female", race="white") + [_pregnancy(100)]
    assert fire(api, SERVICE, woman)["summary"].startswith("No "), "a woman's pregnancy refuses"
