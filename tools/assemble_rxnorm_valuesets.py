"""Assemble the shipped vsac-*-rxnorm value sets from published VSAC expansions (eCQM content repositories).

Why: drug classes must be recognised from RxNorm codes a real record carries, at any term type. The codes come
from value-set expansions NLM publishes for CMS measures; this script unions the RxNorm codes of several expansions
per class and records, for every code, which value set (OID, version, repository, commit, path) it came from.

Input: a folder of per-value-set JSON files, each {"name", "oid", "version", "repository", "path", "commit",
"rxnorm_versions_in_expansion", "codes": [{"system", "code", "display"}]} extracted from the ValueSet resources.
Usage: python tools/assemble_rxnorm_valuesets.py SOURCE_DIR fhir_mapping/valuesets
       python tools/assemble_rxnorm_valuesets.py --all-tty SOURCE_DIR fhir_mapping/valuesets
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SETS = {
    "vsac-antihypertensive-rxnorm": (
        "Antihypertensive medications from VSAC expansions (RxNorm)",
        ["antihypertensives", "pharmacologic_therapy_hypertension_2025", "pharmacologic_therapy_hypertension",
         "ace_inhibitor_arb_arni", "ace_inhibitor_arb_arni_ingredient", "beta_blocker_therapy",
         "beta_blocker_therapy_ingredient", "diuretics", "us_core_allergy_substance_rxnorm"],
    ),
    "vsac-statin-rxnorm": (
        "Statins from VSAC expansions (RxNorm)",
        ["statin_high_intensity", "statin_moderate_intensity", "statin_low_intensity", "statin_grouper",
         "statin_allergen", "us_core_allergy_substance_rxnorm"],
    ),
    "vsac-antidiabetic-rxnorm": (
        "Drugs used in diabetes from VSAC expansions (RxNorm)",
        ["diabetes_medications", "hypoglycemics_treatment_medications", "us_core_allergy_substance_rxnorm"],
    ),
    "vsac-anticoagulant-rxnorm": (
        "Anticoagulants from VSAC expansions (RxNorm)",
        ["anticoagulant_therapy", "anticoagulants_all_indications", "oral_anticoagulant_medications",
         "direct_thrombin_inhibitor", "oral_factor_xa_inhibitor", "warfarin", "us_core_allergy_substance_rxnorm"],
    ),
}


# RxNorm concepts at every term type (IN, PIN, MIN, BN, SCDC, SBDC, SCDF, SCDG, SCD, SBD, packs) from curated lists
# derived from NLM's RxNorm release files, for codes that the SCD/SBD-level eCQM value sets do not hold.
ALL_TTY = {
    "rxnorm-antihypertensive-all-tty": ("Antihypertensive RxNorm concepts at every term type",
                                        ["ssmith_antihtn_bpcl_wide", "ssmith_antihtn_rxcuis_2026", "medxn_bnin"]),
    "rxnorm-statin-all-tty": ("Statin RxNorm concepts at every term type", ["ssmith_antilipidemics", "medxn_bnin"]),
    "rxnorm-antidiabetic-all-tty": ("Antidiabetic RxNorm concepts at every term type",
                                    ["ssmith_antidiabetics", "medxn_bnin"]),
    "rxnorm-anticoagulant-all-tty": ("Anticoagulant RxNorm ingredient and brand concepts", ["medxn_bnin"]),
}


def main_all_tty(source: Path, out: Path) -> None:
    for set_id, (title, names) in ALL_TTY.items():
        codes: dict[str, dict[str, str]] = {}
        sources = []
        for name in names:
            doc = json.loads((source / f"{name}.json").read_text(encoding="utf-8"))
            sources.append(f"{doc['source_description'].split('.')[0]}: {doc['repository']}@{doc['commit']}:"
                           f"{doc['path']}")
            for entry in doc["codes"]:
                row = codes.setdefault(entry["code"], {"system": RXNORM, "code": entry["code"],
                                                       "display": entry.get("display", "")})
                if entry.get("tty"):
                    row["tty"] = entry["tty"]
        result = {
            "id": set_id, "title": title,
            "description": "RxNorm concepts of the class's ingredients at every term type, from curated lists built "
                           "from NLM RxNorm release files (sources below). Lists are broad; a drug class keeps only "
                           "codes whose RxNorm name names one of its ingredients (fhir_mapping/medications.py), so "
                           "shared files (MedXN's ingredient and brand names) serve several classes.",
            "source": sources, "retrieved": "2026-11-30",
            "license_note": "RxNorm codes and names are from NLM (public domain).",
            "match": "exact",
            "codes": sorted(codes.values(), key=lambda r: int(r["code"])),
        }
        (out / f"{set_id}.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(set_id, len(codes))


def main(source: Path, out: Path) -> None:
    for set_id, (title, names) in SETS.items():
        codes: dict[str, dict[str, str]] = {}
        sources = []
        for name in names:
            doc = json.loads((source / f"{name}.json").read_text(encoding="utf-8"))
            label = f"{doc['name']} ({doc.get('oid') or doc.get('oid_or_url')}, version {doc.get('version')})"
            sources.append(f"{label}: {doc['repository']}@{doc['commit']}:{doc['path']}; RxNorm "
                           f"{', '.join(doc.get('rxnorm_versions_in_expansion') or ['(not stated)'])}")
            for entry in doc["codes"]:
                if entry.get("system") != RXNORM:
                    continue
                row = codes.setdefault(entry["code"], {"system": RXNORM, "code": entry["code"],
                                                       "display": entry.get("display", ""), "from": []})
                row["from"].append(doc.get("oid") or name)
        result = {
            "id": set_id,
            "title": title,
            "description": "Union of the RxNorm codes of the published value-set expansions listed in `source`. "
                           "Allergy-substance lists are included only for their ingredient (IN) codes: a drug class "
                           "keeps just the codes whose RxNorm name names one of its ingredients "
                           "(fhir_mapping/medications.py).",
            "source": sources,
            "retrieved": "2026-11-30",
            "license_note": "RxNorm codes and names are from NLM (public domain); VSAC value-set expansions as "
                            "published for CMS eCQMs.",
            "match": "exact",
            "codes": sorted(codes.values(), key=lambda r: int(r["code"])),
        }
        (out / f"{set_id}.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(set_id, len(codes))


if __name__ == "__main__":
    if sys.argv[1] == "--all-tty":  # python tools/assemble_rxnorm_valuesets.py --all-tty SOURCE_DIR OUT_DIR
        main_all_tty(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        main(Path(sys.argv[1]), Path(sys.argv[2]))
