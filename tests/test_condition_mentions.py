"""A diagnosis named in words but coded outside the value sets is not read as "No", through HTTP.

Problem lists carry local codes (an EHR's own, or an interface terminology's), SNOMED CT concepts more specific than
a set's expansion, and entries with text alone. Before `mentions`, each of these was silently absent: a man of 60
with atrial fibrillation and "Chronic diastolic CHF" on his problem list under a local code was told "CHA2DS2-VASc
0: anticoagulation is not recommended" (Lip 2010 scores him 1 for C). Now such a record leaves the input unknown and
names it, and a text that is about something else (a family history, pulmonary hypertension, gestational diabetes,
"without heart failure") changes nothing. Expected scores are counted by hand from Lip 2010.
"""

from __future__ import annotations

from collections.abc import Iterator
import re
from typing import Any

import pytest

import fhirfactory as F
from hook_calls import fire, module_app

LOCAL = "urn:oid:1.2.840.114350.1.13.0.1.7.2.696871"  # an EHR's own problem-list codes (an Epic-style OID)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from module_app(tmp_path_factory.mktemp("condition-mentions"))


def local(text: str, code: str = "100234", *, clinical: str = "active", verification: str = "confirmed",
          pid: str = "p1", coded: bool = True) -> dict[str, Any]:
    """A problem-list entry under a local code (its display the clinician's words), or with text alone."""
    cond = F.condition(code, LOCAL, display=text, clinical=clinical, verification=verification, pid=pid)
    cond["code"] = {"coding": cond["code"]["coding"], "text": text} if coded else {"text": text}
    return cond


MAN_60_WITH_AF = [F.patient("p1", 60, "male"), F.condition("49436004", display="Atrial fibrillation")]


@pytest.mark.parametrize(("entry", "label", "named"), [
    (local("Chronic diastolic CHF"), "Heart failure", "Chronic diastolic CHF"),
    (local("HFpEF - stable", coded=False), "Heart failure", "HFpEF - stable"),
    (local("Heart failure with reduced ejection fraction, NYHA II"), "Heart failure", "NYHA II"),
    (local("HTN", coded=False), "Hypertension", "HTN"),
    (local("Essential hypertension, well controlled"), "Hypertension", "well controlled"),
    (local("DM2 on metformin"), "Diabetes", "DM2 on metformin"),
    (local("Type 2 diabetes mellitus without complications"), "Diabetes", "without complications"),
    (local("h/o CVA 2019, no residual deficit"), "Prior stroke", "CVA 2019"),
    (local("TIA", coded=False), "Prior stroke", "TIA"),
    (local("NSTEMI 2021"), "Vascular disease", "NSTEMI 2021"),
    (local("Peripheral artery disease with claudication"), "Vascular disease", "claudication"),
])
def test_a_diagnosis_coded_outside_the_sets_is_not_read_as_no(api: Any, entry: dict[str, Any], label: str,
                                                             named: str) -> None:
    """Each of these scores at least 1 by Lip 2010; "CHA2DS2-VASc 0" would be false. No score is given, and the
    card names the entry."""
    card = fire(api, "cha2ds2-vasc", MAN_60_WITH_AF + [entry])
    assert re.match(r"CHA2DS2-VASc \d", card["summary"]) is None, card["summary"]  # no number at all
    assert "not calculated" in card["summary"], card["summary"]
    assert label in card["detail"] and named in card["detail"], card["detail"]
    assert " names " in card["detail"] and "code is not recognised" in card["detail"]


@pytest.mark.parametrize("entry", [
    local("Family history of heart failure"),
    local("Pulmonary hypertension, WHO group 3"),
    local("Ocular hypertension OU"),
    local("Elevated blood-pressure reading, without diagnosis of hypertension"),
    local("Gestational diabetes (resolved after delivery)"),
    local("Diabetes insipidus"),
    local("Prediabetes"),
    local("Pre-diabetes"),
    local("Heat stroke 2015"),
    local("Screening for diabetes mellitus"),
    local("At risk for stroke"),
    local("Rule out CHF"),
    local("Atherosclerosis of coronary artery"),     # coronary disease without MI is not V (ESC 2020 asks for MI/PAD)
    local("Chronic diastolic CHF", verification="refuted"),
    local("Chronic diastolic CHF", verification="entered-in-error"),
    local("Chronic diastolic CHF", pid="someone-else"),
    local("Type 2 diabetes mellitus", clinical="resolved"),   # D does not count a resolved diabetes (see features)
])
def test_a_text_about_something_else_changes_nothing(api: Any, entry: dict[str, Any]) -> None:
    """Not the condition, not current by the input's own status rules, or not this patient's: the score stands (0
    for a man of 60 with atrial fibrillation and nothing else)."""
    card = fire(api, "cha2ds2-vasc", MAN_60_WITH_AF + [entry])
    assert card["summary"].startswith("CHA2DS2-VASc 0"), card["summary"]


def test_hypertensive_heart_disease_without_heart_failure_is_hypertension_not_heart_failure(api: Any) -> None:
    card = fire(api, "cha2ds2-vasc", MAN_60_WITH_AF + [local("Hypertensive heart disease without heart failure")])
    assert "not calculated" in card["summary"], card["summary"]
    assert "Hypertension:" in card["detail"] and "Heart failure / LV dysfunction:" not in card["detail"]


def test_a_recognised_code_still_scores_beside_an_unrecognised_one(api: Any) -> None:
    """Mentions are read only when no code matched: a coded heart failure scores C whatever other entries say."""
    card = fire(api, "cha2ds2-vasc", MAN_60_WITH_AF + [
        F.condition("42343007", display="Congestive heart failure"), local("CHF exacerbation 2024")])
    assert card["summary"].startswith("CHA2DS2-VASc 1"), card["summary"]


def test_the_pce_does_not_read_diabetes_written_in_words_as_no_diabetes(api: Any) -> None:
    """Goff 2013's equations double-count nothing, but diabetes moves a 55-year-old woman's risk from 2.1 % to about
    5 %: a card with the lower number would be false. The input is unknown, and the card names the entry."""
    card = fire(api, "ascvd-pce-10y", F.pce_record() + [local("T2DM, diet controlled")])
    assert "%" not in card["summary"], card["summary"]
    assert "T2DM, diet controlled" in card["detail"], card["detail"]


def test_prevent_does_not_score_coronary_disease_written_in_words(api: Any) -> None:
    """PREVENT is for adults without cardiovascular disease (Khan 2024); "CAD s/p stent" under a local code is
    clinical ASCVD, so no risk is given, and the refusal says it could not be confirmed, naming the entry."""
    profile = [F.patient("p1", 50, "female"), F.quantity_obs("2093-3", 200, "mg/dL"),
               F.quantity_obs("2085-9", 45, "mg/dL"), F.bp_panel(160), F.smoking(F.NEVER_SMOKER),
               F.condition("44054006"), F.med_request("314076", display="lisinopril 10 MG Oral Tablet"),
               F.quantity_obs("98979-8", 90, "mL/min/{1.73_m2}"), F.quantity_obs("39156-5", 35, "kg/m2")]
    card = fire(api, "prevent-base", profile + [local("Coronary artery disease s/p stent to LAD")])
    assert "%" not in card["summary"], card["summary"]
    assert "could not be confirmed" in card["detail"] and "Coronary artery disease s/p stent" in card["detail"]


def test_kfre_does_not_score_a_patient_whose_problem_list_says_esrd_in_words(api: Any) -> None:
    """KFRE estimates the risk of kidney failure; a patient already on haemodialysis has it (Tangri 2016)."""
    record = [F.patient("p1", 60, "male"), F.quantity_obs("98979-8", 40, "mL/min/{1.73_m2}"),
              F.quantity_obs("9318-7", 300, "mg/g")]
    card = fire(api, "kfre-4var", record + [local("ESRD on HD MWF")])
    assert "%" not in card["summary"], card["summary"]
    assert "ESRD on HD MWF" in card["detail"], card["detail"]
    prepared = fire(api, "kfre-4var", record + [local("CKD 4, dialysis access planning (AV fistula)")])
    assert "%" in prepared["summary"], prepared["summary"]  # preparing for dialysis is not being on it


def test_mentions_are_only_for_presence_features_with_a_default(tmp_path: Any) -> None:
    """A model author's `mentions` on a feature it cannot apply to stops start-up, naming the feature."""
    from fhir_mapping.spec import SpecError, load_feature_spec

    path = tmp_path / "features.yaml"
    path.write_text("""spec_version: 1
features:
  sbp:
    label: Systolic blood pressure
    unit: mm[Hg]
    sources: [{resource: Observation, codes: ["http://loinc.org|8480-6"]}]
    mentions: {title: hypertension, words: [hypertension]}
""")
    with pytest.raises(SpecError, match="sbp") as exc:
        load_feature_spec(path)
    assert "mentions" in str(exc.value)


KFRE_MAN_60 = [F.patient("p1", 60, "male"), F.quantity_obs("98979-8", 40, "mL/min/{1.73_m2}"),
               F.quantity_obs("9318-7", 300, "mg/g")]


def local_procedure(text: str, days: int) -> dict[str, Any]:
    return {"resourceType": "Procedure", "id": f"proc-{abs(hash(text))}", "status": "completed",
            "subject": {"reference": "Patient/p1"}, "performedDateTime": F.days_ago(days),
            "code": {"coding": [{"system": LOCAL, "code": "55501", "display": text}], "text": text}}


@pytest.mark.parametrize("record", [
    local("Living donor kidney transplant 2012", clinical="resolved"),   # a transplant is a fact at any status
    local_procedure("Living donor kidney transplant", 14 * 365),
    local("CKD 5 on HD via R IJ permcath"),
    local("Peritoneal dialysis - CCPD nightly"),
])
def test_kfre_reads_dialysis_or_a_transplant_written_in_words(api: Any, record: dict[str, Any]) -> None:
    card = fire(api, "kfre-4var", KFRE_MAN_60 + [record])
    assert "%" not in card["summary"] and "KFRE" in card["summary"], card["summary"]
    assert "could not be confirmed" in card["detail"], card["detail"]


@pytest.mark.parametrize("record", [
    local("Kidney donor (left donor nephrectomy 2010)"),
    local("Renal transplant evaluation - referred"),
    local("Hemodialysis", clinical="resolved"),                 # dialysis for AKI that ended: not on dialysis now
    local_procedure("Hemodialysis session (AKI)", 5 * 365),
    local("Extracorporeal albumin dialysis for liver failure"),
])
def test_kfre_scores_through_words_that_are_not_dialysis_or_a_transplant(api: Any, record: dict[str, Any]) -> None:
    card = fire(api, "kfre-4var", KFRE_MAN_60 + [record])
    assert "%" in card["summary"], card["summary"]


def test_no_egfr_is_estimated_when_the_problem_list_says_dialysis_in_words(api: Any) -> None:
    creatinine = [F.patient("p1", 60, "male"), F.quantity_obs("2160-0", 6.8, "mg/dL", days=2)]
    card = fire(api, "egfr-ckd-epi-2021", creatinine + [local("ESRD on HD MWF")])
    assert not card["summary"].startswith("eGFR"), card["summary"]
    assert "ESRD on HD MWF" in card["detail"], card["detail"]
    planned = fire(api, "egfr-ckd-epi-2021", creatinine + [local("Dialysis access planning")])
    assert planned["summary"].startswith("eGFR"), planned["summary"]


@pytest.mark.parametrize(("text", "names"), [
    ("Heart-failure, chronic", True),            # punctuation is a word boundary
    ("HEART FAILURE", True),                     # case-blind
    ("Prehypertension", False),                  # whole words only
    ("Hypertensive heart disease without heart failure", False),
    ("Family hx: heart failure (father)", True),  # 'hx' is not in the exceptions: the card asks, it does not guess
])
def test_words_are_matched_whole_and_blind_to_case_and_punctuation(text: str, names: bool) -> None:
    from fhir_mapping.mentions import MentionRule

    rule = MentionRule(["heart failure", "hypertension"], ["without heart failure", "family history"])
    assert rule.names(text) is names


# ---- the seventeenth audit: texts clinicians and coders write every day ----------------------------------------

ICD = "http://hl7.org/fhir/sid/icd-10-cm"


def icd(code: str, display: str) -> dict[str, Any]:
    """An ICD-10-CM problem with its tabular-list display and no text, as Oracle Health sends it."""
    return F.condition(code, ICD, display=display)


PREVENT_PROFILE = [F.patient("p1", 50, "female"), F.quantity_obs("2093-3", 200, "mg/dL"),
                   F.quantity_obs("2085-9", 45, "mg/dL"), F.bp_panel(160), F.smoking(F.NEVER_SMOKER),
                   F.condition("44054006"), F.med_request("314076", display="lisinopril 10 MG Oral Tablet"),
                   F.quantity_obs("98979-8", 90, "mL/min/{1.73_m2}"), F.quantity_obs("39156-5", 35, "kg/m2")]
KFRE_CKD5 = [F.patient("p1", 60, "male"), F.quantity_obs("98979-8", 14, "mL/min/{1.73_m2}"),
             F.quantity_obs("9318-7", 300, "mg/g")]
CREATININE = [F.patient("p1", 60, "male"), F.quantity_obs("2160-0", 3.9, "mg/dL", days=2)]


@pytest.mark.parametrize("entry", [
    icd("M48.062", "Spinal stenosis, lumbar region with neurogenic claudication"),   # a spine diagnosis, not PAD
    icd("M48.061", "Spinal stenosis, lumbar region without neurogenic claudication"),
    local("Jaw claudication - giant cell arteritis on prednisone"),
    icd("I87.30", "Chronic venous hypertension (idiopathic) without complications"),  # not systemic hypertension
    local("Intra-abdominal hypertension"),
    local("Portopulmonary hypertension"),
    local("Elevated BP without diagnosis of HTN"),
    local("Fam hx stroke - father age 58"),
    local("Atrial fibrillation, high stroke risk"),   # AF (already coded here), and no stroke
])
def test_cha2ds2_vasc_scores_through_texts_that_name_something_else(api: Any, entry: dict[str, Any]) -> None:
    card = fire(api, "cha2ds2-vasc", MAN_60_WITH_AF + [entry])
    assert card["summary"].startswith("CHA2DS2-VASc 0"), card["summary"]


@pytest.mark.parametrize("text", ["Systolic HF", "HF", "sCHF", "Ischemic cardiomyopathy, EF 25%",
                                  "Reduced EF (LVEF 30%)", "Chronic systolic heart failure, high risk for readmission",
                                  "hx MI", "Old MI", "s/p MI 2018", "PAD", "DM", "DM - on metformin", "HBP"])
def test_cha2ds2_vasc_reads_the_shorthand_of_a_component(api: Any, text: str) -> None:
    card = fire(api, "cha2ds2-vasc", MAN_60_WITH_AF + [local(text)])
    assert "not calculated" in card["summary"], card["summary"]


@pytest.mark.parametrize("text", ["PAF", "Paroxysmal AF on apixaban"])
def test_atrial_fibrillation_in_shorthand_is_not_no_atrial_fibrillation(api: Any, text: str) -> None:
    card = fire(api, "cha2ds2-vasc", [F.patient("p1", 70, "female"), local(text)])
    assert "could not be confirmed" in card["detail"], card["detail"]


@pytest.mark.parametrize(("entry", "scored"), [
    (local("CAD"), False), (local("s/p PCI to LAD 2019"), False), (local("ASCVD"), False), (local("IHD"), False),
    (local("ASHD"), False), (local("PAD"), False),
    (icd("M48.062", "Spinal stenosis, lumbar region with neurogenic claudication"), True),
    (local("Fam hx of diabetes (mother, T2DM)"), True),
])
def test_prevent_reads_coronary_shorthand_and_not_a_spine_or_a_relative(api: Any, entry: dict[str, Any],
                                                                        scored: bool) -> None:
    card = fire(api, "prevent-base", PREVENT_PROFILE + [entry])
    assert ("%" in card["summary"]) is scored, card["summary"]


@pytest.mark.parametrize(("text", "scored"), [
    ("T2 DM w/ peripheral neuropathy", False), ("DMT2, uncontrolled", False), ("Insulin dependent DM", False),
    ("Fam hx of diabetes (mother, T2DM)", True), ("Pre-DM", True),
])
def test_the_pce_reads_diabetes_shorthand_and_not_a_relatives_diabetes(api: Any, text: str, scored: bool) -> None:
    card = fire(api, "ascvd-pce-10y", F.pce_record() + [local(text)])
    assert ("%" in card["summary"]) is scored, card["summary"]


@pytest.mark.parametrize(("records", "scored"), [
    ([icd("I12.0", "Hypertensive chronic kidney disease with stage 5 chronic kidney disease or end stage renal "
                   "disease"), icd("N18.5", "Chronic kidney disease, stage 5")], True),   # coding rules require it
    ([local("CKD stage 4, not yet on dialysis")], True),
    ([local("CKD 5, non-dialysis")], True),
    ([local("CKD 5 - patient declines dialysis, conservative kidney management")], True),
    ([local("AKI requiring HD 2023 - off dialysis since renal recovery")], True),
    ([local("Awaiting kidney transplant")], True),
    ([local("Listed for deceased donor kidney transplant")], True),
    ([local("Living kidney transplant donor to sister, 2015")], True),
    ([local("Hemodialysis via left brachiocephalic AV fistula, MWF")], False),
    ([local("HD dependent")], False),
    ([local("CKD 5D")], False),
    ([local("s/p renal tx 2016")], False),
    ([local("DDRT 2019")], False),
    ([local("Renal allograft")], False),
])
def test_kfre_reads_kidney_replacement_shorthand_and_not_its_absence(api: Any, records: list[dict[str, Any]],
                                                                     scored: bool) -> None:
    card = fire(api, "kfre-4var", KFRE_CKD5 + records)
    assert ("%" in card["summary"]) is scored, card["summary"]


@pytest.mark.parametrize(("text", "estimated"), [
    ("CKD stage 4, not yet on dialysis", True), ("Refuses dialysis", True), ("Anemia in non-dialysis-dependent CKD", True),
    ("HD dependent", False), ("CKD 5D", False),
])
def test_the_egfr_reads_dialysis_shorthand_and_not_its_absence(api: Any, text: str, estimated: bool) -> None:
    card = fire(api, "egfr-ckd-epi-2021", CREATININE + [local(text)])
    assert card["summary"].startswith("eGFR") is estimated, card["summary"]


def test_a_long_text_is_quoted_around_the_words_that_name_the_condition(api: Any) -> None:
    """A sidebar line is clipped at 140 characters: quoting a long problem-list text from its start would cut off
    the very words that made the input unknown."""
    text = ("Followed in cardiology clinic since 2019 after admission for dyspnea and edema, echo with LVEF 30 %, "
            "now chronic systolic CHF, NYHA class II, on sacubitril-valsartan and carvedilol, euvolemic")
    card = fire(api, "cha2ds2-vasc", MAN_60_WITH_AF + [local(text)])
    line = next(line for line in card["detail"].splitlines() if "Heart failure" in line)
    assert "systolic CHF" in line, line
    assert line.split(": ", 1)[1].startswith('"…'), line


# ---- the eighteenth audit: the new abbreviations against oncology, neurology and nephrology lists ----------------

KFRE_CKD4 = [F.patient("p1", 60, "male"), F.quantity_obs("98979-8", 25, "mL/min/{1.73_m2}"),
             F.quantity_obs("9318-7", 300, "mg/g")]


@pytest.mark.parametrize(("text", "estimated"), [
    ("Metastatic melanoma, on PD-1 inhibitor (pembrolizumab)", True),   # a checkpoint inhibitor, not peritoneal dialysis
    ("Metastatic NSCLC on PD-L1 therapy", True),
    ("Parkinson's disease on PD medications", True),
    ("Primary CNS lymphoma on HD-MTX", True),                           # high-dose methotrexate, not haemodialysis
    ("ESRD on HD MWF, kidney transplant evaluation in progress", False),
    ("HD dependent, low albumin", False),
    ("On HD via R IJ tunneled catheter, placement 3/2024", False),
])
def test_the_egfr_tells_dialysis_from_what_shares_its_letters(api: Any, text: str, estimated: bool) -> None:
    card = fire(api, "egfr-ckd-epi-2021", CREATININE + [local(text)])
    assert card["summary"].startswith("eGFR") is estimated, card["summary"]


@pytest.mark.parametrize(("text", "scored"), [
    ("Metastatic melanoma, on PD-1 inhibitor (pembrolizumab)", True),
    ("Failed renal allograft, back on HD - re-transplant evaluation", False),
    ("CKD 5D, dry weight adjustment", False),
    ("CKD 5 on RRT", False), ("KTx 2015", False), ("s/p LRKT 2012", False),
])
def test_kfre_tells_kidney_replacement_from_what_shares_its_words(api: Any, text: str, scored: bool) -> None:
    card = fire(api, "kfre-4var", KFRE_CKD4 + [local(text)])
    assert ("%" in card["summary"]) is scored, card["summary"]


@pytest.mark.parametrize("text", [
    "Chronic HFrEF, at risk for readmission", "HF - increased risk of sudden death, ICD in place",
    "Type 2 DM on insulin, at risk for hypoglycemia",                    # a risk of something else hides nothing
    "NICM, EF 30%", "LVSD (EF 35%)", "HFrecEF (LVEF recovered to 55%)", "Reduced LVEF (35%)", "Depressed LVEF",
    "Decreased ejection fraction", "PVD - bilateral ABI 0.6", "PAOD, s/p fem-pop bypass",
])
def test_cha2ds2_vasc_reads_more_shorthand_and_other_risks(api: Any, text: str) -> None:
    card = fire(api, "cha2ds2-vasc", MAN_60_WITH_AF + [local(text)])
    assert "not calculated" in card["summary"], card["summary"]


@pytest.mark.parametrize("text", ["Paroxysmal AF, increased risk of stroke", "AF - at risk for stroke, on apixaban"])
def test_atrial_fibrillation_with_a_stroke_risk_is_atrial_fibrillation(api: Any, text: str) -> None:
    card = fire(api, "cha2ds2-vasc", [F.patient("p1", 70, "female"), local(text)])
    assert "no current atrial fibrillation is on the problem list" not in card["detail"], card["detail"]
    assert "could not be confirmed" in card["detail"], card["detail"]


@pytest.mark.parametrize(("text", "scored"), [
    ("SCLC s/p prophylactic cranial irradiation (PCI)", True), ("Small cell lung cancer, s/p chemoradiation and PCI", True),
    ("Chest pain, no CAD on cath 2021", True), ("No significant CAD on cath", True),
    ("Atypical chest pain, CAD excluded", True), ("Elevated Lp(a) - CAD risk", True),
    ("Hyperlipidemia, ASCVD 10-yr risk 12.3%", True),
    ("Heterozygous FH with premature CAD, s/p PCI 2020", False),         # FH here is familial hypercholesterolaemia
    ("FH (LDL 260) - CAD s/p CABG", False),
])
def test_prevent_tells_coronary_disease_from_its_absence_or_other_pcis(api: Any, text: str, scored: bool) -> None:
    card = fire(api, "prevent-base", PREVENT_PROFILE + [local(text)])
    assert ("%" in card["summary"]) is scored, card["summary"]


@pytest.mark.parametrize(("text", "scored"), [
    ("Myotonic dystrophy type 1 (DM1)", True), ("Amyopathic DM on hydroxychloroquine", True),
    ("DM/PM overlap, on methotrexate", True), ("Borderline DM", True), ("Prediabetes - high risk for DM", True),
])
def test_the_pce_does_not_read_other_dms_as_diabetes(api: Any, text: str, scored: bool) -> None:
    card = fire(api, "ascvd-pce-10y", F.pce_record() + [local(text)])
    assert ("%" in card["summary"]) is scored, card["summary"]


@pytest.mark.parametrize(("service", "base", "text"), [
    ("prevent-base", PREVENT_PROFILE, "CAD (s/p stent to LAD 2019)"),
    ("kfre-4var", KFRE_CKD4, "ESRD on HD (MWF)"),
    ("kfre-4var", KFRE_CKD4, "ESRD on HD; MWF"),
])
def test_a_refusal_quotes_the_records_words_whole(api: Any, service: str, base: list[dict[str, Any]],
                                                  text: str) -> None:
    """A refusal shows the first clause of why its check is unknown; a record's own '(' or ';' inside the quoted
    words must not cut it ('"CAD)' had been shown, the explanation lost)."""
    card = fire(api, service, base + [local(text)])
    assert f'"{text}" names' in card["detail"], card["detail"]


def test_the_details_page_says_to_check_and_code_the_record_not_to_record_a_value(api: Any) -> None:
    """The condition is on record, in words: what fixes it is coding the entry (or learning it is not the
    condition), never "record a value"."""
    card = fire(api, "cha2ds2-vasc", MAN_60_WITH_AF + [local("Chronic diastolic CHF")])
    url = next(link["url"] for link in card["links"] if link["label"].startswith("Full reasoning, sources"))
    page = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", api.client.get(url.removeprefix("http://testserver")).text))
    row = page.split("Heart failure / LV dysfunction", 2)[-1]
    assert "check whether it is heart failure or LV dysfunction, and code it if it is" in row, row[:600]
    assert "record a value" not in row.split("Prior stroke")[0], row[:600]


@pytest.mark.parametrize(("service", "base", "text", "scored"), [
    ("cha2ds2-vasc", MAN_60_WITH_AF, "At risk for stroke and TIA", True),     # a risk phrase sets the text aside
    ("cha2ds2-vasc", MAN_60_WITH_AF, "At risk for stroke/TIA", True),
    ("ascvd-pce-10y", F.pce_record(), "Hyperlipidemia without CAD or stroke", True),
    ("ascvd-pce-10y", F.pce_record(), "Pre-diabetes, at risk for DM2", True),
    ("ascvd-pce-10y", F.pce_record(), "Pre-diabetes progressed to T2DM", False),  # a disease term is cut, not the text
])
def test_an_exception_about_risk_or_absence_sets_the_whole_text_aside(api: Any, service: str,
                                                                      base: list[dict[str, Any]], text: str,
                                                                      scored: bool) -> None:
    card = fire(api, service, base + [local(text)])
    assert (re.search(r"CHA2DS2-VASc \d|%", card["summary"]) is not None) is scored, card["summary"]
