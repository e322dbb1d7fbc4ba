"""What a search Bundle says about its own completeness.

Exists because an EHR or FHIR server can answer a search with HTTP 200 and still say it failed or left results out:
an OperationOutcome entry (`search.mode = outcome`, FHIR R4 §3.1.1.4.1) with an issue of severity `error` or
`fatal` (the search did not run), a `warning` that results were suppressed, cut short or throttled, or a
`Bundle.total` — "the number of entries of type 'match' across all pages" — larger than the matches sent with no
page left to read. CDS Hooks 2.0 §Prefetch: "CDS Services SHOULD check any prefetched data for the existence of
OperationOutcomes". Read as a complete search, any of these turns "not found" into a false "No".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

# Issue codes (FHIR R4 IssueType) that say a search's results may be incomplete when given as a warning or
# information: business rules or consent withheld some, the server stopped early, or it ran out of time.
_INCOMPLETE_CODES = frozenset({"suppressed", "incomplete", "too-costly", "throttled", "timeout", "too-long",
                               "transient"})


@dataclass(frozen=True)
class SearchProblem:
    """`failed`: the search did not run (an error outcome and no match), nothing in it can be read as the patient's
    record; `partial`: what it holds is real, but absence cannot be assumed from it."""

    kind: Literal["failed", "partial"]
    reason: str


def search_problem(value: Any) -> SearchProblem | None:
    """Why a searchset Bundle cannot be read as complete, or None (any other resource: None)."""
    if not isinstance(value, dict) or value.get("resourceType") != "Bundle":
        return None
    entries = value.get("entry")
    if not isinstance(entries, list):
        entries = []
    matches = 0
    partial: str | None = None
    failed: str | None = None
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        res = entry.get("resource")
        search = entry.get("search")
        mode = search.get("mode") if isinstance(search, dict) else None
        if isinstance(res, dict) and res.get("resourceType") == "OperationOutcome":
            # an outcome is never the patient's data, whatever its mode says (servers that omit search.mode)
            for severity, code in _issues(res):
                if severity in ("error", "fatal") and failed is None:
                    failed = f"the search reported an {severity} ({code})"
                elif code in _INCOMPLETE_CODES and partial is None:
                    partial = f"the search reported that results may be missing ({severity}: {code})"
            continue
        if mode in (None, "match"):
            matches += 1
    if failed is not None:
        # matches beside an error: the search ran and some of it failed (an _include over a server's limit):
        # what it found is real, what it did not find is unknown
        return SearchProblem("partial" if matches else "failed", failed)
    if partial is not None:
        return SearchProblem("partial", partial)
    total = value.get("total")
    if isinstance(total, int) and not isinstance(total, bool) and total > matches:
        return SearchProblem("partial", f"the search counted {total} match{'es' if total != 1 else ''} but "
                                        f"{matches} {'was' if matches == 1 else 'were'} sent")
    return None


def _issues(outcome: dict[str, Any]) -> list[tuple[str, str]]:
    issues = outcome.get("issue")
    out: list[tuple[str, str]] = []
    for issue in issues if isinstance(issues, list) else []:
        if isinstance(issue, dict):
            severity = issue.get("severity") if isinstance(issue.get("severity"), str) else "unknown"
            code = issue.get("code") if isinstance(issue.get("code"), str) else "unknown"
            out.append((severity, code))
    return out
