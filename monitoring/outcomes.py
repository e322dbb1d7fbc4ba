"""Import outcomes observed after predictions (CSV, or FHIR NDJSON of Conditions/Observations) into the store.

Patient ids are pseudonymised with the store's HMAC on the way in, exactly as predictions are, so outcomes join to
predictions without the raw ids ever being stored.
"""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from fhir_mapping.fhirdates import parse_fhir_datetime
from store.store import Store


class OutcomeFileError(ValueError):
    """A line of the outcome file is unusable; the message names the line and the field."""


def read_outcomes(path: Path) -> list[dict[str, Any]]:
    if path.suffix.lower() == ".csv":
        return _read_csv(path)
    if path.suffix.lower() in (".ndjson", ".jsonl"):
        return _read_ndjson(path)
    raise OutcomeFileError(f"{path.name}: use a .csv or .ndjson file")


def import_outcomes(store: Store, path: Path) -> tuple[int, int]:
    rows = read_outcomes(path)
    return len(rows), store.write_outcomes(rows)


def _when(value: Any, where: str) -> datetime:
    parsed = parse_fhir_datetime(value)
    if parsed is None:
        raise OutcomeFileError(f"{where}: '{value}' is not a date or date-time")
    return parsed


def _read_csv(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        needed = {"patient_id", "system", "code", "observed_at"}
        missing = needed - set(reader.fieldnames or [])
        if missing:
            raise OutcomeFileError(f"{path.name}: missing column(s) {', '.join(sorted(missing))}")
        for n, rec in enumerate(reader, start=2):
            where = f"{path.name} line {n}"
            if not rec["patient_id"]:
                raise OutcomeFileError(f"{where}: patient_id is empty")
            label = float(rec.get("label") or 1)
            rows.append({"patient_id": rec["patient_id"], "system": rec["system"], "code": rec["code"],
                         "label": label, "observed_at": _when(rec["observed_at"], f"{where} observed_at"),
                         "source": path.name})
    return rows


def _read_ndjson(path: Path) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name} line {n}"
        try:
            res = json.loads(line)
        except json.JSONDecodeError as exc:
            raise OutcomeFileError(f"{where}: not JSON ({exc.msg})") from None
        rtype = res.get("resourceType")
        if rtype not in ("Condition", "Observation"):
            raise OutcomeFileError(f"{where}: resourceType must be Condition or Observation, not {rtype!r}")
        ref = (res.get("subject") or {}).get("reference", "")
        if not isinstance(ref, str) or not ref.startswith("Patient/"):
            raise OutcomeFileError(f"{where}: subject.reference must be 'Patient/<id>'")
        coding = next(iter((res.get("code") or {}).get("coding") or []), None)
        if not coding or not coding.get("system") or not coding.get("code"):
            raise OutcomeFileError(f"{where}: code.coding[0] needs system and code")
        if rtype == "Condition":
            stamp = res.get("onsetDateTime") or res.get("recordedDate")
            statuses = {c.get("code") for c in (res.get("verificationStatus") or {}).get("coding", [])}
            label = 0.0 if statuses & {"refuted", "entered-in-error"} else 1.0
        else:
            stamp = res.get("effectiveDateTime") or res.get("issued")
            label = 0.0 if res.get("valueBoolean") is False else 1.0
            if res.get("status") == "entered-in-error":
                continue
        rows.append({"patient_id": ref.split("/", 1)[1], "system": coding["system"], "code": coding["code"],
                     "label": label, "observed_at": _when(stamp, f"{where} date"), "source": path.name})
    return rows
