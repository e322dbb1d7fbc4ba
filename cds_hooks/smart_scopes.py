"""What the EHR's access token may read, from `fhirAuthorization.scope` (SMART App Launch scopes, v1 and v2).

Exists because a FHIR server may answer a search the token does not cover with HTTP 200 and only what the token may
see — nothing — rather than 403 (servers that filter by granted scope, SMART v2 granular scopes such as
`patient/Condition.rs?category=problem-list-item`). Read as complete, that empty answer is a false "No". The service
asks this module before it fetches: a type the scope does not grant is not fetched (the key cannot be obtained), and
a type granted only in part is fetched but never read as complete. A scope string naming no resource scope at all
says nothing either way (the server decides, and its refusal is reported).
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import parse_qsl

Grant = Literal["all", "some", "none", "unknown"]

_V1 = re.compile(r"^(?:patient|user|system)/(\*|[A-Z][A-Za-z]*)\.(read|write|\*)$")
_V2 = re.compile(r"^(?:patient|user|system)/(\*|[A-Z][A-Za-z]*)\.([cruds]+)(\?\S*)?$")


def granted(scope: str | None, resource_type: str, action: Literal["read", "search"], query: str = "") -> Grant:
    """Whether the scopes grant `action` on `resource_type`: "all", "some" (only with a query restriction the
    search's own `query` does not carry), "none", or "unknown" (no scope string, or one with no resource scopes)."""
    if not scope:
        return "unknown"
    letter = "r" if action == "read" else "s"
    seen_resource_scope = False
    best: Grant = "none"
    for clause in scope.split():
        if m := _V1.match(clause):
            seen_resource_scope = True
            if m.group(1) in ("*", resource_type) and m.group(2) in ("read", "*"):
                return "all"
        elif m := _V2.match(clause):
            seen_resource_scope = True
            if m.group(1) in ("*", resource_type) and letter in m.group(2):
                if not m.group(3) or _within(m.group(3)[1:], query):
                    return "all"
                best = "some"
    return best if seen_resource_scope else "unknown"


def _within(restriction: str, query: str) -> bool:
    """A search asking for every parameter the restriction sets, with the same values, stays inside it."""
    asked = set(parse_qsl(query, keep_blank_values=True))
    return all(pair in asked for pair in parse_qsl(restriction, keep_blank_values=True))


def template_type(relative: str) -> tuple[str, Literal["read", "search"]] | None:
    """The resource type a rendered prefetch query asks for and how: `Condition?patient=1` → search,
    `Patient/1` → read; None for anything else (a system-level search, an operation)."""
    head = relative.lstrip("/").split("?", 1)
    path = head[0].split("/")
    if not path or not re.fullmatch(r"[A-Z][A-Za-z]*", path[0]):
        return None
    if len(path) == 1:
        return path[0], "search"
    if len(path) == 2 and path[1] and not path[1].startswith(("$", "_")):
        return path[0], "read"
    return None
