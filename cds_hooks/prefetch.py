"""Prefetch resolution: render CDS Hooks prefetch templates and fetch what the EHR did not send.

Exists because the CDS Hooks client may satisfy none, some or all prefetch keys (CDS Hooks 2.0 §Prefetch): the
service must use what it got, fetch absent keys and OperationOutcome keys from `fhirServer` with the bearer token,
follow Bundle paging, and do all of that inside one short deadline so an EHR never waits on us. Failures are reported
per key, never raised: the caller decides between 412 and fewer cards.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

import httpx
import orjson
from dateutil.relativedelta import relativedelta

from cds_hooks.capped_read import BodyTooLarge, BodyUnreadable, read_capped
from cds_hooks.search_completeness import search_problem
from cds_hooks.smart_scopes import granted, template_type

log = logging.getLogger(__name__)

PrefetchState = Literal["present", "absent", "null", "error"]

_TOKEN = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_TODAY = re.compile(r"^today\(\)(?:\s*([+-])\s*(\d+)\s*(day|days|month|months|year|years))?$")
_USER_TOKENS = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}
_SAFE = "-._~"  # RFC 3986 unreserved characters; everything else in an inserted value is percent-encoded
_FHIR_JSON = "application/fhir+json"
MAX_RESPONSE_BYTES = 20_000_000  # default cap on one FHIR server response (prefetch.max_response_bytes)


class PrefetchTemplateError(ValueError):
    """A prefetch template names a token that cannot be filled from this request."""


# -- template rendering ---------------------------------------------------------------------------------------------


def _user_refs_from_context(context: dict[str, Any]) -> dict[str, str]:
    user_id = context.get("userId")
    if not isinstance(user_id, str) or "/" not in user_id:
        return {}
    resource_type, _, ident = user_id.rpartition("/")
    resource_type = resource_type.rsplit("/", 1)[-1]  # tolerate an absolute reference
    return {token: ident for token, rtype in _USER_TOKENS.items() if rtype == resource_type and ident}


def _render_today(match: re.Match[str], now: datetime | None) -> str:
    today: date = (now or datetime.now(UTC)).date()
    sign, amount, unit = match.groups()
    if sign is None:
        return today.isoformat()
    n = int(amount) * (1 if sign == "+" else -1)
    delta = {
        "day": relativedelta(days=n),
        "month": relativedelta(months=n),
        "year": relativedelta(years=n),
    }[unit.rstrip("s")]
    return (today + delta).isoformat()


def _primitive_text(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise PrefetchTemplateError(
        f"prefetch token {{{{context.{name}}}}}: context.{name} is a {type(value).__name__}, "
        "only primitive context fields can be prefetch tokens"
    )


def render_template(
    template: str,
    context: dict[str, Any],
    user_refs: dict[str, str] | None = None,
    now: datetime | None = None,
) -> str:
    """Fill the prefetch tokens of one template.

    Tokens: ``{{context.X}}`` (root-level primitive context field), ``{{userPractitionerId}}``,
    ``{{userPractitionerRoleId}}``, ``{{userPatientId}}``, ``{{userRelatedPersonId}}`` (the id part of
    ``context.userId`` when its type matches; ``user_refs`` supplies or overrides them) and the CDS Hooks 3.0 token
    ``{{today() - N days|months|years}}`` (an ISO date; ``now`` defaults to the current UTC time).
    Inserted context and user values are percent-encoded. Raises PrefetchTemplateError naming the bad token.
    """
    refs = {**_user_refs_from_context(context), **(user_refs or {})}

    def replace(match: re.Match[str]) -> str:
        expr = match.group(1)
        if expr.startswith("context."):
            name = expr[len("context.") :]
            if name not in context or context[name] is None:
                raise PrefetchTemplateError(f"prefetch token {{{{{expr}}}}}: context has no field '{name}'")
            return quote(_primitive_text(name, context[name]), safe=_SAFE)
        if expr in _USER_TOKENS:
            if expr not in refs:
                raise PrefetchTemplateError(
                    f"prefetch token {{{{{expr}}}}}: context.userId is not a {_USER_TOKENS[expr]} reference"
                )
            return quote(str(refs[expr]), safe=_SAFE)
        today = _TODAY.match(expr)
        if today:
            return _render_today(today, now)
        raise PrefetchTemplateError(f"prefetch token {{{{{expr}}}}} is not a supported prefetch token")

    return _TOKEN.sub(replace, template)


# -- classification -------------------------------------------------------------------------------------------------


def classify(prefetch: dict[str, Any] | None, key: str) -> PrefetchState:
    """Say what the client sent for one key.

    "absent": key missing (or no prefetch at all); "null": explicit null, meaning no data; "error": an
    OperationOutcome, or a value that is not a FHIR resource at all (both are re-fetched); "present": a resource.
    """
    if prefetch is None or key not in prefetch:
        return "absent"
    value = prefetch[key]
    if value is None:
        return "null"
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        return "error"
    if value["resourceType"] == "OperationOutcome":
        return "error"
    return "present"


# -- fetching -------------------------------------------------------------------------------------------------------


@dataclass
class PrefetchOutcome:
    """Result of resolving one request's prefetch.

    Every template key ends up in exactly one of ``resources`` (resource/Bundle JSON, or None for "no data") and
    ``failed`` (key → readable reason). ``fetched`` lists the keys whose data came (at least partly) from the FHIR
    server; ``truncated`` the keys whose data is real but not the whole answer: a ``next`` link not followed
    (``max_pages`` reached, or a paged Bundle sent by the client with no fhirServer to page from), a search that
    said it left results out (an outcome, or a ``total`` above the matches sent), or a token scope that grants only
    part of the type; ``truncated_why`` says why, for the card.
    """

    resources: dict[str, Any | None] = field(default_factory=dict)
    fetched: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    elapsed_ms: float = 0.0
    truncated: list[str] = field(default_factory=list)
    truncated_why: dict[str, str] = field(default_factory=dict)

    def cut_short(self, key: str, why: str) -> None:
        if key not in self.truncated:
            self.truncated.append(key)
        self.truncated_why.setdefault(key, why)


class _FetchError(Exception):
    """One key could not be fetched; the message is the reason reported (never holds the token)."""


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def _next_link(bundle: dict[str, Any]) -> str | None:
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "searchset":
        return None
    links = bundle.get("link") or []
    if not isinstance(links, list):
        raise _FetchError("Bundle.link is not a list")
    for link in links:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return str(link["url"])
    return None


def _entries(bundle: dict[str, Any]) -> list[Any]:
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise _FetchError("Bundle.entry is not a list")
    return list(entries)


class _Fetcher:
    def __init__(self, client: httpx.AsyncClient, fhir_server: str, access_token: str | None, max_pages: int,
                 max_bytes: int = MAX_RESPONSE_BYTES):
        self.client = client
        self.max_bytes = max_bytes
        self.base = fhir_server.rstrip("/")
        self.origin = _origin(self.base)
        self.base_path = urlsplit(self.base).path.rstrip("/")
        self.headers = {"Accept": _FHIR_JSON}
        if access_token:
            self.headers["Authorization"] = f"Bearer {access_token}"
        self.max_pages = max_pages

    def _refusal(self, url: str) -> str | None:
        """Why the bearer token may not go to `url`: only under fhirServer's own base (a `next` link to another
        path of the same host — another tenant's base, an admin endpoint — is not the server the token is for)."""
        parts = urlsplit(url)
        if not parts.scheme or not parts.netloc:
            return "refused to follow a link that is not an absolute URL under fhirServer"
        if _origin(url) != self.origin:
            return f"refused to follow a link to another origin than fhirServer ({_origin(url)[1]})"
        if "@" in parts.netloc:  # RFC 9110 §4.2.4: userinfo would replace the bearer token with its own credentials
            return "refused to follow a link with user information in its authority"
        decoded = unquote(parts.path)
        if "\\" in decoded or "%2f" in parts.path.lower() or "%5c" in parts.path.lower():
            return "refused to follow a link with an encoded slash or a backslash in its path"
        # '..;/' is '..' to servlet containers (Tomcat, Jetty: path parameters are cut from each segment)
        if any(seg.split(";", 1)[0] in (".", "..") for seg in decoded.split("/")):
            return "refused to follow a link with '.' or '..' path segments"
        if parts.path.rstrip("/") != self.base_path and not parts.path.startswith(self.base_path + "/"):
            return "refused to follow a link outside fhirServer's base path"
        return None

    async def get_json(self, url: str) -> dict[str, Any]:
        if (refusal := self._refusal(url)) is not None:
            raise _FetchError(refusal)
        too_big = f"FHIR server answer is larger than {self.max_bytes} bytes (prefetch.max_response_bytes)"
        try:
            # streamed: reading stops at the cap, so a huge or endless answer cannot fill memory
            async with self.client.stream("GET", url, headers=self.headers) as response:
                if response.status_code >= 400:
                    raise _FetchError(f"FHIR server answered HTTP {response.status_code}")
                if response.status_code != 200:
                    raise _FetchError(f"FHIR server answered HTTP {response.status_code}, expected 200")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > self.max_bytes:
                    raise _FetchError(too_big)
                try:  # the cap holds for what a compressed answer decodes to, at every step (capped_read.py)
                    raw = await read_capped(response, self.max_bytes)
                except BodyTooLarge:
                    raise _FetchError(too_big) from None
                except BodyUnreadable as exc:
                    raise _FetchError(f"FHIR server answer cannot be read: {exc}") from None
        except httpx.TimeoutException as exc:
            raise _FetchError(f"FHIR server timed out ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise _FetchError(f"could not reach FHIR server ({type(exc).__name__})") from None
        try:
            body = orjson.loads(raw.removeprefix(b"\xef\xbb\xbf"))
        except ValueError:
            raise _FetchError("FHIR server answer is not JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
            raise _FetchError("FHIR server answer is JSON but not a FHIR resource (no resourceType)")
        if body["resourceType"] == "OperationOutcome":
            raise _FetchError("FHIR server answered with an OperationOutcome")
        return body

    async def page(self, first: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Follow `next` links of a searchset Bundle; return the merged Bundle and whether pages were left over."""
        next_url = _next_link(first)
        if next_url is None:
            return first, False
        entries = _entries(first)
        pages = 1
        while next_url is not None and pages < self.max_pages:
            page = await self.get_json(next_url)
            if page.get("resourceType") != "Bundle":
                raise _FetchError(f"a next link returned a {page['resourceType']}, not a Bundle")
            entries.extend(_entries(page))
            pages += 1
            next_url = _next_link(page)
        merged: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
        if "total" in first:
            merged["total"] = first["total"]
        self_links = [x for x in first.get("link") or [] if isinstance(x, dict) and x.get("relation") == "self"]
        if self_links:
            merged["link"] = self_links
        merged["entry"] = entries
        return merged, next_url is not None

    async def fetch(self, relative: str) -> tuple[dict[str, Any], bool]:
        return await self.page(await self.get_json(self.base + "/" + relative.lstrip("/")))


async def resolve_prefetch(
    templates: dict[str, str],
    request_prefetch: dict[str, Any] | None,
    *,
    context: dict[str, Any],
    fhir_server: str | None,
    access_token: str | None,
    client: httpx.AsyncClient,
    deadline_seconds: float = 0.8,
    max_pages: int = 5,
    max_response_bytes: int = MAX_RESPONSE_BYTES,
    scope: str | None = None,
    token_patient: str | None = None,
) -> PrefetchOutcome:
    """Resolve every key of a service's prefetch templates for one request, within one deadline.

    Present keys are used as sent (a paged searchset Bundle is completed from ``fhir_server`` when one is given);
    ``null`` keys stay None; absent and OperationOutcome keys are fetched concurrently from ``fhir_server``, as
    are present searches that say they failed or left results out (an OperationOutcome entry, a ``total`` above
    the matches sent) when there is a server to ask again. A type the token's ``scope`` does not grant is not
    fetched; one it grants in part is fetched and marked truncated. A token issued for another patient
    (``token_patient``, fhirAuthorization.patient, not context.patientId) fetches nothing: what it may see is that
    patient's record, or nothing. Nothing here raises for a fetch failure: the key lands in ``failed`` with a reason.
    """
    if deadline_seconds <= 0:
        raise ValueError(f"deadline_seconds must be > 0, got {deadline_seconds}")
    if max_pages < 1:
        raise ValueError(f"max_pages must be >= 1, got {max_pages}")
    started = time.perf_counter()
    outcome = PrefetchOutcome()
    fetcher = _Fetcher(client, fhir_server, access_token, max_pages, max_response_bytes) if fhir_server else None
    jobs: dict[str, Any] = {}

    def refusal(relative: str) -> tuple[str | None, str | None]:
        """Why the token may not run this query at all, and why its answer can only be partial."""
        if token_patient and token_patient != str(context.get("patientId")):
            return "the access token is for another patient (fhirAuthorization.patient is not context.patientId)", \
                None
        asked = template_type(relative)
        grant = granted(scope, asked[0], asked[1], relative.partition("?")[2]) if asked else "unknown"
        if grant == "none" and asked:
            return (f"the access token's scope (fhirAuthorization.scope) does not grant "
                    f"{'searching' if asked[1] == 'search' else 'reading'} {asked[0]}"), None
        if grant == "some" and asked:
            return None, f"the access token's scope grants only some {asked[0]} records (fhirAuthorization.scope)"
        return None, None

    def fetch_job(key: str, template: str) -> None:
        assert fetcher is not None
        try:
            relative = render_template(template, context)
        except PrefetchTemplateError as exc:
            outcome.failed[key] = str(exc)
            return
        refused, only_some = refusal(relative)
        if refused:
            outcome.failed[key] = refused
            return
        if only_some:
            partial[key] = only_some
        jobs[key] = fetcher.fetch(relative)

    def page_job(key: str, value: dict[str, Any], next_url: str) -> None:
        """The rest of a search the EHR sent the first page of, under the same checks as a query of our own."""
        assert fetcher is not None
        base = fetcher.base + "/"
        refused, only_some = refusal(next_url[len(base):] if next_url.startswith(base) else "")
        if refused:
            outcome.resources[key] = value
            outcome.cut_short(key, f"the EHR sent the first page of a search, and the rest was not read: {refused}")
            return
        if only_some:
            partial[key] = only_some
        first_pages[key] = value  # what the EHR sent stays if the rest cannot be read
        jobs[key] = fetcher.page(value)

    partial: dict[str, str] = {}
    fallback: dict[str, tuple[Any, str]] = {}
    first_pages: dict[str, Any] = {}
    for key, template in templates.items():
        state = classify(request_prefetch, key)
        if state == "null":
            outcome.resources[key] = None
        elif state == "present":
            value = (request_prefetch or {})[key]
            problem = search_problem(value)
            try:
                next_url = _next_link(value)
            except _FetchError as exc:
                outcome.failed[key] = f"prefetch: {exc}"
                continue
            if next_url is not None and problem is not None and problem.kind == "partial":
                problem = None  # a first page: its total counts every page, read again once the pages are merged
            if problem is not None and fetcher is not None:
                if problem.kind == "partial":  # what it holds is real: kept if the server cannot be asked
                    fallback[key] = value, f"prefetch: {problem.reason}"
                fetch_job(key, template)  # the EHR's own search failed or left results out: ask the server
            elif problem is not None and problem.kind == "failed":
                outcome.failed[key] = f"prefetch: {problem.reason}, and no fhirServer given"
            elif next_url is None:
                outcome.resources[key] = value
                if problem is not None:
                    outcome.cut_short(key, f"prefetch: {problem.reason}")
            elif fetcher is None:
                outcome.resources[key] = value
                outcome.cut_short(key, "the EHR sent the first page of a search and no fhirServer to read the rest "
                                       "from")
            else:
                page_job(key, value, next_url)
        elif fetcher is None:
            outcome.failed[key] = (
                "not in prefetch and no fhirServer given"
                if state == "absent"
                else "prefetch held an error and no fhirServer given"
            )
        else:
            fetch_job(key, template)

    async def run(key: str, job: Any) -> None:
        try:
            resource, leftover = await job
        except _FetchError as exc:
            outcome.failed[key] = str(exc)
            log.warning("prefetch key %s failed: %s", key, exc)
            return
        except (httpx.InvalidURL, ValueError, TypeError) as exc:  # malformed links or Bundles from the server
            outcome.failed[key] = f"unusable FHIR server answer ({type(exc).__name__})"
            log.warning("prefetch key %s failed: %s", key, outcome.failed[key])
            return
        if key in fallback:  # what the EHR's own partial answer found stays, whatever the server answers now
            resource = _merged(fallback[key][0], resource)
        problem = search_problem(resource)
        if problem is not None and problem.kind == "failed":
            outcome.failed[key] = f"FHIR server: {problem.reason}"
            log.warning("prefetch key %s failed: %s", key, outcome.failed[key])
            return
        outcome.resources[key] = resource
        outcome.fetched.append(key)
        if leftover:
            outcome.cut_short(key, f"more results than the {max_pages} page{'s' if max_pages > 1 else ''} read")
        if problem is not None:
            outcome.cut_short(key, f"FHIR server: {problem.reason}")
        if key in partial:
            outcome.cut_short(key, partial[key])
        log.debug("prefetch key %s fetched", key)

    if jobs:
        try:
            async with asyncio.timeout(deadline_seconds - (time.perf_counter() - started)):
                await asyncio.gather(*(run(key, job) for key, job in jobs.items()))
        except TimeoutError:
            for key in jobs:
                if key not in outcome.resources and key not in outcome.failed:
                    outcome.failed[key] = f"no answer from FHIR server within the {deadline_seconds:g} s deadline"
                    log.warning("prefetch key %s failed: deadline of %g s passed", key, deadline_seconds)
    for key, (value, why) in fallback.items():
        if key in outcome.failed:  # the server could not complete it: the EHR's partial answer, never as complete
            outcome.failed.pop(key)
            outcome.resources[key] = value
            outcome.cut_short(key, why)
    for key, value in first_pages.items():
        if key in outcome.failed:  # the rest of the EHR's search could not be read: its first page, as cut short
            failure = outcome.failed.pop(key)
            outcome.resources[key] = value
            outcome.cut_short(key, f"the EHR sent the first page of a search, and the rest could not be read "
                                   f"({failure})")
    outcome.elapsed_ms = (time.perf_counter() - started) * 1000
    return outcome


_MEDICATION_REF = re.compile(r"^Medication/([A-Za-z0-9\-.]{1,64})(/_history/[A-Za-z0-9\-.]{1,64})?$")


def _merged(ehr: dict[str, Any], server: dict[str, Any]) -> dict[str, Any]:
    """The server's answer with the matches of the EHR's own partial answer that it lacks (by type and id)."""
    entries = _entries(server) if server.get("resourceType") == "Bundle" else [{"resource": server}]
    seen = {(e["resource"].get("resourceType"), e["resource"].get("id")) for e in entries
            if isinstance(e, dict) and isinstance(e.get("resource"), dict)}
    for entry in ehr.get("entry") or []:
        res = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(res, dict) and res.get("resourceType") != "OperationOutcome" and \
                (res.get("resourceType"), res.get("id")) not in seen:
            entries.append(entry)
    merged = {k: v for k, v in server.items() if k not in ("entry", "total")} if server.get("resourceType") == \
        "Bundle" else {"resourceType": "Bundle", "type": "searchset"}
    merged["entry"] = entries
    return merged


async def fetch_medications(
    references: list[str],
    *,
    fhir_server: str,
    access_token: str | None,
    client: httpx.AsyncClient,
    deadline_seconds: float,
    limit: int = 200,
    max_response_bytes: int = MAX_RESPONSE_BYTES,
    scope: str | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Read the Medication resources that medicationReference points to but the prefetch did not include.

    `Medication/<id>` references (version-specific `/_history/<v>` too), relative or absolute under fhirServer, are
    read from fhirServer, concurrently and within the deadline, if the token's scope grants reading Medication.
    Returns a collection Bundle of what was read and the reason for each reference that was not.
    """
    fetcher = _Fetcher(client, fhir_server, access_token, 1, max_response_bytes)
    base = fetcher.base + "/"
    relative = {r: r[len(base):] if r.startswith(base) else r for r in dict.fromkeys(references)}
    # the resource a reference names, as the index will look it up (a version-specific one resolves to the resource)
    full_url = {r: base + rel.split("/_history/", 1)[0] for r, rel in relative.items()}
    wanted = [r for r, rel in relative.items() if _MEDICATION_REF.match(rel)]
    failed: dict[str, str] = {r: "not a Medication reference on fhirServer" for r, rel in relative.items()
                              if not _MEDICATION_REF.match(rel)}
    failed.update({r: f"more than {limit} referenced Medications; not read" for r in wanted[limit:]})
    wanted = wanted[:limit]
    found: list[dict[str, Any]] = []
    if granted(scope, "Medication", "read") == "none":
        failed.update({r: "the access token's scope (fhirAuthorization.scope) does not grant reading Medication"
                       for r in wanted})
        wanted = []

    async def one(ref: str) -> None:
        try:
            body = await fetcher.get_json(f"{base}{relative[ref]}")
        except _FetchError as exc:
            failed[ref] = str(exc)
            return
        except (httpx.InvalidURL, ValueError, TypeError) as exc:
            failed[ref] = f"unusable FHIR server answer ({type(exc).__name__})"
            return
        if body.get("resourceType") != "Medication":
            failed[ref] = f"FHIR server answered a {body.get('resourceType')}, not a Medication"
            return
        found.append({"fullUrl": full_url[ref], "resource": body})

    if wanted and deadline_seconds > 0:
        try:
            async with asyncio.timeout(deadline_seconds):
                await asyncio.gather(*(one(r) for r in wanted))
        except TimeoutError:
            got = {e["fullUrl"] for e in found}
            for ref in wanted:
                if ref not in failed and full_url[ref] not in got:
                    failed[ref] = "no answer from FHIR server within the deadline"
    elif wanted:
        failed.update({r: "no time left within the prefetch deadline" for r in wanted})
    return {"resourceType": "Bundle", "type": "collection", "entry": found}, failed
