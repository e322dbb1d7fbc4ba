"""Answer a service's prefetch templates from a FHIR Bundle held locally (a file, a pasted record).

Developers test with patient records saved as Bundles (collection, transaction or searchset). This evaluates the
subset of FHIR search that prefetch templates use — instance reads, `patient=`, token `code=` lists (a Device's
`type=`) and `status=` — against the Bundle, so the service receives the prefetch an EHR would send.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from cds_hooks.prefetch import PrefetchTemplateError, render_template
from fhir_mapping.index import codings, iter_resources, main_code_element


class BundleError(ValueError):
    """The file is not a usable FHIR Bundle."""


def bundle_resources(bundle: Any) -> list[dict[str, Any]]:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise BundleError("not a FHIR Bundle (resourceType must be 'Bundle')")
    kind = bundle.get("type")
    if kind not in ("collection", "transaction", "searchset", "batch", "document"):
        raise BundleError(f"Bundle type '{kind}' is not supported (use collection, transaction or searchset)")
    return [res for res, _ in iter_resources(bundle)]


def patient_of(resources: list[dict[str, Any]], patient_id: str | None = None) -> dict[str, Any]:
    patients = [r for r in resources if r.get("resourceType") == "Patient"]
    if patient_id:
        patients = [p for p in patients if p.get("id") == patient_id]
    if len(patients) != 1:
        found = "no" if not patients else str(len(patients))
        raise BundleError(f"the Bundle must hold exactly one Patient (found {found}); name one with --patient")
    if not isinstance(patients[0].get("id"), str):
        raise BundleError("the Patient in the Bundle has no id")
    return patients[0]


def prefetch_from_resources(templates: dict[str, str], resources: list[dict[str, Any]],
                            context: dict[str, Any]) -> dict[str, Any]:
    """The prefetch an EHR would send for these templates, computed from the resources."""
    prefetch: dict[str, Any] = {}
    for key, template in templates.items():
        try:
            query = render_template(template, context)
        except PrefetchTemplateError:
            continue  # a template the context cannot fill (e.g. no encounter): leave the key absent
        prefetch[key] = _evaluate(query, resources)
    return prefetch


def _evaluate(query: str, resources: list[dict[str, Any]]) -> dict[str, Any] | None:
    parts = urlsplit(query)
    path = parts.path.strip("/")
    if "/" in path and "?" not in query:
        rtype, rid = path.split("/", 1)
        for res in resources:
            if res.get("resourceType") == rtype and res.get("id") == rid:
                return res
        return None
    params = parse_qs(parts.query)
    rtype = path
    patient = (params.get("patient") or params.get("subject") or [None])[0]
    codes = {tuple(t.split("|", 1)) for v in params.get("code", []) + params.get("type", []) for t in v.split(",")
             if "|" in t}
    statuses = {s for v in params.get("status", []) for s in v.split(",")}
    matched = []
    for res in resources:
        if res.get("resourceType") != rtype:
            continue
        if patient and _subject_id(res) not in (patient, None):
            continue
        if codes and not any((s, c) in codes for s, c, _ in codings(res.get(main_code_element(rtype)))):
            continue
        if statuses and not (isinstance(st := res.get("status"), str) and st in statuses):  # a server compares text
            continue
        matched.append(res)
    entries = [{"fullUrl": f"{r['resourceType']}/{r.get('id', '')}", "resource": r, "search": {"mode": "match"}}
               for r in matched]
    if any(v.endswith(":medication") for v in params.get("_include", [])):
        # _include=MedicationRequest:medication: the Medications that matched resources point to, as a server adds
        wanted = {ref.get("reference") for r in matched if isinstance(ref := r.get("medicationReference"), dict)}
        for res in resources:
            if res.get("resourceType") == "Medication" and f"Medication/{res.get('id')}" in wanted:
                entries.append({"fullUrl": f"Medication/{res['id']}", "resource": res,
                                "search": {"mode": "include"}})
    return {"resourceType": "Bundle", "type": "searchset", "total": len(matched), "entry": entries}


def _subject_id(res: dict[str, Any]) -> str | None:
    holder = res.get("subject") or res.get("patient")
    ref = holder.get("reference") if isinstance(holder, dict) else None
    if not isinstance(ref, str):
        return None
    return ref.rsplit("/", 1)[-1].replace("urn:uuid:", "")
