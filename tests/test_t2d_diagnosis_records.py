"""The T2D onset demonstrations are for adults without diabetes: records that show diabetes in ways other than an
E08–E14 code or one HbA1c must refuse the estimate, and a glucose tolerance result must not sit beside "Prediabetes:
No".

Reference: ADA Standards of Care in Diabetes 2025, section 2 (Table 2.1: FPG 126 mg/dL, 2-h OGTT glucose 200 mg/dL,
HbA1c 6.5 %; two abnormal results, of one test on two samples or of two tests, confirm; Table 2.5: 2-h glucose
140-199 mg/dL is impaired glucose tolerance, a prediabetes state). ICD-10-CM 2025 category O24."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import fhirfactory as F
from fhir_mapping.index import ResourceIndex
from fhir_mapping.timeline import extract_timeline, load_timeline_spec
from fhir_mapping.valuesets import ValueSetLibrary
from hook_calls import fire, module_app

ICD_CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD_WHO = "http://hl7.org/fhir/sid/icd-10"
ONSET, TIMELINE = "t2d-onset-5y", "t2d-timeline-5y"
BOTH = [ONSET, TIMELINE]
HBA1C, FPG, OGTT_MASS, OGTT_MOLAR = "4548-4", "1558-6", "1518-0", "14995-5"
TIMELINE_FOLDER = Path(__file__).resolve().parents[1] / "models" / TIMELINE / "1.0.0"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from module_app(tmp_path_factory.mktemp("t2d-diagnosis"))


def _record(service: str, *extra: dict[str, Any]) -> list[dict[str, Any]]:
    """A woman of 50 with every input either model reads and nothing that speaks of glucose."""
    if service == ONSET:
        return [F.patient("p1", 50, "female"), F.quantity_obs("39156-5", 31, "kg/m2"), F.bp_panel(130),
                F.quantity_obs("2085-9", 45, "mg/dL"), *extra]
    return [F.patient("p1", 50, "female"),
            *(F.quantity_obs("39156-5", 31, "kg/m2", days=d) for d in (30, 200, 400, 600)),
            *(F.bp_panel(130, days=d) for d in (30, 300)), *extra]


def _card(api: Any, service: str, *extra: dict[str, Any]) -> dict[str, Any]:
    return fire(api, service, _record(service, *extra))


def _estimated(card: dict[str, Any]) -> bool:
    return "5-year T2D risk" in card["summary"]


def _coded(code: str, system: str) -> dict[str, Any]:
    """A problem-list entry with its code alone (Coding.display is optional in FHIR R4)."""
    cond = F.condition(code, system=system)
    cond["code"]["coding"][0].pop("display", None)
    return cond


def _lab(code: str, value: float, unit: str, days: int) -> dict[str, Any]:
    return F.quantity_obs(code, value, unit, days=days)


# -- diabetes that predates a pregnancy, coded in chapter 15 ------------------------------------------------------

@pytest.mark.parametrize("service", BOTH)
@pytest.mark.parametrize(("code", "system"), [
    ("O24.113", ICD_CM),   # pre-existing type 2 diabetes mellitus, in pregnancy, third trimester
    ("O24.013", ICD_CM),   # pre-existing type 1, third trimester
    ("O24.313", ICD_CM),   # unspecified pre-existing, third trimester
    ("O24.82", ICD_CM),    # other pre-existing diabetes mellitus in childbirth
    ("O24.1", ICD_WHO),    # WHO: pre-existing diabetes mellitus, non-insulin-dependent
    ("O241", ICD_CM),      # the same code stored without its dot
])
def test_diabetes_coded_as_predating_a_pregnancy_refuses_the_onset_estimate(api: Any, service: str, code: str,
                                                                            system: str) -> None:
    """While a woman is pregnant her diabetes is coded in O24, and O24.0, .1, .3 and .8 say it came before the
    pregnancy. She has diabetes: no estimate of the chance of getting it."""
    card = _card(api, service, _coded(code, system))
    assert not _estimated(card), card["summary"]
    assert "record shows diabetes" in card["detail"] + card["summary"], card


@pytest.mark.parametrize(("code", "system"), [("O24.419", ICD_CM), ("O24.4", ICD_WHO), ("O24.93", ICD_CM)])
def test_gestational_or_unspecified_diabetes_in_pregnancy_is_not_read_as_diabetes(api: Any, code: str,
                                                                                   system: str) -> None:
    """Gestational diabetes (O24.4) is not diabetes before or after the pregnancy, and O24.9 does not say the
    diabetes predates it: neither is listed as diabetes (an estimate is still given)."""
    card = _card(api, ONSET, _coded(code, system))
    assert _estimated(card), card["summary"]


# -- 75 g oral glucose tolerance test ------------------------------------------------------------------------------

@pytest.mark.parametrize("service", BOTH)
@pytest.mark.parametrize(("code", "value", "unit"), [(OGTT_MASS, 230, "mg/dL"), (OGTT_MASS, 200, "mg/dL"),
                                                     (OGTT_MOLAR, 11.1, "mmol/L")])
def test_a_2_hour_ogtt_glucose_in_the_diabetes_range_refuses_the_onset_estimate(api: Any, service: str, code: str,
                                                                                value: float, unit: str) -> None:
    """A 2-hour glucose of 200 mg/dL (11.1 mmol/L) or more two months ago is in the diabetes range."""
    card = _card(api, service, _lab(code, value, unit, 60))
    assert not _estimated(card), card["summary"]
    assert "2-hour OGTT glucose" in card["detail"] + card["summary"], card


@pytest.mark.parametrize(("code", "value", "unit"), [(OGTT_MASS, 160, "mg/dL"), (OGTT_MASS, 140, "mg/dL"),
                                                     (OGTT_MOLAR, 7.8, "mmol/L"), (OGTT_MASS, 199, "mg/dL")])
def test_a_2_hour_ogtt_glucose_of_140_to_199_is_prediabetes(api: Any, code: str, value: float, unit: str) -> None:
    """Impaired glucose tolerance is prediabetes: the card gives its estimate with prediabetes, never "No"."""
    card = _card(api, ONSET, _lab(code, value, unit, 60))
    assert _estimated(card), card["summary"]
    assert "Prediabetes: **Yes**" in card["detail"], card["detail"]


@pytest.mark.parametrize(("value", "days"), [(139, 60), (250, 500)])
def test_a_normal_or_old_ogtt_leaves_the_estimate_and_prediabetes_as_before(api: Any, value: float,
                                                                            days: int) -> None:
    """139 mg/dL is normal glucose tolerance; one result in the diabetes range more than a year ago confirms nothing
    alone (and is not this year's prediabetes)."""
    card = _card(api, ONSET, _lab(OGTT_MASS, value, "mg/dL", days))
    assert _estimated(card), card["summary"]
    assert "Prediabetes: No" in card["detail"], card["detail"]


# -- two results in the diabetes range, of one test or of two -----------------------------------------------------

@pytest.mark.parametrize("service", BOTH)
@pytest.mark.parametrize("labs", [
    # two fasting glucoses 16 and 15 months ago, then a normal one: confirmed, now controlled
    [(FPG, 140, "mg/dL", 500), (FPG, 150, "mg/dL", 460), (FPG, 95, "mg/dL", 60)],
    # an HbA1c and a fasting glucose over a year ago, then a lower HbA1c
    [(HBA1C, 7.0, "%", 500), (FPG, 140, "mg/dL", 480), (HBA1C, 5.9, "%", 60)],
    # a fasting glucose in mmol/L and a 2-hour OGTT glucose
    [(FPG, 7.4, "mmol/L", 700), (OGTT_MASS, 215, "mg/dL", 690)],
], ids=["two-fasting", "hba1c-and-fasting", "fasting-and-ogtt"])
def test_two_results_in_the_diabetes_range_over_a_year_ago_refuse_the_onset_estimate(
        api: Any, service: str, labs: list[tuple[str, float, str, int]]) -> None:
    """Two abnormal results confirm diabetes whenever they were taken, whether of one test or of two."""
    card = _card(api, service, *(_lab(*lab) for lab in labs))
    assert not _estimated(card), card["summary"]
    assert "two results in the diabetes range" in card["detail"] + card["summary"], card


@pytest.mark.parametrize("service", BOTH)
def test_an_hba1c_and_a_fasting_glucose_of_one_sample_are_two_results(api: Any, service: str) -> None:
    """ADA: two different tests above their thresholds confirm the diagnosis even from one sample. An HbA1c of 7.1 %
    and a fasting glucose of 131 mg/dL charted for the same moment 18 months ago are two results, not one specimen."""
    a1c, fpg = _lab(HBA1C, 7.1, "%", 540), _lab(FPG, 131, "mg/dL", 540)
    fpg["effectiveDateTime"] = a1c["effectiveDateTime"]
    card = _card(api, service, a1c, fpg)
    assert not _estimated(card), card["summary"]


@pytest.mark.parametrize("service", BOTH)
def test_one_hba1c_sent_in_percent_and_mmol_per_mol_is_still_one_result(api: Any, service: str) -> None:
    """The same HbA1c in NGSP % and IFCC mmol/mol (7.0 % is 53 mmol/mol) at one moment is one specimen of one
    test: with nothing else in the diabetes range it confirms nothing, and the estimate stands."""
    pct, ifcc = _lab(HBA1C, 7.0, "%", 540), _lab("59261-8", 53, "mmol/mol", 540)
    ifcc["effectiveDateTime"] = pct["effectiveDateTime"]
    card = _card(api, service, pct, ifcc)
    assert "two results in the diabetes range" not in card["summary"] + card["detail"], card["detail"]
    if service == ONSET:
        assert _estimated(card), card["summary"]
    else:  # the timeline model never saw an HbA1c of 6.5 % or more in training: it says it cannot read it
        assert "cannot read 1 event of HbA1c results" in card["summary"], card["summary"]


# -- the timeline model: one result sent twice --------------------------------------------------------------------

def test_one_hba1c_sent_under_two_ids_is_one_timeline_event(api: Any) -> None:
    """A result that reaches the record through two interfaces arrives twice, under two ids, with the same code, time
    and value. It is one result: the timeline estimate and the card's event count are those of the single result."""
    single = _lab(HBA1C, 6.2, "%", 50)
    copy_of_it = dict(single, id="hba1c-second-interface")
    once = _card(api, TIMELINE, single)
    twice = _card(api, TIMELINE, single, copy_of_it)
    assert _estimated(once) and _estimated(twice), (once["summary"], twice["summary"])
    assert twice["summary"] == once["summary"]
    assert "HbA1c results (2 events)" not in twice["detail"], twice["detail"]


def test_two_hba1c_results_of_different_moments_stay_two_events() -> None:
    """The same value measured on two days is two results: only a copy of one moment is dropped."""
    spec = load_timeline_spec(TIMELINE_FOLDER / "timeline.yaml", ValueSetLibrary([TIMELINE_FOLDER / "valuesets"]))
    first, second = _lab(HBA1C, 6.2, "%", 50), _lab(HBA1C, 6.2, "%", 90)
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": r} for r in (F.patient("p1", 50, "female"), first, second, dict(first, id="copy"))]}
    index = ResourceIndex.from_prefetch({"record": bundle}, spec.resource_types())
    timeline = extract_timeline(spec, index, at=datetime.now(UTC), patient_id="p1")
    times = [e.time for e in timeline.events if e.code == f"LOINC/{HBA1C}"]
    assert len(times) == 2 and len(set(times)) == 2, timeline.events
    assert timeline.passed_over["Observation: the same event sent again"] == 1, timeline.passed_over


# -- a glucose-lowering drug recognised but not counted ----------------------------------------------------------

def _details_text(api: Any, card: dict[str, Any]) -> str:
    url = next(link["url"] for link in card["links"] if "/details/" in link["url"])
    page = api.client.get(url.replace("http://testserver", ""))
    assert page.status_code == 200, page.text
    return " ".join(re.sub(r"<[^>]+>", " ", html.unescape(page.text)).split())


@pytest.mark.parametrize(("rxnorm", "display", "named"), [
    ("1991306", "semaglutide 0.25 MG/DOSE Pen Injector [Ozempic]", "semaglutide"),
    ("1545658", "empagliflozin 10 MG Oral Tablet", "empagliflozin"),
])
def test_a_glucose_lowering_drug_not_counted_is_named_beside_the_diabetes_check(api: Any, rxnorm: str, display: str,
                                                                               named: str) -> None:
    """A GLP-1 agonist or an SGLT2 inhibitor is prescribed without diabetes too, so it does not show diabetes. The
    details page must not then say no glucose-lowering drug was found: it names the order and why it was not
    counted."""
    card = _card(api, ONSET, F.med_request(rxnorm, display=display))
    assert _estimated(card), card["summary"]
    text = _details_text(api, card)
    check = text[text.index("Diabetes already diagnosed"):][:400]
    assert "recognised as glucose-lowering" not in check, check
    assert named in check.lower() and "not counted" in check, check


# -- a drug ordered for prediabetes records prediabetes ----------------------------------------------------------

METFORMIN = ("861007", "metformin hydrochloride 500 MG Oral Tablet")
SNOMED = "http://snomed.info/sct"


def _metformin_for(*, code: tuple[str, str] | None = None, condition: dict[str, Any] | None = None,
                   status: str = "active", statement: bool = False) -> list[dict[str, Any]]:
    """A metformin order (or statement) whose reason is a code, or a Condition it references."""
    order = F.med_request(METFORMIN[0], display=METFORMIN[1], status=status)
    if statement:
        order["resourceType"] = "MedicationStatement"
        order.pop("intent")
        order["effectiveDateTime"] = order.pop("authoredOn")
    if code is not None:
        order["reasonCode"] = [{"coding": [{"system": code[0], "code": code[1]}]}]
    if condition is not None:
        order["reasonReference"] = [{"reference": f"Condition/{condition['id']}"}]
        return [order, condition]
    return [order]


@pytest.mark.parametrize("records", [
    _metformin_for(code=(ICD_CM, "R73.03")),                                # prediabetes
    _metformin_for(code=(ICD_CM, "R7302")),                                 # impaired glucose tolerance, no dot
    _metformin_for(code=(SNOMED, "714628002")),
    _metformin_for(code=(ICD_CM, "R73.01"), statement=True),               # a statement: 'taking it for IFG'
], ids=["order-R73.03", "order-R7302", "order-snomed", "statement-R73.01"])
def test_metformin_given_for_prediabetes_records_prediabetes(api: Any, records: list[dict[str, Any]]) -> None:
    """Metformin is used to delay type 2 diabetes in prediabetes (ADA 2025, section 3). Its order says why it was
    given: that is a record of prediabetes, so the card never says "Prediabetes: No" beside it."""
    card = _card(api, ONSET, *records)
    assert _estimated(card), card["summary"]
    assert "Prediabetes: **Yes**" in card["detail"], card["detail"]


def test_a_drug_ordered_for_a_prediabetes_condition_that_was_refuted_records_nothing(api: Any) -> None:
    """A reason that names a diagnosis later refuted gives no reason: the order records no prediabetes, and
    metformin given for no stated reason is treatment of diabetes, so no estimate is given."""
    refuted = _coded("R73.03", ICD_CM)
    refuted["verificationStatus"]["coding"][0]["code"] = "refuted"
    card = _card(api, ONSET, *_metformin_for(condition=refuted))
    assert not _estimated(card) and "record shows diabetes" in card["detail"], card["detail"]


@pytest.mark.parametrize("status", ["stopped", "completed", "entered-in-error"])
def test_a_prediabetes_order_that_is_no_longer_current_records_nothing(api: Any, status: str) -> None:
    """Only a current order is read, as for the drug classes: a stopped or completed one says nothing about now."""
    card = _card(api, ONSET, *_metformin_for(code=(ICD_CM, "R73.03"), status=status))
    assert "Prediabetes: No" in card["detail"], card["detail"]


def test_metformin_for_prediabetes_referenced_condition_is_read(api: Any) -> None:
    """The reason may be the Condition a reasonReference names (here coded in SNOMED CT, off the problem list:
    its clinical status is resolved, which the problem-list source does not read)."""
    cond = _coded("714628002", SNOMED)
    cond["clinicalStatus"]["coding"][0]["code"] = "resolved"
    card = _card(api, ONSET, *_metformin_for(condition=cond))
    assert "Prediabetes: **Yes**" in card["detail"], card["detail"]


# -- BMI from a weight and a height ----------------------------------------------------------------------------

def _without_bmi(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [F.patient("p1", 50, "female"), F.bp_panel(130), F.quantity_obs("2085-9", 45, "mg/dL"), *extra]


@pytest.mark.parametrize(("weight", "height"), [((95, "kg"), (170, "cm")), ((209.4, "[lb_av]"), (66.93, "[in_i]"))],
                         ids=["metric", "us-customary"])
def test_bmi_is_worked_out_from_a_weight_and_a_height(api: Any, weight: tuple[float, str],
                                                      height: tuple[float, str]) -> None:
    """95 kg and 170 cm (or 209.4 lb and 66.93 in, the same person) is a BMI of 95 / 1.70² = 32.87 kg/m² (WHO). A
    record holding them and no BMI gets the estimate the recorded BMI of 32.9 gives."""
    derived = fire(api, ONSET, _without_bmi(F.quantity_obs("29463-7", *weight), F.quantity_obs("8302-2", *height)))
    recorded = fire(api, ONSET, _without_bmi(F.quantity_obs("39156-5", 32.9, "kg/m2")))
    assert _estimated(derived), derived["summary"]
    assert derived["summary"] == recorded["summary"], (derived["summary"], recorded["summary"])


def test_a_weight_without_a_height_leaves_bmi_missing(api: Any) -> None:
    """A weight alone gives no BMI: the card asks for one, as before."""
    card = fire(api, ONSET, _without_bmi(F.quantity_obs("29463-7", 95, "kg")))
    assert not _estimated(card) and "BMI" in card["detail"], card["detail"]


# -- a result in the diabetes range that is not yet final ---------------------------------------------------------

@pytest.mark.parametrize("service", BOTH)
@pytest.mark.parametrize(("code", "value", "unit", "days"), [
    (HBA1C, 8.4, "%", 10), (FPG, 160, "mg/dL", 10), (OGTT_MASS, 240, "mg/dL", 10)])
def test_a_preliminary_result_in_the_diabetes_range_leaves_diabetes_unknown(api: Any, service: str, code: str,
                                                                            value: float, unit: str,
                                                                            days: int) -> None:
    """FHIR R4 Observation.status 'preliminary' is a result that exists but may be incomplete or unverified. An
    HbA1c of 8.4 % reported so cannot be ignored for a model of people without diabetes: diabetes cannot be ruled
    out, and the card says the result is preliminary."""
    result = F.quantity_obs(code, value, unit, days=days, status="preliminary")
    card = _card(api, service, result)
    assert not _estimated(card), card["summary"]
    assert "cannot be ruled out" in card["detail"] and "preliminary" in card["detail"], card["detail"]


@pytest.mark.parametrize(("status", "value"), [("preliminary", 5.2), ("cancelled", 8.4), ("registered", 8.4)])
def test_a_normal_preliminary_result_or_a_cancelled_one_changes_nothing(api: Any, status: str, value: float) -> None:
    """A preliminary HbA1c of 5.2 % is below the diabetes range: it is passed over until it is final, as before. A
    cancelled or registered (not yet measured) one is no result at all."""
    card = _card(api, ONSET, F.quantity_obs(HBA1C, value, "%", days=10, status=status))
    assert _estimated(card), card["summary"]


def test_a_preliminary_result_beside_a_final_one_makes_the_confirmation_unknown(api: Any) -> None:
    """A final fasting glucose of 150 mg/dL 15 months ago and a preliminary one of 140 mg/dL 16 months ago: one or
    two results in the diabetes range, so diabetes cannot be ruled out (and no estimate is given)."""
    card = _card(api, ONSET, F.quantity_obs(FPG, 140, "mg/dL", days=500, status="preliminary"),
                 _lab(FPG, 150, "mg/dL", 460))
    assert not _estimated(card), card["summary"]
    assert "cannot be ruled out" in card["detail"], card["detail"]


def test_a_newer_result_that_cannot_be_read_does_not_hide_an_older_record_of_prediabetes(api: Any) -> None:
    """Prediabetes coded on the problem list two years ago and an HbA1c last week reported as '<6.0 %' (below the
    diabetes range, but it may or may not be 5.7 % or more): the code shows prediabetes whatever that result is, so
    the card says "Yes" (it had said prediabetes was unknown and gave no estimate)."""
    coded = _coded("R73.03", ICD_CM)
    coded["onsetDateTime"] = "2024-06-01"
    bound = _lab(HBA1C, 6.0, "%", 7)
    bound["valueQuantity"]["comparator"] = "<"
    card = _card(api, ONSET, coded, bound)
    assert _estimated(card), card["summary"]
    assert "Prediabetes: **Yes**" in card["detail"], card["detail"]


@pytest.mark.parametrize(("labs", "shown"), [([], "None"), ([(FPG, 140, "mg/dL", 500)], "One")])
def test_the_details_page_says_how_many_results_in_the_diabetes_range_are_on_record(
        api: Any, labs: list[tuple[str, float, str, int]], shown: str) -> None:
    """The check of results in the diabetes range is a count: the details page says "None" or "One" (it had shown a
    bare "0"), beside the estimate that needs fewer than two."""
    card = _card(api, ONSET, *(_lab(*lab) for lab in labs))
    assert _estimated(card), card["summary"]
    text = _details_text(api, card)
    assert f"Results in the diabetes range on record {shown} " in text, text[text.find("Results in the"):][:200]


# -- audit 64 -------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", BOTH)
@pytest.mark.parametrize(("code", "value", "estimated"), [("2345-7", 285, False), ("2339-0", 210, False),
                                                          ("2345-7", 180, True)])
def test_a_random_glucose_of_200_or_more_gives_no_onset_estimate(api: Any, service: str, code: str, value: float,
                                                                 estimated: bool) -> None:
    """ADA 2025 Table 2.1, criterion 4: a random plasma glucose of 200 mg/dL or more with classic symptoms is
    diabetes, and without them a result in the diabetes range to confirm. A glucose of 285 five days ago had been
    given an onset estimate beside 'Prediabetes: No'. 180 is not in the diabetes range."""
    card = _card(api, service, F.quantity_obs(code, value, "mg/dL", days=5))
    assert _estimated(card) is estimated, card["summary"]
    if not estimated:
        assert "random glucose of 200 mg/dL" in card["detail"], card["detail"]


@pytest.mark.parametrize("service", BOTH)
@pytest.mark.parametrize("verification", ["provisional", "differential"])
def test_a_suspected_diabetes_diagnosis_does_not_rule_diabetes_out(api: Any, service: str, verification: str) -> None:
    """E11.9 recorded as provisional (or in a differential): diabetes is suspected, so an onset estimate cannot
    rest on 'Diabetes already diagnosed: No' as it had. Confirmed, it refuses as diagnosed; refuted, it is no
    diabetes."""
    suspected = F.condition("E11.9", ICD_CM, verification=verification, display="Type 2 diabetes mellitus")
    card = _card(api, service, suspected)
    assert not _estimated(card), card["summary"]
    assert "diabetes cannot be ruled out" in card["summary"] + card["detail"], card["detail"]
    refuted = F.condition("E11.9", ICD_CM, verification="refuted", display="Type 2 diabetes mellitus")
    assert _estimated(_card(api, service, refuted))


@pytest.mark.parametrize("service", BOTH)
def test_a_pregnant_woman_gets_no_onset_estimate_and_her_ogtt_is_not_called_prediabetes(api: Any,
                                                                                       service: str) -> None:
    """A woman of 30, pregnant, with a 2-hour OGTT glucose of 160 mg/dL: in pregnancy a 75 g OGTT is read against
    the gestational diabetes thresholds (ADA 2025: 153 mg/dL at 2 hours), not as prediabetes. The card had said
    'Prediabetes: Yes' and given an estimate. A man with a pregnancy code (a data error) is not refused."""
    pregnancy = F.condition("77386006", display="Pregnancy")
    pregnancy["onsetDateTime"] = F.days_ago(120)
    ogtt = F.quantity_obs("1518-0", 160, "mg/dL", days=10)
    record = [F.patient("p1", 30, "female"), *_record(service)[1:], pregnancy, ogtt]
    card = fire(api, service, record)
    assert not _estimated(card) and "Prediabetes: **Yes**" not in card["detail"], card["detail"]
    assert "gestational diabetes" in card["detail"], card["detail"]
    man = [F.patient("p1", 30, "male"), *_record(service)[1:], pregnancy]
    assert _estimated(fire(api, service, man))


def test_the_timeline_reads_a_problem_coded_in_snomed_ct_and_icd_10_cm_by_its_snomed_code(api: Any) -> None:
    """Prediabetes coded SNOMED CT 714628002 and ICD-10-CM R73.03 (US Core's usual shape) was read by its ICD-10-CM
    code, which the model never saw: 'read as unknown', and the card said prediabetes had lowered the risk. It is
    read as SNOMED CT alone is."""
    snomed = F.condition("714628002", display="Prediabetes")
    both = F.condition("714628002", display="Prediabetes")
    both["code"]["coding"].insert(0, {"system": ICD_CM, "code": "R73.03", "display": "Prediabetes"})
    alone, dual = _card(api, TIMELINE, snomed), _card(api, TIMELINE, both)
    assert _estimated(alone) and dual["summary"] == alone["summary"], (alone["summary"], dual["summary"])
    assert "read as unknown" not in dual["detail"], dual["detail"]


@pytest.mark.parametrize(("record", "group"), [
    (F.condition("38341003", display="Hypertensive disorder"), "Hypertension diagnoses"),
    (F.quantity_obs("2339-0", 115, "mg/dL", days=30), "Blood glucose results"),
], ids=["hypertension-38341003", "glucose-115"])
def test_a_timeline_event_of_a_concept_the_model_cannot_read_gives_no_estimate(api: Any, record: dict[str, Any],
                                                                               group: str) -> None:
    """A hypertension code and a glucose band (100-125 mg/dL) the model never saw in training were read as the
    unknown token, and the card said 'Hypertension diagnoses (1 event) lowered it' or gave a glucose of 115 a lower
    estimate than 90. An event of a concept the model is built on that it cannot read gives no estimate, naming
    the concept."""
    card = _card(api, TIMELINE, record)
    assert not _estimated(card), card["summary"]
    assert f"cannot read 1 event of {group}" in card["summary"], card["summary"]
    assert "lowered it" not in card["detail"]
