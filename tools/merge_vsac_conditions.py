"""Widen the shipped SNOMED CT condition value sets with the codes of published VSAC expansions.

Why: a record codes a diagnosis at whatever depth its clinician picked ("Type II diabetes mellitus without
complication", "Paroxysmal atrial fibrillation", "Cerebral infarction"), not as the parent concept our first lists
held, and the service cannot walk the SNOMED CT hierarchy at run time. The eCQM value sets NLM publishes (VSAC) are
expanded lists of those descendants. This script unions their SNOMED CT codes into our sets, leaving out, by code,
the members that do not mean what the feature means (for example pulmonary or portal hypertension in a hypertension
set), and records every source (OID, title, version, repository, commit, path) in the set's `source`.

Input: a folder of VSAC ValueSet resources named `<oid>.json`, taken from an eCQM content repository
(`input/vocabulary/valueset/external/valueset-<oid>.json`). Usage:
    python tools/merge_vsac_conditions.py SOURCE_DIR fhir_mapping/valuesets REPOSITORY COMMIT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SNOMED = "http://snomed.info/sct"

# our set id -> the VSAC value sets (OIDs) whose SNOMED CT members it takes, and the members left out (code: why)
RECIPES: dict[str, tuple[list[str], dict[str, str]]] = {
    "diabetes-conditions": (["2.16.840.1.113883.3.464.1003.103.12.1001"], {}),
    "atrial-fibrillation": (["2.16.840.1.113883.3.117.1.7.1.202"], {}),
    "heart-failure": (["2.16.840.1.113883.3.526.3.376"], {
        "410431009": "cardiorespiratory failure: not heart failure as such",
        "15964701000119109": "acute cor pulmonale from a pulmonary saddle embolus: acute right heart strain",
        "44088000": "low cardiac output syndrome: a transient state, often after cardiac surgery",
        "1204462004": "left ventricular failure with sepsis: a transient septic cardiomyopathy",
    }),
    "hypertension": (["2.16.840.1.113883.3.464.1003.104.12.1011", "2.16.840.1.113883.3.600.263"], {
        "10964002": "pulmonary hypertension", "233815004": "pulmonary hypertension of the newborn",
        "233941006": "pulmonary hypertension", "233942004": "pulmonary hypertension",
        "233943009": "pulmonary hypertension", "233944003": "pulmonary hypertension",
        "233945002": "pulmonary hypertension", "233946001": "pulmonary hypertension",
        "234072000": "venous hypertension", "234073005": "venous hypertension", "234075003": "venous hypertension",
        "423674003": "venous hypertension", "34742003": "portal hypertension", "4210003": "ocular hypertension",
        "68267002": "intracranial hypertension", "237279007": "transient hypertension of pregnancy",
        "288250001": "maternal hypertension: may be pregnancy-induced", "398254007": "pre-eclampsia",
        "46764007": "pre-eclampsia", "48194001": "pregnancy-induced hypertension",
        "52698002": "transient hypertension", "84094009": "rebound hypertension (drug withdrawal)",
        "429198000": "exertional hypertension: a response to exercise", "23130000": "paroxysmal hypertension",
    }),
    "stroke-tia-thromboembolism": (["2.16.840.1.113883.3.117.1.7.1.247"], {}),
    "vascular-disease": (["2.16.840.1.113762.1.4.1108.101", "2.16.840.1.113762.1.4.1047.21"], {
        # CHA2DS2-VASc's V is prior myocardial infarction, peripheral artery disease or aortic plaque (Lip 2010)
        "413838009": "chronic ischaemic heart disease without infarction: not V",
        "443502000": "coronary atherosclerosis without infarction: not V",
        "284871000119105": "carotid atherosclerosis: not V", "284881000119108": "carotid atherosclerosis: not V",
        "300920004": "carotid atherosclerosis: not V", "55382008": "cerebral atherosclerosis: not V",
        "45281005": "renal artery atherosclerosis: not V", "441574008": "atherosclerosis of an unnamed artery",
        "39823006": "generalised atherosclerosis: site not named",
    }),
    "established-ascvd": ([
        "2.16.840.1.113762.1.4.1108.101", "2.16.840.1.113883.3.526.3.369", "2.16.840.1.113762.1.4.1047.47",
        "2.16.840.1.113883.3.117.1.7.1.247", "2.16.840.1.113762.1.4.1047.21",
    ], {
        # clinical ASCVD (2013 ACC/AHA): coronary, cerebrovascular and peripheral disease of atherosclerotic origin
        "50570003": "coronary aneurysm: not atherosclerotic disease as such",
        "62207008": "syphilitic ostial coronary disease: not atherosclerotic",
        "74218008": "anomalous coronary origin: congenital", "75398000": "anomalous coronary origin: congenital",
        "29899005": "coronary embolism: not atherosclerotic", "87343002": "Prinzmetal (vasospastic) angina",
        "195230003": "infarction from cerebral venous thrombosis: not atherosclerotic",
        # subclinical (imaging) atherosclerosis is not clinical ASCVD (as I70.0 is left out of the ICD-10 set)
        "81817003": "aortic atherosclerosis: an imaging finding", "233955003": "abdominal aortic atherosclerosis",
        "300920004": "carotid atherosclerosis: subclinical plaque", "284871000119105": "carotid atherosclerosis",
        "284881000119108": "carotid atherosclerosis", "55382008": "cerebral atherosclerosis: an imaging finding",
        "45281005": "renal artery atherosclerosis: not in the 2018 AHA/ACC definition",
        "39823006": "generalised atherosclerosis: no event or site named", "441574008": "atherosclerosis of an unnamed artery",
    }),
    "dialysis-transplant": ([
        "2.16.840.1.113883.3.464.1003.109.12.1012", "2.16.840.1.113883.3.464.1003.109.12.1013",
        "2.16.840.1.113883.3.526.3.1084", "2.16.840.1.113883.3.526.3.1083",
        "2.16.840.1.113883.3.464.1003.109.12.1029",
    ], {
        "10848006": "removal of a peritoneal dialysis catheter: may end dialysis",
        "180273006": "removal of a peritoneal dialysis catheter: may end dialysis",
        "175899003": "autotransplantation of a kidney: the patient's own kidney, not a graft",
        "313030004": "donor nephrectomy for transplantation: the donor, not the recipient",
        # acute-only kidney replacement (intensive care, acute kidney injury) and liver support are not chronic KRT
        "233578004": "continuous haemodialysis: acute", "233579007": "continuous haemodialysis: acute",
        "233580005": "continuous haemodialysis: acute", "233583007": "continuous haemofiltration: acute",
        "233584001": "continuous haemofiltration: acute", "233585000": "continuous haemofiltration: acute",
        "233588003": "continuous haemodiafiltration: acute", "233589006": "continuous haemodiafiltration: acute",
        "233590002": "continuous haemodiafiltration: acute", "714749008": "continuous renal replacement therapy: acute",
        "427053002": "extracorporeal albumin dialysis: liver support", "11932001": "stabilizing haemodialysis: acute",
        "57274006": "initial haemodialysis: not yet established on dialysis",
    }),
}


def merge(source_dir: Path, target_dir: Path, repository: str, commit: str) -> None:
    for set_id, (oids, left_out) in RECIPES.items():
        path = target_dir / f"{set_id}.json"
        doc = json.loads(path.read_text(encoding="utf-8"))
        have = {(c["system"], c["code"]) for c in doc["codes"]}
        sources = []
        for oid in oids:
            vs = json.loads((source_dir / f"{oid}.json").read_text(encoding="utf-8"))
            members = [c for c in vs["expansion"]["contains"] if c["system"] == SNOMED]
            sources.append(f"VSAC {vs.get('title') or vs.get('name')} ({oid}, version {vs.get('version')}, "
                           f"{len(members)} SNOMED CT members)")
            for c in members:
                if c["code"] in left_out or (SNOMED, c["code"]) in have:
                    continue
                doc["codes"].append({"system": SNOMED, "code": c["code"], "display": c.get("display", ""),
                                     "from": oid})
                have.add((SNOMED, c["code"]))
        base = doc["source"].split(" Widened with ")[0]
        doc["source"] = (f"{base} Widened with the SNOMED CT members of {'; '.join(sources)}, as published in "
                         f"{repository} at commit {commit} (input/vocabulary/valueset/external/), by "
                         f"tools/merge_vsac_conditions.py.")
        if left_out:
            doc["left_out"] = [{"code": code, "why": why} for code, why in left_out.items()]
        path.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"{set_id}: {len(doc['codes'])} codes")


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    merge(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4])
