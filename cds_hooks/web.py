"""Pages and documents a person opens from a card: model cards (JSON and HTML) and the card source icon.

Every card's `source.url` and "Model card" link point at /models/{id}/card, so a clinician can read the model's
intended use, inputs, limitations and HTI-1 source attributes in one click. `?version=V` shows any loaded version (a
challenger is reviewed before it is promoted, a replaced champion after), and the card carries the model's promotion
history from the audit chain (who, when, why, from which version to which, and the evidence).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import Callable
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from cds_hooks.errors import ApiError
from inference.model_card import attribute_rows, evidence_figures
from inference.repository import ModelEntry, ModelRepository
from inference.runtime import ModelRuntime
from fhir_mapping.formatting import number, quantity, unit_label
from store.audit import verify_chain

_STYLE = re.compile(r"<style>(.*?)</style>", re.DOTALL)


def page_csp(page: str) -> str:
    """A Content-Security-Policy for a rendered page: nothing but this origin, no scripts, and the page's own inline
    <style> blocks allowed by hash (so injected markup can neither run script nor add styles).
    The middleware adds frame-ancestors from configuration."""
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(m.encode()).digest()).decode()}'"
                      for m in _STYLE.findall(page))
    return (f"default-src 'none'; img-src 'self' data:; style-src 'self' {hashes}; base-uri 'none'; "
            "form-action 'none'").replace("  ", " ")


_html = Environment(loader=PackageLoader("cds_hooks", "templates"), autoescape=select_autoescape(["html"]))
_html.filters["unit"] = lambda unit: {"a": "years", "1": "yes/no"}.get(unit, unit_label(unit)) if unit else ""
_html.filters["num"] = lambda value: number(float(value), 2)


def _threshold(manifest: Any, category: Any) -> str:
    """'below 5%' for a probability, 'at least 5' for a score: the category bound as a clinician reads it."""
    output = next((o for o in manifest.outputs if o.name == (category.output or manifest.primary.name)),
                  manifest.primary)
    def shown(value: float) -> str:
        if output.kind == "probability":
            return f"{number(value * 100, 1)}%"
        return quantity(value, output.unit, 2) if output.unit else number(value, 2)
    parts = []
    if category.at_least is not None:
        parts.append(f"at least {shown(category.at_least)}")
    if category.below is not None:
        parts.append(f"below {shown(category.below)}")
    return " and ".join(parts) if parts else "the rest"


def model_document(entry: ModelEntry, base_url: str, runtime: ModelRuntime | None = None,
                   history: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON model card of a model: one version's manifest (the champion's unless `runtime` names another),
    versions, aliases, HTI-1 attributes and, when given, the promotion history from the audit chain."""
    runtime = runtime or entry.champion
    m = runtime.manifest
    doc: dict[str, Any] = {
        "id": m.id,
        "title": m.title,
        "kind": m.kind,
        "version": m.version,
        "alias": _alias(entry, runtime),
        "champion": entry.champion.version,
        "challenger": entry.challenger.version if entry.challenger else None,
        "versions": sorted(entry.versions),
        "hooks": list(m.hooks),
        "description": m.description,
        "intended_population": m.intended_population,
        "inputs": [i.model_dump(exclude_none=True) for i in m.inputs],
        "outputs": [o.model_dump(exclude_none=True) for o in m.outputs],
        "categories": [c.model_dump(exclude_none=True) for c in m.categories],
        "population": [p.model_dump(exclude_none=True) for p in m.population],
        "limitations": list(m.limitations),
        "citation": m.citation,
        "citation_url": m.citation_url,
        "model_card": m.model_card,
        "acceptance": m.acceptance.model_dump(mode="json"),
        "card_url": f"{base_url}/models/{m.id}/card" + ("" if runtime is entry.champion else f"?version={m.version}"),
    }
    if history is not None:
        doc["history"] = history
    return doc


def _alias(entry: ModelEntry, runtime: ModelRuntime) -> str:
    return "champion" if runtime is entry.champion else "challenger" if runtime is entry.challenger else "inactive"


def _version_or_404(entry: ModelEntry, version: str | None) -> ModelRuntime:
    if version is None:
        return entry.champion
    runtime = entry.versions.get(version)
    if runtime is None:
        raise ApiError(404, f"model '{entry.id}' has no loaded version '{version}' (versions: "
                       f"{', '.join(sorted(entry.versions))})", "version", code="not-found")
    return runtime


async def promotion_history(request: Request, model_id: str) -> dict[str, Any] | None:
    """The model's audit chain as shown on its card: records newest first with their key figures, and whether the
    chain verifies. None while the store is not open (before start-up finished)."""
    cds = getattr(request.app.state, "cds", None)
    if cds is None:
        return None
    records = await asyncio.to_thread(cds.store.audit_records, model_id)
    check = verify_chain(model_id, records)
    return {
        "verified": check.ok, "records": check.records, "problem": check.problem, "summary": check.summary(),
        "entries": [{"seq": r.seq, "recorded_at": r.recorded_at, "action": r.action, "from_version": r.from_version,
                     "to_version": r.to_version, "approver": r.approver, "reason": r.reason,
                     "evidence_digest": r.evidence_digest, "record_hash": r.record_hash,
                     "figures": evidence_figures(r.evidence_doc)} for r in reversed(records)],
    }


def _runtime_view(runtime: ModelRuntime) -> dict[str, Any]:
    m = runtime.manifest
    return {"m": m, "attributes": attribute_rows(m), "features": runtime.spec.features,
            "thresholds": {c.label: _threshold(m, c) for c in m.categories}}


def register_pages(app: FastAPI, repository: ModelRepository, base_url: Callable[[Request], str]) -> None:
    icon = (resources.files("cds_hooks") / "static" / "icon.png").read_bytes()

    def entry_or_404(model_id: str) -> ModelEntry:
        entry = repository.entries.get(model_id)
        if entry is None:
            raise ApiError(404, f"no model '{model_id}'", "id", code="not-found")
        return entry

    @app.get("/static/icon.png")
    async def source_icon() -> Response:
        return Response(icon, media_type="image/png", headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/models")
    async def list_models(request: Request) -> dict[str, Any]:
        base = base_url(request)
        return {"models": [
            {"id": e.id, "title": e.champion.manifest.title, "champion": e.champion.version,
             "challenger": e.challenger.version if e.challenger else None, "card_url": f"{base}/models/{e.id}/card"}
            for e in repository.entries.values()
        ]}

    @app.get("/models/{model_id}")
    async def get_model(model_id: str, request: Request, version: str | None = None) -> dict[str, Any]:
        entry = entry_or_404(model_id)
        runtime = _version_or_404(entry, version)
        return model_document(entry, base_url(request), runtime, await promotion_history(request, model_id))

    @app.get("/models/{model_id}/card", response_class=HTMLResponse)
    async def model_card_page(model_id: str, request: Request, version: str | None = None) -> HTMLResponse:
        entry = entry_or_404(model_id)
        runtime = _version_or_404(entry, version)
        page = _html.get_template("model_card.html").render(
            entry=entry, alias=_alias(entry, runtime), history=await promotion_history(request, model_id),
            versions=sorted(entry.versions), **_runtime_view(runtime))
        return HTMLResponse(page, headers={"Content-Security-Policy": page_csp(page)})
