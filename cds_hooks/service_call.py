"""One CDS service call, in the house's one-way order: prefetch → features → model → cards, recording on the side.

Data the model requires that cannot be obtained (a prefetch key neither sent nor fetchable) is answered 412 with an
OperationOutcome; data that was obtained but holds no usable value gives a card saying what is missing.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any, Literal

import httpx

from cards.builder import CardContext, build_cards
from cds_hooks.details.links import details_token
from cds_hooks.auth import ClientIdentity, TrustedClient, fhir_server_allowed
from cds_hooks.cohort import cohort_of
from cds_hooks.errors import ApiError, bad_request
from cds_hooks.hooks import ENCOUNTER_HOOKS, ORDER_HOOKS, validate_context
from cds_hooks.pipeline import (REFERENCED_MEDICATIONS_KEY, index_of, map_patient, predict, same_inputs,
                                same_result, unresolved_medications)
from cds_hooks.prefetch import PrefetchOutcome, fetch_medications, resolve_prefetch
from cds_hooks.request import HookRequest
from cds_hooks.services import CdsService
from fhir_mapping.draft_orders import draft_entries, read_drafts, unresolved_draft_medications
from fhir_mapping.index import ANOTHER_PATIENT
from fhir_mapping.result import CUT_SHORT, NOTHING_ON_RECORD, UNRETRIEVED, MappingResult, MissingFeature, searches_lacking, searches_named
from fhir_mapping.unread import carry_into_derived
from fhir_mapping.spec import FeatureSpec
from fhir_mapping.timeline import TimelineFeatureSpec, mark_record_gaps
from inference.repository import ModelEntry
from inference.runtime import ModelRuntime, Prediction
from store.records import CardRecord, PredictionRecord

log = logging.getLogger(__name__)


@dataclass
class CallResult:
    """The response body and what happened on the way (for metrics and the CLI)."""

    body: dict[str, Any]
    prefetch: PrefetchOutcome
    mapping: MappingResult
    prediction: Prediction
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class ServiceCaller:
    http_client: httpx.AsyncClient
    record: Callable[..., None]  # record(*predictions): returns once they are durable; raises OSError if they cannot be
    deadline_seconds: float = 0.8
    max_pages: int = 5
    anonymous_fhir_servers: tuple[str, ...] = ()
    smart_app_url: str | None = None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    time_zone: tzinfo | None = None  # the patients' local zone (configuration), else read from the record
    max_response_bytes: int = 20_000_000  # cap on the bytes of one FHIR server answer
    details_secret: bytes | None = None  # signs the cards' details links (none without it)
    min_category: dict[str, str] = field(default_factory=dict)  # service id -> lowest category shown as a card
    smart_launch: bool = False  # cards also link the details view as a SMART app (smart.clients configured)
    details_ttl_seconds: int = 12 * 3600
    # CPU stages and the journal sync in a worker thread (server.call_stages_in_thread). Off by default: under the GIL
    # the hand-offs between the loop and the thread cost more than the loop gains (docs/performance.md).
    offload: bool = False

    async def call(self, service: CdsService, req: HookRequest, identity: ClientIdentity, base_url: str) -> CallResult:
        if req.hook != service.hook:
            raise bad_request(f"service '{service.id}' serves the {service.hook} hook, not {req.hook}", "hook")
        validate_context(req.hook, req.context)
        if req.fhir_server is not None:
            client = identity.client
            if identity.iss == "anonymous":
                client = TrustedClient(iss="anonymous", fhir_servers=self.anonymous_fhir_servers)
            if not fhir_server_allowed(client, req.fhir_server):
                raise ApiError(403, "fhirServer is not a FHIR server this client is allowed to name", "fhirServer",
                               code="forbidden")
        timings: dict[str, float] = {}
        at = self.clock()
        t0 = time.perf_counter()
        templates = {key: pk.template for key, pk in service.plan.items()}
        outcome = await resolve_prefetch(
            templates, req.prefetch, context=req.context, fhir_server=req.fhir_server, access_token=req.access_token,
            client=self.http_client, deadline_seconds=self.deadline_seconds, max_pages=self.max_pages,
            max_response_bytes=self.max_response_bytes, scope=req.scope,
            token_patient=(req.fhir_authorization or {}).get("patient"),
        )
        if outcome.failed:
            log.info("service %s: prefetch keys not obtained: %s", service.id, ", ".join(sorted(outcome.failed)))

        # one consistent champion/challenger pair for the whole call, read on the event loop where a promotion moves
        # them (cds_hooks/champion_sync.py)
        model = service.model.snapshot()
        champion = model.champion
        index = index_of(service, outcome.resources)
        unresolved = unresolved_medications(index)
        if req.hook in ORDER_HOOKS:  # a drug being ordered by reference to a Medication on the server
            unresolved = list(dict.fromkeys(unresolved + unresolved_draft_medications(req.context, index)))
        if unresolved and req.fhir_server is not None:
            remaining = self.deadline_seconds - (time.perf_counter() - t0)
            bundle, not_read = await fetch_medications(
                unresolved, fhir_server=req.fhir_server, access_token=req.access_token, client=self.http_client,
                deadline_seconds=remaining, max_response_bytes=self.max_response_bytes, scope=req.scope)
            if bundle["entry"]:
                outcome.resources[REFERENCED_MEDICATIONS_KEY] = bundle
                index = index_of(service, outcome.resources)
            if not_read:
                log.info("service %s: %d referenced Medication(s) not read", service.id, len(not_read))
                index.unread_medications.update(not_read)
        elif unresolved:
            index.unread_medications.update(
                {ref: "not sent with the prefetch, and no fhirServer to read it from" for ref in unresolved})
        timings["prefetch"] = (time.perf_counter() - t0) * 1000

        patient_id = str(req.context["patientId"])
        _same_patients_encounter(index, patient_id, req.context.get("encounterId"))

        def compute() -> tuple[MappingResult, Prediction, list[dict[str, Any]]]:
            """Mapping → inference → rendering → durable recording: CPU and one journal sync, no network; on the
            event loop unless `offload` (below)."""
            t1 = time.perf_counter()

            # the encounter the hook acts on (being started or discharged); patient-view's encounterId is only the
            # chart's context, which may be an earlier visit of a patient now in hospital
            acted_on = req.context.get("encounterId") if req.hook in ENCOUNTER_HOOKS else None

            def mapped(partial_birth: Literal["missing", "first", "last"] = "missing"
                       ) -> tuple[MappingResult, list[str]]:
                result = map_patient(champion, index, at=at, patient_id=patient_id, time_zone=self.time_zone,
                                     partial_birth=partial_birth, encounter_id=acted_on)
                gone = _mark_unobtainable(service, outcome, result)
                cut = _mark_truncated(service, outcome, result, self.max_pages)
                if isinstance(champion.spec, FeatureSpec) and not isinstance(champion.spec, TimelineFeatureSpec):
                    carry_into_derived(champion.spec, result, [*gone, *cut])
                    gone += _derived_from_unobtained(champion.spec, result, gone)
                mark_record_gaps(result, champion.spec, service.plan, outcome.failed, outcome.truncated)  # timelines
                return result, gone

            mapping, unobtainable = mapped()
            either: tuple[MappingResult, tuple[Prediction, Prediction | None]] | None = None
            if mapping.age_uncertain is not None and not isinstance(champion.spec, TimelineFeatureSpec):
                # a birth date written as a year or month alone gives two ages: read the record with each, and use
                # them only when everything the card shows and the store keeps is the same either way: the inputs,
                # the champion's result and the challenger's (else the age stays missing, naming both). A timeline
                # model reads the birth date itself, so it keeps the age missing
                oldest, youngest = mapped("first")[0], mapped("last")[0]
                first, second = predict(model, oldest), predict(model, youngest)
                shadows = model.challenger is None or first[1] is None or second[1] is None or \
                    same_result(model.challenger.manifest, first[1], second[1])
                if same_inputs(oldest, youngest) and same_result(champion.manifest, first[0], second[0]) and shadows:
                    either = oldest, first
            timings["mapping"] = (time.perf_counter() - t1) * 1000
            required_gone = [name for name in unobtainable if mapping.missing[name].required]
            if required_gone:
                feeding = set(required_gone)  # with the inputs a derived one rests on (an eGFR's creatinine)
                for name in reversed(champion.spec.derivation_order()
                                     if isinstance(champion.spec, FeatureSpec) else []):
                    if name in feeding:
                        feeding |= champion.spec.derived_inputs(name)
                keys = sorted({k for k in outcome.failed if set(service.plan[k].features) & feeding})
                detail = "; ".join(f"{k}: {outcome.failed[k]}" for k in keys)
                raise ApiError(412, f"required data could not be obtained ({detail})", "prefetch", code="not-found")

            t2 = time.perf_counter()
            if either is not None:
                mapping, (prediction, shadow) = either
            else:
                prediction, shadow = predict(model, mapping)
            timings["inference"] = (time.perf_counter() - t2) * 1000

            t3 = time.perf_counter()
            encounter_id = req.context.get("encounterId")
            prediction_id = str(uuid.uuid4())
            details_url = None
            if self.details_secret is not None:
                token = details_token(prediction_id, self.details_secret, at, self.details_ttl_seconds)
                details_url = f"{base_url}/details/{token}"
            # order-select/order-sign: the orders being placed, named on the card and not suggested again
            drafts = tuple(read_drafts(champion.spec, draft_entries(req.context), champion.valuesets, patient_id,
                                       index)) if req.hook in ORDER_HOOKS and isinstance(champion.spec, FeatureSpec) \
                else ()
            ctx = CardContext(service.id, patient_id, encounter_id, at, base_url, self.smart_app_url, details_url,
                              f"{base_url}/smart/launch" if self.smart_launch and details_url else None, drafts)
            cards = build_cards(champion.manifest, champion.spec, prediction, mapping, ctx)
            if _below_threshold(champion.manifest, prediction, self.min_category.get(service.id)):
                cards = []  # recorded below, not shown: the deployment shows this service only from a category up
            timings["rendering"] = (time.perf_counter() - t3) * 1000

            t4 = time.perf_counter()
            cohort = cohort_of(index.patient(patient_id), at)
            records = [self._prediction_record(service, req, identity, at, champion, mapping, prediction, cards,
                                               cohort, prediction_id)]
            if shadow is not None and model.challenger is not None:
                records.append(self._prediction_record(service, req, identity, at, model.challenger, mapping, shadow,
                                                       [], cohort))
            self._record_durably(records)  # the response goes out only once its predictions are on disk
            timings["recording"] = (time.perf_counter() - t4) * 1000
            return mapping, prediction, cards

        # A model served by a remote inference server (OIP v2) waits for the network in `predict`: never on the loop.
        if self.offload or _calls_a_model_server(model):  # the loop keeps serving other calls meanwhile
            mapping, prediction, cards = await asyncio.to_thread(compute)
        else:
            mapping, prediction, cards = compute()
        return CallResult({"cards": cards}, outcome, mapping, prediction, timings)

    def _record_durably(self, records: list[PredictionRecord]) -> None:
        """The call's predictions (champion, and the challenger in shadow) in one durable write; 503 if it fails."""
        try:
            self.record(*records)
        except OSError as exc:  # the journal could not make them durable: no card may go out unrecorded
            raise ApiError(503, "the prediction could not be recorded durably, so no card is given; retry",
                           "prediction", code="transient") from exc
        except Exception as exc:  # the recorder could not even take them
            log.exception("recording prediction %s failed", records[0].prediction_id)
            raise ApiError(503, "the prediction could not be recorded, so no card is given; retry",
                           "prediction", code="transient") from exc

    @staticmethod
    def _prediction_record(service: CdsService, req: HookRequest, identity: ClientIdentity, at: datetime,
                           runtime: ModelRuntime, mapping: MappingResult, prediction: Prediction,
                           cards: list[dict[str, Any]], cohort: dict[str, str],
                           prediction_id: str | None = None) -> PredictionRecord:
        return PredictionRecord(
            prediction_id=prediction_id or str(uuid.uuid4()),
            hook_instance=req.hook_instance,
            hook=req.hook,
            service_id=service.id,
            model_id=runtime.id,
            model_version=runtime.version,
            alias=prediction.alias,
            patient_id=str(req.context["patientId"]),
            encounter_id=req.context.get("encounterId"),
            created_at=at,
            features={
                name: {
                    "value": fv.value,
                    "unit": fv.unit,
                    "defaulted": fv.defaulted,
                    # how each value was read ('converted from 1.2 mmol/L') goes with it to the details page
                    "sources": [{"reference": s.reference, "date": s.date, **({"note": s.note} if s.note else {}),
                                 **({"display": s.display} if s.display and s.resource_type != "Patient" else {}),
                                 # the number and unit as written (card notes categorise some by the unit written)
                                 **({"written": [s.original_value, s.original_unit]}
                                    if isinstance(s.original_value, (int, float))
                                    and not isinstance(s.original_value, bool) and s.original_unit else {})}
                                for s in fv.sources],
                    "display": fv.display,  # e.g. "Yes — amlodipine 5 MG Oral Tablet, recognised by RxNorm code …"
                    "note": fv.note,  # e.g. the default's note naming active medications that were not recognised
                    "unchecked": list(fv.unchecked),  # the keys a default could not look in ("not fully checked")
                    # a derived value as reported (an eGFR of 29.8 as 30): the details page's advice tests it
                    **({"reported": fv.reported} if fv.reported is not None else {}),
                }
                for name, fv in mapping.values.items()
            },
            missing={name: m.reason for name, m in mapping.missing.items()},
            bounds={name: bound for name, m in mapping.missing.items() if (bound := m.bound()) is not None},
            outputs=prediction.outputs,
            category=prediction.category.label if prediction.category else None,
            guard_reasons=list(prediction.refusals),
            # one entry per reason: a refusal no guard attributes (death, a non-finite value) is ""
            refused_by=list(prediction.refused_by) if len(prediction.refused_by) == len(prediction.refusals)
            else [""] * len(prediction.refusals),
            cards=[
                CardRecord(c["uuid"], c["summary"], c["indicator"], [s["uuid"] for s in c.get("suggestions", [])])
                for c in cards
            ],
            tenant=identity.tenant,
            client_id=None if identity.iss == "anonymous" else identity.iss,
            primary_output=runtime.manifest.primary.name,
            cohort=cohort,
        )


def _below_threshold(manifest: Any, prediction: Prediction, lowest: str | None) -> bool:
    """A result whose category ranks below the deployment's threshold for this service (`Manifest.by_severity`: the
    manifest lists categories in the order they are tested, not by risk). Cards without a number are never hidden
    by a threshold."""
    if lowest is None or prediction.category is None:
        return False
    ranked = manifest.by_severity()
    floor = next((i for i, c in enumerate(ranked) if c.label == lowest), None)
    rank = next((i for i, c in enumerate(ranked) if c == prediction.category), None)  # label and bounds
    return floor is not None and rank is not None and rank < floor


def _mark_truncated(service: CdsService, outcome: PrefetchOutcome, mapping: MappingResult,
                    max_pages: int) -> list[str]:
    """A search cut short (more pages than read, an outcome or a total saying results were left out, a scope that
    grants part of the type) cannot show that something is absent: a feature that found nothing and would fall back
    to its default becomes unknown, with a note, instead of silently 'no'; one missing as nothing on record is
    unknown for the same reason (a check read only when recorded was then not made, and the card says so). Returns
    the features made unknown."""
    cut: list[str] = []
    if not outcome.truncated:
        return cut
    features = service.model.champion.spec.features
    for key in outcome.truncated:
        for name in service.plan[key].features if key in service.plan else ():
            fv = mapping.values.get(name)
            before = mapping.missing.get(name)
            nothing = fv is None and before is not None and before.reason.startswith(NOTHING_ON_RECORD) \
                and before.newest_unusable is None and before.count_range is None and before.unread is None
            if not nothing and (fv is None or not fv.defaulted):
                continue  # a value was found (newest first), or the feature is missing for another reason
            mapping.values.pop(name, None)
            mapping.missing[name] = MissingFeature(
                name=name, label=features[name].label, required=features[name].required,
                ignored=fv.sources if fv is not None else before.ignored if before is not None else [],
                reason=(f"{CUT_SHORT}, so absence cannot be assumed ({key}: "
                        f"{outcome.truncated_why.get(key) or _more_pages(max_pages)})"),
                unread=f"{searches_named([key])} was cut short",
            )
            cut.append(name)
    return cut


def _more_pages(max_pages: int) -> str:
    return f"more results than the {max_pages} page{'s' if max_pages > 1 else ''} read"


def _same_patients_encounter(index: Any, patient_id: str, encounter_id: Any) -> None:
    """A context.encounterId whose Encounter the record shows to be another patient's contradicts the request: a card
    for this patient must not be filed against it (a 400 naming the field, before any work)."""
    if not isinstance(encounter_id, str):
        return
    elsewhere = index.elsewhere(patient_id)
    for res in index.by_type.get("Encounter", ()):
        # a Group's encounter (R4 Encounter.subject may be a Group) names no other patient: only another Patient is
        # a contradiction
        if res.get("id") == encounter_id and elsewhere.get(id(res), "").startswith(ANOTHER_PATIENT):
            raise bad_request(f"context.encounterId names Encounter/{encounter_id}, which {elsewhere[id(res)]} "
                              "according to the prefetch: a card for context.patientId cannot be filed against it",
                              "context.encounterId")


def _derived_from_unobtained(spec: FeatureSpec, mapping: MappingResult, gone: list[str]) -> list[str]:
    """Derived features left unknown because an input's search could not be obtained (an eGFR with no reported
    value, whose creatinine search the EHR did not answer): their data could not be obtained either, so a required
    one takes the 412 path its own unobtained search would (CDS Hooks: required data that cannot be obtained)."""
    lost, found = set(gone), []
    for name in spec.derivation_order():
        missing = mapping.missing.get(name)
        if name in mapping.values or missing is None or not missing.unread or name in lost:
            continue
        if spec.derived_inputs(name) & lost:
            lost.add(name)
            found.append(name)
    return found


def _mark_unobtainable(service: CdsService, outcome: PrefetchOutcome, mapping: MappingResult) -> list[str]:
    """Features whose prefetch keys could not be obtained are never silently defaulted.

    When every key a feature reads from failed, the feature becomes missing (required → 412). When some of its keys
    were obtained (e.g. MedicationRequest but not MedicationStatement), a defaulted value stands, with a note naming
    what could not be checked — except for a model input whose Condition search failed: a diagnosis is not assumed
    absent because the orders were read.
    """
    features = service.model.champion.spec.features
    keys_of: dict[str, list[str]] = {}
    for key, pk in service.plan.items():
        for name in dict.fromkeys(pk.features):  # a key two sources of one feature share is one key
            keys_of.setdefault(name, []).append(key)
    gone: list[str] = []
    # a whole problem list read in full (a Condition search without a code filter) holds whatever a failed
    # code-filtered Condition search would have found
    whole_list = any(_whole_problem_list(pk.template) and key not in outcome.failed and key not in outcome.truncated
                     for key, pk in service.plan.items())
    for name, keys in keys_of.items():
        # a failed Condition search beside the whole problem list read in full left nothing unread
        failed = [k for k in keys if k in outcome.failed
                  and not (whole_list and service.plan[k].template.startswith("Condition?"))]
        fv = mapping.values.get(name)
        if not failed or (fv is not None and not fv.defaulted):
            continue  # everything obtained, or a real value was found anyway
        reasons = "; ".join(f"{k}: {outcome.failed[k]}" for k in failed)
        # a model input's diagnosis is never assumed absent without the problem list: "Diabetes: No" because the
        # orders were read while the Condition search failed would hide a diabetic treated by diet alone
        diagnosis_unread = features[name].required and any(
            service.plan[k].template.startswith("Condition?") for k in failed)
        if len(failed) < len(keys) and fv is not None and not diagnosis_unread:
            fv.note = f"{fv.note}; could not check {', '.join(failed)} ({reasons})" if fv.note else reasons
            fv.unchecked = failed
            continue
        mapping.values.pop(name, None)
        mapping.missing[name] = MissingFeature(
            name=name, label=features[name].label, required=features[name].required,
            reason=f"{UNRETRIEVED} ({reasons})", unread=searches_lacking(failed),
        )
        gone.append(name)
    return gone


def _whole_problem_list(template: str) -> bool:
    """A Condition search for the patient with no other filter (no code, category or status): every Condition."""
    if not template.startswith("Condition?"):
        return False
    params = {part.split("=", 1)[0] for part in template.split("?", 1)[1].split("&") if part}
    return params <= {"patient", "subject", "_count"}


def _calls_a_model_server(model: ModelEntry) -> bool:
    """The champion or the challenger runs its graph behind a model server (`backend:` in its manifest): its
    prediction blocks on the network for up to the backend's timeout."""
    return any(runtime is not None and runtime.manifest.backend is not None
               for runtime in (model.champion, model.challenger))
