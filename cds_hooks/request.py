"""Parse and check a CDS Hooks service request body (fast: orjson, plain dicts).

Malformed JSON, missing `hook`/`hookInstance`/`context`, a `fhirAuthorization` without `fhirServer`, or prefetch
values that are not FHIR resources are answered 400 with the field named, before any work is done.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from cds_hooks.errors import bad_request

# a UUID as CDS Hooks' hookInstance carries it: the RFC 9562 string form, in either case
_UUID_TEXT = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


@dataclass(frozen=True)
class HookRequest:
    hook: str
    hook_instance: str
    context: dict[str, Any]
    fhir_server: str | None = None
    fhir_authorization: dict[str, Any] | None = None
    prefetch: dict[str, Any] | None = None
    extension: dict[str, Any] | None = None

    @property
    def access_token(self) -> str | None:
        return (self.fhir_authorization or {}).get("access_token")

    @property
    def scope(self) -> str | None:
        return (self.fhir_authorization or {}).get("scope")


def parse_json_object(body: bytes) -> dict[str, Any]:
    if not body:
        raise bad_request("request body is empty; expected a JSON object")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise bad_request("request body must be a JSON object")
    return doc


def parse_hook_request(body: bytes) -> HookRequest:
    doc = parse_json_object(body)
    hook = doc.get("hook")
    if not isinstance(hook, str) or not hook:
        raise bad_request("hook is required (a string such as 'patient-view')", "hook")
    instance = doc.get("hookInstance")
    if not isinstance(instance, str) or not instance:
        raise bad_request("hookInstance is required (a UUID)", "hookInstance")
    if not _UUID_TEXT.fullmatch(instance):  # the string form only: Python's UUID() takes braces, 'urn:uuid:', bare hex
        raise bad_request("hookInstance must be a UUID in its string form (8-4-4-4-12 hexadecimal digits)",
                          "hookInstance")
    context = doc.get("context")
    if not isinstance(context, dict):
        raise bad_request("context is required (a JSON object)", "context")
    fhir_server = doc.get("fhirServer")
    if fhir_server is not None and (not isinstance(fhir_server, str) or not fhir_server.startswith(("http://", "https://"))):
        raise bad_request("fhirServer must be an http(s) URL", "fhirServer")
    auth = doc.get("fhirAuthorization")
    if auth is not None:
        _check_authorization(auth)
        if fhir_server is None:
            raise bad_request("fhirServer is required when fhirAuthorization is given", "fhirServer")
    prefetch = doc.get("prefetch")
    if prefetch is not None:
        _check_prefetch(prefetch)
    extension = doc.get("extension")
    if extension is not None and not isinstance(extension, dict):
        raise bad_request("extension must be a JSON object", "extension")
    return HookRequest(hook, instance, context, fhir_server, auth, prefetch, extension)


_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")


def _check_authorization(auth: Any) -> None:
    if not isinstance(auth, dict):
        raise bad_request("fhirAuthorization must be a JSON object", "fhirAuthorization")
    for name in ("access_token", "token_type", "scope", "subject"):
        if not isinstance(auth.get(name), str) or not auth.get(name):
            raise bad_request(f"fhirAuthorization.{name} is required", f"fhirAuthorization.{name}")
    if not _HEADER_SAFE.fullmatch(auth["access_token"]):
        # RFC 6750 §2.1: a bearer token is printable ASCII; anything else cannot go into an Authorization header
        raise bad_request("fhirAuthorization.access_token must be printable ASCII with no spaces (RFC 6750)",
                          "fhirAuthorization.access_token")
    if auth["token_type"].lower() != "bearer":  # RFC 6749 §5.1: the token type is case-insensitive
        raise bad_request("fhirAuthorization.token_type must be 'Bearer'", "fhirAuthorization.token_type")
    if "patient" in auth and (not isinstance(auth["patient"], str) or not auth["patient"]):
        raise bad_request("fhirAuthorization.patient must be a FHIR id (a string)", "fhirAuthorization.patient")
    expires = auth.get("expires_in")
    if isinstance(expires, bool) or not isinstance(expires, int):
        raise bad_request("fhirAuthorization.expires_in is required (seconds)", "fhirAuthorization.expires_in")
    if expires < 0:  # a lifetime (RFC 6749 §5.1) is never negative: a client that sends one is broken
        raise bad_request(f"fhirAuthorization.expires_in must be a lifetime in seconds, 0 or more, not {expires}",
                          "fhirAuthorization.expires_in")


def _check_prefetch(prefetch: Any) -> None:
    if not isinstance(prefetch, dict):
        raise bad_request("prefetch must be a JSON object of key → FHIR resource", "prefetch")
    for key, value in prefetch.items():
        field = f"prefetch.{key}"
        if value is None:
            continue
        if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
            raise bad_request(f"{field} is not a FHIR resource (no resourceType)", field)
        if value["resourceType"] == "Bundle":
            links = value.get("link") or []
            if not isinstance(links, list) or not all(isinstance(x, dict) for x in links):
                raise bad_request(f"{field}.link must be a list of objects", f"{field}.link")
            entries = value.get("entry", [])
            if not isinstance(entries, list):
                raise bad_request(f"{field}.entry must be a list", f"{field}.entry")
            for i, entry in enumerate(entries):
                res = entry.get("resource") if isinstance(entry, dict) else None
                if res is None and isinstance(entry, dict) and "resource" not in entry:
                    continue  # search entries may carry only fullUrl/search info
                if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
                    raise bad_request(f"{field}.entry[{i}].resource is not a FHIR resource",
                                      f"{field}.entry[{i}].resource")
