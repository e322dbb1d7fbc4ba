"""Keeps a serving process's champions in step with the promotion audit chain, without a restart.

Every process (each replica, each `serve --workers` worker) polls the newest audit record's seq from the shared store
every POLL_SECONDS: one indexed `max(seq)` query. When it changes, the process reads the chains, verifies them, checks
that each governed version folder still holds the files that were approved (their SHA-256 are in the record), and
moves the champion and shadow challenger of each model (ModelEntry.set_aliases) on the event loop, between requests.
A model whose chain does not verify, or whose approved files were changed, is not served by a guess: its services
answer 503 naming the problem until the chain or the folder is put right.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from cds_hooks.services import CdsService
from inference.promotion import Aliases, digest_mismatch, governed_aliases
from inference.repository import ModelEntry, ModelFolderError, ModelRepository
from store.audit import AuditRecord, verify_chain
from store.store import Store

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0


@dataclass
class SyncPlan:
    """What the chain says each model's aliases are, and the models that cannot be served as governed."""

    head: int
    aliases: dict[str, tuple[Aliases, int]] = field(default_factory=dict)  # model -> (aliases, record seq)
    problems: dict[str, str] = field(default_factory=dict)


def governed_state(store: Store, repository: ModelRepository, head: int) -> SyncPlan:
    """Blocking: each served model's champion and challenger as the verified audit chain and the approved files say
    (models with no record keep aliases.yaml), and the models that cannot be served as governed, with why. Used by
    every serving process and by population scoring, so both score with the same champion."""
    plan = SyncPlan(head)
    by_model: dict[str, list[AuditRecord]] = {}
    for rec in store.audit_records():
        by_model.setdefault(rec.model_id, []).append(rec)
    for model_id, records in by_model.items():
        entry = repository.entries.get(model_id)
        if entry is None:
            continue  # a model this deployment does not serve
        check = verify_chain(model_id, records)
        if not check.ok:
            plan.problems[model_id] = f"its promotion audit chain does not verify: {check.problem}"
            continue
        aliases = governed_aliases(entry, records)
        governing = records[-1]  # the record that made the current champion
        if aliases.champion not in entry.versions:
            plan.problems[model_id] = (f"audit record #{governing.seq} makes {aliases.champion} the champion but "
                                       f"{repository.root / model_id / aliases.champion} is not loaded")
            continue
        changed = digest_mismatch(repository.root / model_id / aliases.champion, governing.files_doc)
        if changed:
            plan.problems[model_id] = (f"the files of {model_id} {aliases.champion} differ from those approved in "
                                       f"audit record #{governing.seq} ({changed})")
            continue
        if aliases.challenger is not None and aliases.challenger not in entry.versions:
            aliases = Aliases(aliases.champion, None)
        plan.aliases[model_id] = (aliases, governing.seq)
    return plan


@dataclass
class ChampionSync:
    store: Store
    repository: ModelRepository
    services: dict[str, CdsService]
    on_switch: Callable[[ModelEntry], None] | None = None  # e.g. relabel the model's metrics
    poll_seconds: float = POLL_SECONDS
    head: int | None = None  # the newest audit seq applied (None: never read)
    problems: dict[str, str] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None

    def read(self) -> SyncPlan | None:
        """Blocking (run it in a thread): the plan for the newest chain state, or None when nothing changed."""
        head = self.store.audit_head()
        if head == self.head and not self.problems:  # a model not served is checked again until it can be
            return None
        return governed_state(self.store, self.repository, head)

    def apply(self, plan: SyncPlan) -> None:
        """On the event loop: move the aliases and rebuild the affected services' prefetch plans."""
        for model_id, (aliases, seq) in plan.aliases.items():
            entry = self.repository.entries[model_id]
            current = (entry.champion.version, entry.challenger.version if entry.challenger else None)
            if current == (aliases.champion, aliases.challenger):
                continue
            champion = entry.versions[aliases.champion]
            hooks = {s.hook for s in self.services.values() if s.model is entry}
            if hooks and hooks != set(champion.manifest.hooks):
                plan.problems[model_id] = (f"{aliases.champion} serves other hooks than the running services "
                                           f"({', '.join(sorted(hooks))}); restart to serve it")
                continue
            try:
                entry.set_aliases(aliases.champion, aliases.challenger)
            except ModelFolderError as exc:
                plan.problems[model_id] = str(exc)
                continue
            prefetch = champion.spec.prefetch_plan(champion.valuesets)
            for sid, svc in list(self.services.items()):
                if svc.model is entry:
                    self.services[sid] = CdsService(sid, svc.hook, entry, prefetch)
            if self.on_switch is not None:
                self.on_switch(entry)
            log.info("model %s: champion %s, challenger %s (audit record #%d)", model_id, aliases.champion,
                     aliases.challenger or "none", seq)
        for model_id, problem in plan.problems.items():
            if self.problems.get(model_id) != problem:
                log.error("model %s is not served: %s", model_id, problem)
        self.problems = dict(plan.problems)
        self.head = plan.head

    async def sync(self) -> None:
        plan = await asyncio.to_thread(self.read)
        if plan is not None:
            self.apply(plan)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await self.sync()
            except Exception as exc:  # a store outage must not end the polling; /readyz reports the store itself
                log.warning("promotion audit not read (%s); keeping the current champions", type(exc).__name__)

    async def start(self) -> None:
        """Apply the chain once (before the first request), then keep polling."""
        await self.sync()
        self._task = asyncio.create_task(self._poll())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
