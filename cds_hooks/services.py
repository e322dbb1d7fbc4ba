"""CDS services offered by this deployment: one per (model, hook), derived from the model repository.

A model serving one hook is offered under its model id; a model serving several hooks is offered once per hook as
`<model-id>-<hook>`. Discovery entries declare the prefetch templates generated from the model's feature spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir_mapping.spec import PrefetchKey
from inference.repository import ModelEntry, ModelRepository


@dataclass(frozen=True)
class CdsService:
    id: str
    hook: str
    model: ModelEntry
    plan: dict[str, PrefetchKey]

    def discovery(self) -> dict[str, Any]:
        manifest = self.model.champion.manifest
        entry: dict[str, Any] = {
            "hook": self.hook,
            "title": manifest.title,
            "description": manifest.description,
            "id": self.id,
        }
        if self.plan:
            entry["prefetch"] = {key: pk.template for key, pk in self.plan.items()}
        types = sorted({pk.template.split("?")[0].split("/")[0] for pk in self.plan.values()})
        entry["usageRequirements"] = (
            f"Reads the patient's {', '.join(types)} resources: send them as prefetch, or give fhirServer and "
            "fhirAuthorization with read access (patient/*.read)."
        )
        return entry


def build_services(repository: ModelRepository) -> dict[str, CdsService]:
    services: dict[str, CdsService] = {}
    for entry in repository.entries.values():
        runtime = entry.champion
        plan = runtime.spec.prefetch_plan(runtime.valuesets)
        hooks = runtime.manifest.hooks
        for hook in hooks:
            service_id = entry.id if len(hooks) == 1 else f"{entry.id}-{hook}"
            services[service_id] = CdsService(service_id, hook, entry, plan)
    return services


def listed_services(services: dict[str, CdsService], one_per_question: bool = True,
                    also: list[str] | tuple[str, ...] = ()) -> list[CdsService]:
    """The services discovery advertises: per hook, one service per clinical question (lowest question_rank, then
    id), plus any the deployment lists explicitly."""
    if not one_per_question:
        return list(services.values())
    best: dict[tuple[str, str], CdsService] = {}
    for svc in services.values():
        manifest = svc.model.champion.manifest
        if manifest.question is None:
            continue
        key = (svc.hook, manifest.question)
        current = best.get(key)
        if current is None or (manifest.question_rank, svc.id) < (current.model.champion.manifest.question_rank,
                                                                    current.id):
            best[key] = svc
    chosen = {s.id for s in best.values()} | set(also)
    return [s for s in services.values() if s.model.champion.manifest.question is None or s.id in chosen]
