"""Import outcomes observed after predictions into the store: from CSV, from FHIR NDJSON (a Bulk Data export of
Condition, Encounter, Procedure, Observation or Patient resources), or by searching a FHIR server.

Every coding of a resource becomes one outcome row (system, code, time), so a Condition coded in both SNOMED CT and
ICD-10 matches a model that declares either. Patient ids are pseudonymised with the store's HMAC on the way in,
exactly as predictions are, so outcomes join to predictions without the raw ids ever being stored. Which model an
outcome belongs to is decided later, by the codes each model's manifest declares (monitoring/followup.py).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from fhir_mapping.fhirdates import parse_fhir_datetime
from store.store import Store

SNOMED = "http://snomed.info/sct"
DEATH = (SNOMED, "419620001")  # Death (event): a Patient's deceasedDateTime is imported as this outcome
RESOURCE_TYPES = ("Condition", "Encounter", "Procedure", "Observation", "Patient")
_SKIPPED_STATUS = {"entered-in-error", "cancelled", "not-done", "planned", "preparation", "unknown"}


class OutcomeFileError(ValueError):
    """A line of the outcome file is unusable; the message names the line and the field."""


class OutcomeServerError(RuntimeError):
    """The FHIR server could not be searched; the message names the request and what to check."""


@dataclass
class OutcomeBatch:
    """Outcome rows read from one source, and what was skipped (by reason) rather than silently dropped."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)


def read_outcomes(path: Path) -> OutcomeBatch:
    if path.suffix.lower() == ".csv":
        return _read_csv(path)
    if path.suffix.lower() in (".ndjson", ".jsonl"):
        return _read_ndjson(path)
    raise OutcomeFileError(f"{path.name}: use a .csv file (patient_id,system,code,observed_at[,label]) or a FHIR "
                           ".ndjson file")


def import_outcomes(store: Store, path: Path) -> tuple[OutcomeBatch, int]:
    """Read a file and write its outcomes; the batch read and how many rows were new."""
    batch = read_outcomes(path)
    return batch, store.write_outcomes(batch.rows)


def _when(value: Any, where: str) -> datetime:
    parsed = parse_fhir_datetime(value)
    if parsed is None:
        raise OutcomeFileError(f"{where}: '{value}' is not a date or date-time")
    return parsed


def _read_csv(path: Path) -> OutcomeBatch:
    batch = OutcomeBatch()
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        needed = {"patient_id", "system", "code", "observed_at"}
        missing = needed - set(reader.fieldnames or [])
        if missing:
            raise OutcomeFileError(f"{path.name}: missing column(s) {', '.join(sorted(missing))} "
                                   "(needed: patient_id,system,code,observed_at[,label])")
        for n, rec in enumerate(reader, start=2):
            where = f"{path.name} line {n}"
            for column in ("patient_id", "system", "code"):
                if not (rec.get(column) or "").strip():
                    raise OutcomeFileError(f"{where}: {column} is empty")
            try:
                label = float(rec.get("label") or 1)
            except ValueError:
                raise OutcomeFileError(f"{where}: label '{rec.get('label')}' is not 0 or 1") from None
            if label not in (0.0, 1.0):
                raise OutcomeFileError(f"{where}: label '{rec.get('label')}' is not 0 or 1")
            batch.rows.append({"patient_id": rec["patient_id"].strip(), "system": rec["system"].strip(),
                               "code": rec["code"].strip(), "label": label,
                               "observed_at": _when(rec["observed_at"], f"{where} observed_at"), "source": path.name})
    return batch


def _read_ndjson(path: Path) -> OutcomeBatch:
    batch = OutcomeBatch()
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path.name} line {n}"
            try:
                resource = json.loads(line)
            except json.JSONDecodeError as exc:
                raise OutcomeFileError(f"{where}: not JSON ({exc.msg})") from None
            if not isinstance(resource, dict):
                raise OutcomeFileError(f"{where}: a line must hold one FHIR resource (a JSON object)")
            rows = resource_outcomes(resource, where, path.name, batch.skipped)
            batch.rows.extend(rows)
    return batch


def _patient_id(resource: dict[str, Any], where: str) -> str:
    if resource.get("resourceType") == "Patient":
        pid = resource.get("id")
        if not isinstance(pid, str) or not pid:
            raise OutcomeFileError(f"{where}: Patient has no id")
        return pid
    ref = (resource.get("subject") or resource.get("patient") or {}).get("reference", "")
    if not isinstance(ref, str) or "Patient/" not in ref:
        raise OutcomeFileError(f"{where}: subject.reference must be 'Patient/<id>'")
    return ref.rsplit("Patient/", 1)[1].split("/", 1)[0]


def _codings(concepts: Iterable[Any]) -> Iterator[tuple[str, str]]:
    for concept in concepts:
        if not isinstance(concept, dict):
            continue
        codings = concept.get("coding") if "coding" in concept else [concept]  # a Coding (Encounter.class) as is
        for coding in codings or []:
            if isinstance(coding, dict) and coding.get("system") and coding.get("code"):
                yield str(coding["system"]), str(coding["code"])


def _first(*values: Any) -> Any:
    return next((v for v in values if v), None)


def resource_outcomes(resource: dict[str, Any], where: str, source: str,
                      skipped: Counter[str]) -> list[dict[str, Any]]:
    """Outcome rows of one FHIR resource (one per coding); an unusable resource raises OutcomeFileError, a resource
    that records nothing that happened (entered in error, cancelled, not done) is counted in `skipped`."""
    rtype = resource.get("resourceType")
    if rtype not in RESOURCE_TYPES:
        raise OutcomeFileError(f"{where}: resourceType must be one of {', '.join(RESOURCE_TYPES)}, not {rtype!r}")
    status = resource.get("status")
    if isinstance(status, str) and status in _SKIPPED_STATUS:
        skipped[f"{rtype} status {status}"] += 1
        return []
    label = 1.0
    if rtype == "Condition":
        stamp = _first(resource.get("onsetDateTime"), (resource.get("onsetPeriod") or {}).get("start"),
                       resource.get("recordedDate"))
        statuses = {str(c.get("code")) for c in (resource.get("verificationStatus") or {}).get("coding") or []
                    if isinstance(c, dict)}
        if "entered-in-error" in statuses:
            skipped["Condition entered in error"] += 1
            return []
        label = 0.0 if "refuted" in statuses else 1.0
        codes = list(_codings([resource.get("code") or {}]))
    elif rtype == "Procedure":
        stamp = _first(resource.get("performedDateTime"), (resource.get("performedPeriod") or {}).get("start"))
        codes = list(_codings([resource.get("code") or {}]))
    elif rtype == "Encounter":
        period = resource.get("period") or {}
        stamp = period.get("start")
        codes = list(_codings([*(resource.get("type") or []), resource.get("class") or {},
                               resource.get("serviceType") or {}]))
        disposition = list(_codings([(resource.get("hospitalization") or {}).get("dischargeDisposition") or {}]))
        rows = _rows(resource, where, source, stamp, codes, label, skipped) if codes else []
        if disposition:  # a discharge disposition (e.g. expired) happened when the encounter ended
            rows += _rows(resource, where, source, period.get("end") or stamp, disposition, label, skipped)
        if not codes and not disposition:
            skipped["Encounter without a type, class or discharge disposition"] += 1
        return rows
    elif rtype == "Observation":
        stamp = _first(resource.get("effectiveDateTime"), (resource.get("effectivePeriod") or {}).get("start"),
                       resource.get("issued"))
        label = 0.0 if resource.get("valueBoolean") is False else 1.0
        codes = list(_codings([resource.get("code") or {}]))
    else:  # Patient: a recorded death
        stamp = resource.get("deceasedDateTime")
        if not stamp:
            if resource.get("deceasedBoolean") is True:
                skipped["Patient deceased without a date"] += 1
            return []
        codes = [DEATH]
    if not codes:
        raise OutcomeFileError(f"{where}: {rtype}.code has no coding with both system and code")
    return _rows(resource, where, source, stamp, codes, label, skipped)


def _rows(resource: dict[str, Any], where: str, source: str, stamp: Any, codes: list[tuple[str, str]], label: float,
          skipped: Counter[str]) -> list[dict[str, Any]]:
    if not stamp:
        raise OutcomeFileError(f"{where}: {resource.get('resourceType')} has no date (onset, performed, period or "
                               "effective date)")
    when = _when(stamp, f"{where} date")
    pid = _patient_id(resource, where)
    return [{"patient_id": pid, "system": system, "code": code, "label": label, "observed_at": when, "source": source}
            for system, code in dict.fromkeys(codes)]


# ---- FHIR server ----------------------------------------------------------------------------------------------------
SEARCHES = (("Condition", "code"), ("Procedure", "code"), ("Encounter", "type"))


def fetch_outcomes(base_url: str, codes: Iterable[str], token: str | None = None, *,
                   client: httpx.Client | None = None, page_size: int = 200, max_pages: int = 1000) -> OutcomeBatch:
    """Search a FHIR server for resources with the given "system|code" codes (Condition and Procedure by code,
    Encounter by type) and for deceased patients when death is among them; follow `next` links on the same server.

    A token search matches codes exactly: ICD-10 subcodes must be listed, or exported as NDJSON instead."""
    base = base_url.rstrip("/")
    origin = urlsplit(base)
    headers = {"Accept": "application/fhir+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    own = client is None
    http = client or httpx.Client(timeout=30.0, follow_redirects=False)
    batch = OutcomeBatch()
    wanted = sorted(set(codes))
    try:
        requests: list[tuple[str, dict[str, str]]] = [
            (rtype, {param: code, "_count": str(page_size)}) for rtype, param in SEARCHES for code in wanted]
        if f"{DEATH[0]}|{DEATH[1]}" in wanted:
            requests.append(("Patient", {"deceased": "true", "_count": str(page_size)}))
        for rtype, params in requests:
            url: str | None = f"{base}/{rtype}"
            query: dict[str, str] | None = params
            pages, visited = 0, set()
            while url is not None:
                if pages >= max_pages or (query is None and url in visited):
                    raise OutcomeServerError(f"{rtype} search: the FHIR server's next links go on past {pages} pages "
                                             "or repeat a page; not followed further")
                visited.add(url)
                bundle = _get(http, url, query, headers, rtype)
                pages += 1
                for i, entry in enumerate(bundle.get("entry") or []):
                    resource = (entry or {}).get("resource") or {}
                    if (entry or {}).get("search", {}).get("mode") == "include" or \
                            resource.get("resourceType") not in RESOURCE_TYPES:
                        continue
                    where = f"{rtype} search page {pages} entry {i + 1}"
                    batch.rows.extend(resource_outcomes(resource, where, base, batch.skipped))
                url, query = _next_link(bundle, origin), None
    finally:
        if own:
            http.close()
    # a resource found by two of its codes is one outcome per coding, not two
    unique = {(r["patient_id"], r["system"], r["code"], r["observed_at"]): r for r in batch.rows}
    batch.rows = list(unique.values())
    return batch


def _get(http: httpx.Client, url: str, params: dict[str, str] | None, headers: dict[str, str],
         rtype: str) -> dict[str, Any]:
    shown = f"{rtype} search" + (f" ({', '.join(f'{k}={v}' for k, v in params.items() if k != '_count')})"
                                 if params else " (next page)")
    try:
        response = http.get(url, params=params, headers=headers)
    except httpx.HTTPError as exc:
        raise OutcomeServerError(f"{shown}: the FHIR server could not be reached ({type(exc).__name__}); check "
                                 "--fhir-server") from None
    if response.status_code in (401, 403):
        raise OutcomeServerError(f"{shown}: the FHIR server answered {response.status_code}; check --token (a bearer "
                                 "token allowed to read these resources)")
    if response.status_code != 200:
        raise OutcomeServerError(f"{shown}: the FHIR server answered {response.status_code}")
    try:
        bundle = response.json()
    except ValueError:
        raise OutcomeServerError(f"{shown}: the FHIR server's answer is not JSON") from None
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise OutcomeServerError(f"{shown}: the FHIR server's answer is not a Bundle")
    return bundle


def _next_link(bundle: dict[str, Any], origin: Any) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            target = urlsplit(link["url"])
            if (target.scheme, target.netloc) != (origin.scheme, origin.netloc):
                raise OutcomeServerError(f"the FHIR server's next page is on another host ({target.netloc}); not "
                                         "followed, so the token is not sent there")
            return link["url"]
    return None
