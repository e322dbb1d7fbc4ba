"""The Store: durable writes and the queries monitoring needs, on SQLite (default) or PostgreSQL.

SQLite runs in WAL mode with synchronous=FULL, so a feedback item is on disk when write_feedback returns — the app
answers 200 only after that. The one exception is the recorder's `write_predictions(..., deferred_sync=True)`: its
journal holds those predictions durably until `sync_predictions` has made the database's copy durable. Patient and
encounter ids are stored only as HMAC-SHA256 keys.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import hmac
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib import resources
from math import isfinite
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, delete, event, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from store import sqlite_gate
from store.records import FeedbackRecord, PredictionRecord
from store.schema import CardRow, CardSuggestion, FeatureValueRow, Feedback, Outcome, Prediction
from store.schema import PromotionAudit, StoreSync
from store.audit import AuditConflict, AuditRecord
from sqlalchemy import func
from sqlalchemy.exc import IntegrityError


#: How long a SQLite writer waits for its turn before "database is locked" (the busy timeout and the writer gate).
SQLITE_BUSY_SECONDS = 30.0

# pg_advisory_xact_lock key held while migrating (any fixed 64-bit number; "cds-onnx" in ASCII).
MIGRATION_LOCK_KEY = 0x6364732D6F6E6E78


def upsert_insert(engine: Engine) -> Any | None:
    """The dialect's `insert` with ON CONFLICT (SQLite, PostgreSQL) for single-statement upserts, else None."""
    return {"sqlite": sqlite.insert, "postgresql": postgresql.insert}.get(engine.dialect.name)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class Store:
    """One database; thread-safe (a session per call)."""

    def __init__(self, url: str, hmac_secret: bytes) -> None:
        if len(hmac_secret) < 16:
            raise ValueError("hmac_secret must be at least 16 bytes")
        self.url = url
        self._secret = hmac_secret
        # HMAC state after the key and the prefix, copied per id: keying a new HMAC costs two hash blocks each time
        self._patient_mac = hmac.new(hmac_secret, b"patient:", hashlib.sha256)
        self._encounter_mac = hmac.new(hmac_secret, b"encounter:", hashlib.sha256)
        self.is_sqlite = url.startswith("sqlite")
        self.writer_gate: sqlite_gate.WriterGate | None = None
        self._replay_engine: Engine | None = None
        self.engine: Engine
        if self.is_sqlite:
            self.engine, self.writer_gate = _sqlite_engine(url)
        else:
            self.engine = create_engine(url, future=True, pool_pre_ping=True, pool_size=5, max_overflow=5)
        # Predictions the recorder writes while its journal still holds them commit without a sync of their own
        # (`write_predictions(..., deferred_sync=True)`, then `sync_predictions`): on a file-based SQLite store a
        # second engine on the same file, synchronous=NORMAL, sharing the writer gate. Everything else (feedback,
        # outcomes, the audit chain, replays of journals and spools) commits through `engine`, synced at each commit.
        self.deferred_engine = self.engine
        if self.writer_gate is not None:
            self.deferred_engine, _ = _sqlite_engine(url, synchronous="NORMAL", gate=self.writer_gate)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._sync_statement = update(StoreSync.__table__).where(StoreSync.__table__.c.id == 1).values(
            syncs=StoreSync.__table__.c.syncs + 1)

    # ---- lifecycle ----------------------------------------------------------------------------------------------
    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (safe to run at every start). On PostgreSQL, replicas
        starting together on one database migrate one after the other (a transaction-scoped advisory lock), and the
        later ones find the schema current instead of failing on a half-created table."""
        cfg = Config()
        cfg.set_main_option("script_location", str(resources.files("store") / "migrations"))
        with self._sqlite_migration_lock(), self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")

    @contextlib.contextmanager
    def _sqlite_migration_lock(self) -> Iterator[None]:
        """Workers of one `serve --workers N` share a SQLite file: they migrate one after the other (a file lock
        beside the database), as PostgreSQL replicas do under the advisory lock."""
        database = self.engine.url.database if self.engine.dialect.name == "sqlite" else None
        if not database or database == ":memory:":
            yield
            return
        with open(f"{database}.migrate-lock", "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def replay_engine(self) -> Engine:
        """The database of the JWT replay cache (the `auth_replay` table).

        On PostgreSQL that is the store's own database, where row locks keep writers apart. With the embedded SQLite
        store it is a file of its own beside the store (`<store>-replay.sqlite3`, WAL synced at checkpoints, its own
        writer gate), created on first use: a request checking its token then never waits for the write turn that
        the recorders of every worker take for predictions (docs/performance.md, "Worker scaling")."""
        if self._replay_engine is not None:
            return self._replay_engine
        database = sqlite_gate.database_file(self.engine)
        if database is None:
            return self.engine
        from store.schema import AuthReplay

        # A claim is a token seen once; NORMAL keeps it through a crash of any worker (WAL), and only a power loss
        # within a token's lifetime (minutes) could forget it — the durability Redis gives a replay cache by
        # default, at about half the cost of syncing every claim (0.44 against 0.80 ms measured here).
        engine, _gate = _sqlite_engine(f"sqlite:///{database}-replay.sqlite3", synchronous="NORMAL")
        with self._sqlite_migration_lock():  # workers starting together create it once
            AuthReplay.__table__.create(engine, checkfirst=True)
        self._replay_engine = engine
        return engine

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:  # any driver error means "not reachable" to a readiness probe
            return False

    def dispose(self) -> None:
        self.engine.dispose()
        if self.deferred_engine is not self.engine:
            self.deferred_engine.dispose()
        if self._replay_engine is not None:
            self._replay_engine.dispose()

    def patient_key(self, patient_id: str) -> str:
        mac = self._patient_mac.copy()
        mac.update(patient_id.encode())
        return mac.hexdigest()

    def pseudonymise(self, rec: PredictionRecord) -> PredictionRecord:
        """The record with its patient and encounter ids replaced by their HMAC keys (for journals and spools)."""
        if rec.patient_key is not None:
            return rec
        return dataclasses.replace(rec, patient_key=self.patient_key(rec.patient_id), patient_id="",
                                   encounter_key=self._encounter_key(rec.encounter_id), encounter_id=None)

    def _encounter_key(self, encounter_id: str | None) -> str | None:
        if not encounter_id:
            return None
        mac = self._encounter_mac.copy()
        mac.update(encounter_id.encode())
        return mac.hexdigest()

    # ---- writes -------------------------------------------------------------------------------------------------
    def write_prediction(self, rec: PredictionRecord) -> None:
        """Write a prediction with its features, cards and suggestions in one transaction (idempotent)."""
        self.write_predictions([rec])

    def write_predictions(self, records: list[PredictionRecord], deferred_sync: bool = False) -> int:
        """Write predictions with their features, cards and suggestions in one transaction; returns how many were new.

        Every row is built before the transaction opens and each table gets one statement for all its rows, so the
        write lock (SQLite's, which the other threads and workers wait for) is held for the inserts alone; the recorder
        hands over whatever has queued up at once. A prediction already stored (the journal's replay after a crash,
        or a second writer) leaves its rows as they are.

        With `deferred_sync` the commit on the embedded store is not synced on its own (it survives the process being
        killed, not a power loss, until `sync_predictions`): for a caller that still holds the records durably — the
        recorder's journal — and forgets them only after `sync_predictions` has returned True.
        """
        insert = upsert_insert(self.engine)
        assert insert is not None  # the store runs on SQLite or PostgreSQL only
        table = Prediction.__table__
        unique: dict[str, PredictionRecord] = {}
        for rec in records:
            unique.setdefault(rec.prediction_id, rec)  # the first of duplicates wins
        built = [self._prediction_rows(rec) for rec in unique.values()]
        stmt = insert(table).on_conflict_do_nothing(index_elements=["prediction_id"]).returning(table.c.prediction_id)
        with (self.deferred_engine if deferred_sync else self.engine).begin() as conn:
            # one statement, a parameter set per prediction (building a statement around each one's values cost
            # more than running it); RETURNING names the predictions that were new
            new = {row[0] for row in conn.execute(stmt, [prediction for prediction, *_children in built])}
            for position, child in ((1, FeatureValueRow.__table__), (2, CardRow.__table__),
                                    (3, CardSuggestion.__table__)):
                rows = [row for b in built if b[0]["prediction_id"] in new for row in b[position]]
                if rows:
                    conn.execute(child.insert(), rows)
        return len(new)

    def sync_predictions(self) -> bool:
        """Make every prediction committed so far durable (written with `deferred_sync` or not); True once it is.

        On the embedded store: one change committed through the synchronous=FULL engine (the `store_sync` counter,
        so the commit always writes a frame). SQLite syncs the write-ahead log at that commit, and the sync covers
        every frame before it, whichever connection or worker wrote it; frames a checkpoint already moved out of the
        log were synced into the database file by that checkpoint. A reader on an old snapshot cannot hold it back,
        and it queues for the write turn like any writer (connection first, then the gate). An error means the
        caller keeps its copy and asks again later. PostgreSQL commits every prediction synchronously, so there is
        nothing left to sync."""
        if self.writer_gate is None:
            return True
        with self.engine.begin() as conn:
            changed = conn.execute(self._sync_statement).rowcount
        return changed == 1  # no row changed, no frame written, nothing synced

    def _prediction_rows(self, rec: PredictionRecord) -> tuple[dict[str, Any], list[dict[str, Any]],
                                                                 list[dict[str, Any]], list[dict[str, Any]]]:
        """The rows of one prediction: itself, its feature values, its cards and their suggestions."""
        primary = None
        if rec.outputs:
            primary = rec.outputs.get(rec.primary_output) if rec.primary_output else next(iter(rec.outputs.values()))
        created = _utc(rec.created_at)
        prediction = {
            "prediction_id": rec.prediction_id, "hook_instance": rec.hook_instance, "hook": rec.hook,
            "service_id": rec.service_id, "model_id": rec.model_id, "model_version": rec.model_version,
            "alias": rec.alias, "patient_key": rec.patient_key or self.patient_key(rec.patient_id),
            "encounter_key": rec.encounter_key or self._encounter_key(rec.encounter_id), "created_at": created,
            "outputs": rec.outputs, "score": primary, "category": rec.category,
            "guard_reasons": list(rec.guard_reasons),
            "refused_by": None if rec.refused_by is None else list(rec.refused_by),
            "missing": dict(rec.missing), "cohort": dict(rec.cohort), "tenant": rec.tenant, "client_id": rec.client_id,
            "bounds": _bounds(rec.bounds),
        }
        features = [
            {"prediction_id": rec.prediction_id, "name": name, "value": fv.get("value"), "unit": fv.get("unit"),
             "defaulted": bool(fv.get("defaulted")), "source_refs": [_safe_ref(s) for s in fv.get("sources", [])],
             "display": _text(fv.get("display")), "note": _text(fv.get("note")),
             # None: a line journalled before migration 0007 does not say (unknown, not "every search read")
             "unchecked": None if fv.get("unchecked") is None else [str(k) for k in fv["unchecked"]],
             "reported": _reported(fv.get("reported"))}
            for name, fv in rec.features.items()
        ]
        cards = [{"card_uuid": card.uuid, "prediction_id": rec.prediction_id, "summary": card.summary[:200],
                  "indicator": card.indicator, "created_at": created} for card in rec.cards]
        suggestions = [{"suggestion_uuid": sug, "card_uuid": card.uuid}
                       for card in rec.cards for sug in card.suggestion_uuids]
        return prediction, features, cards, suggestions

    def services_of_cards(self, card_uuids: list[str]) -> dict[str, str]:
        """The service that issued each of these cards the store holds (a card not yet written is not named)."""
        return {card: issued.service_id for card, issued in self.cards_issued(card_uuids).items()}

    def cards_issued(self, card_uuids: list[str]) -> dict[str, CardIssued]:
        """What the store knows of each of these cards: the service that issued it, the client it was issued to
        (the JWT issuer of the call) and the uuids of its suggestions (a card not yet written is not named)."""
        if not card_uuids:
            return {}
        query = select(CardRow.card_uuid, Prediction.service_id, Prediction.client_id).join(
            Prediction, Prediction.prediction_id == CardRow.prediction_id).where(CardRow.card_uuid.in_(card_uuids))
        with self._sessions() as session:
            found = {card: CardIssued(service, client, frozenset()) for card, service, client
                     in session.execute(query).all()}
            if found:
                suggestions: dict[str, set[str]] = {}
                for sug, card in session.execute(select(CardSuggestion.suggestion_uuid, CardSuggestion.card_uuid)
                                                 .where(CardSuggestion.card_uuid.in_(list(found)))).all():
                    suggestions.setdefault(card, set()).add(sug)
                found = {card: dataclasses.replace(issued, suggestions=frozenset(suggestions.get(card, ())))
                         for card, issued in found.items()}
        return found

    def write_feedback(self, items: list[FeedbackRecord]) -> int:
        """Commit feedback items; duplicates are ignored. Returns how many rows were new."""
        now = datetime.now(UTC)
        rows = [_feedback_row(item, now) for item in items]
        if not rows:
            return 0
        insert = (sqlite.insert if self.is_sqlite else postgresql.insert)(Feedback)
        new = 0
        with self._sessions.begin() as session:
            for row in rows:  # one statement per row so rowcount tells duplicates apart on both dialects
                stmt = insert.values(**row).on_conflict_do_nothing(index_elements=["dedupe_key"])
                new += len(session.execute(stmt.returning(Feedback.id)).all())
        return new

    def write_outcomes(self, rows: list[dict[str, Any]]) -> int:
        """Outcomes (patient_id or patient_key, system, code, label, observed_at, source); duplicates ignored."""
        insert = (sqlite.insert if self.is_sqlite else postgresql.insert)(Outcome)
        new = 0
        with self._sessions.begin() as session:
            for row in rows:
                values = dict(row)
                if "patient_id" in values:
                    values["patient_key"] = self.patient_key(str(values.pop("patient_id")))
                values["observed_at"] = _utc(values["observed_at"])
                stmt = insert.values(**values).on_conflict_do_nothing(
                    index_elements=["patient_key", "system", "code", "observed_at"])
                new += len(session.execute(stmt.returning(Outcome.id)).all())
        return new

    def purge(self, older_than_days: int, now: datetime | None = None) -> dict[str, int]:
        """Delete predictions (with their children) and feedback older than the retention period."""
        if older_than_days <= 0:
            raise ValueError("older_than_days must be positive")
        cutoff = (now or datetime.now(UTC)) - timedelta(days=older_than_days)
        with self._sessions.begin() as session:
            old = select(Prediction.prediction_id).where(Prediction.created_at < cutoff)
            old_cards = select(CardRow.card_uuid).where(CardRow.prediction_id.in_(old))
            counts = {
                "card_suggestions": session.execute(
                    delete(CardSuggestion).where(CardSuggestion.card_uuid.in_(old_cards))).rowcount,
                "cards": session.execute(delete(CardRow).where(CardRow.prediction_id.in_(old))).rowcount,
                "feature_values": session.execute(
                    delete(FeatureValueRow).where(FeatureValueRow.prediction_id.in_(old))).rowcount,
                "feedback": session.execute(delete(Feedback).where(Feedback.received_at < cutoff)).rowcount,
                "outcomes": session.execute(delete(Outcome).where(Outcome.observed_at < cutoff)).rowcount,
            }
            counts["predictions"] = session.execute(delete(Prediction).where(Prediction.created_at < cutoff)).rowcount
        return {k: int(v or 0) for k, v in counts.items()}

    # ---- reads --------------------------------------------------------------------------------------------------
    def session(self) -> Session:
        return self._sessions()

    def predictions_for_card(self, card_uuid: str) -> list[dict[str, Any]]:
        with self._sessions() as session:
            rows = session.execute(
                select(Prediction).join(CardRow, CardRow.prediction_id == Prediction.prediction_id)
                .where(CardRow.card_uuid == card_uuid)).scalars().all()
            return [_prediction_dict(p) for p in rows]

    def prediction(self, prediction_id: str) -> dict[str, Any] | None:
        """One stored prediction with its features (value, unit, defaulted, source references) and cards, or None."""
        with self._sessions() as session:
            p = session.get(Prediction, prediction_id)
            if p is None:
                return None
            out = _prediction_dict(p)
            out["features"] = {
                fv.name: {"value": fv.value, "unit": fv.unit, "defaulted": bool(fv.defaulted),
                          "sources": list(fv.source_refs or []), "display": fv.display, "note": fv.note,
                          "unchecked": fv.unchecked,  # None: recorded before migration 0007
                          "reported": fv.reported}  # None: not rounded for its report, or before migration 0008
                for fv in session.execute(select(FeatureValueRow).where(FeatureValueRow.prediction_id == prediction_id)
                                          .order_by(FeatureValueRow.id)).scalars()
            }
            out["cards"] = [{"uuid": c.card_uuid, "summary": c.summary, "indicator": c.indicator}
                            for c in session.execute(select(CardRow).where(CardRow.prediction_id == prediction_id)
                                                     ).scalars()]
            return out

    def predictions(self, *, hook_instance: str | None = None, model_id: str | None = None,
                    since: datetime | None = None) -> list[dict[str, Any]]:
        query = select(Prediction).order_by(Prediction.created_at)
        if hook_instance:
            query = query.where(Prediction.hook_instance == hook_instance)
        if model_id:
            query = query.where(Prediction.model_id == model_id)
        if since:
            query = query.where(Prediction.created_at >= _utc(since))
        with self._sessions() as session:
            preds = session.execute(query).scalars().all()
            ids = [p.prediction_id for p in preds]
            features: dict[str, dict[str, Any]] = {i: {} for i in ids}
            cards: dict[str, list[str]] = {i: [] for i in ids}
            if ids:
                for fv in session.execute(select(FeatureValueRow).where(FeatureValueRow.prediction_id.in_(ids))).scalars():
                    features[fv.prediction_id][fv.name] = fv.value
                for card in session.execute(select(CardRow).where(CardRow.prediction_id.in_(ids))).scalars():
                    cards[card.prediction_id].append(card.card_uuid)
            out = []
            for p in preds:
                d = _prediction_dict(p)
                d["features"] = features[p.prediction_id]
                d["card_uuids"] = cards[p.prediction_id]
                out.append(d)
            return out

    def feedback_joined(self, since: datetime | None = None) -> list[dict[str, Any]]:
        """Feedback rows with the prediction their card belongs to (prediction fields None when not yet known)."""
        query = (select(Feedback, Prediction)
                 .outerjoin(CardRow, CardRow.card_uuid == Feedback.card_uuid)
                 .outerjoin(Prediction, Prediction.prediction_id == CardRow.prediction_id)
                 .order_by(Feedback.id))
        if since:
            query = query.where(Feedback.received_at >= _utc(since))
        with self._sessions() as session:
            out = []
            for fb, pred in session.execute(query).all():
                row = {c: getattr(fb, c) for c in ("card_uuid", "service_id", "outcome", "outcome_timestamp",
                                                  "accepted_suggestions", "override_reason_system",
                                                  "override_reason_code", "override_reason_display",
                                                  "override_comment", "client_id", "received_at")}
                p = _prediction_dict(pred) if pred else {}
                for key in ("prediction_id", "model_id", "model_version", "alias", "category", "score", "created_at"):
                    row[key] = p.get(key)
                out.append(row)
            return out

    def outcomes(self) -> list[dict[str, Any]]:
        with self._sessions() as session:
            return [{"patient_key": o.patient_key, "system": o.system, "code": o.code, "label": o.label,
                     "observed_at": _utc(o.observed_at), "source": o.source}
                    for o in session.execute(select(Outcome).order_by(Outcome.id)).scalars()]

    # ---- promotion audit (append-only; see store/audit.py) ------------------------------------------------------
    def append_audit(self, fields: dict[str, Any]) -> int:
        """Append one hashed record (store.audit.new_record) and return its seq. A record for the same model and
        position written meanwhile by another process raises AuditConflict, and nothing is written."""
        try:
            with self._sessions.begin() as session:
                row = PromotionAudit(**fields)
                session.add(row)
                session.flush()
                return int(row.seq)
        except IntegrityError as exc:
            raise AuditConflict(f"another record was appended to the audit chain of {fields.get('model_id')} at the "
                                "same time; nothing was written") from exc

    def audit_records(self, model_id: str | None = None) -> list[AuditRecord]:
        """Audit records in chain order (by model, then position); one model's chain with `model_id`."""
        query = select(PromotionAudit).order_by(PromotionAudit.model_id, PromotionAudit.position)
        if model_id is not None:
            query = query.where(PromotionAudit.model_id == model_id)
        with self._sessions() as session:
            return [AuditRecord(**{c: getattr(r, c) for c in AuditRecord.__dataclass_fields__})
                    for r in session.execute(query).scalars()]

    def audit_head(self) -> int:
        """The seq of the newest audit record (0 without any): the cheap check every serving process polls."""
        with self._sessions() as session:
            return int(session.execute(select(func.max(PromotionAudit.seq))).scalar() or 0)


@dataclasses.dataclass(frozen=True)
class CardIssued:
    """A stored card, as feedback on it is checked: which service issued it, to which client, with which
    suggestions."""

    service_id: str
    client_id: str | None
    suggestions: frozenset[str]


def _bounds(bounds: Any) -> dict[str, Any]:
    """The bounds a prediction keeps, each only in the shape the details page reads (a journal line is data)."""
    kept: dict[str, Any] = {}
    for name, bound in (bounds.items() if isinstance(bounds, dict) else ()):
        if not isinstance(bound, dict) or bound.get("comparator") not in ("<", "<=", ">", ">=") or \
                _reported(bound.get("limit")) is None:
            continue
        written = bound.get("written")
        ok = isinstance(written, list) and len(written) == 2 and _reported(written[0]) is not None and \
            isinstance(written[1], str)
        kept[str(name)[:80]] = {"comparator": bound["comparator"], "limit": _reported(bound["limit"]),
                                "written": [_reported(written[0]), written[1][:40]] if ok else None,
                                "date": bound["date"][:40] if isinstance(bound.get("date"), str) else None}
    return kept


def _reported(value: Any) -> float | None:
    """A value as reported, kept only as a finite number (a journal line is data, not trusted to be well formed)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not isfinite(value):
        return None
    return float(value)


def _text(value: Any, limit: int = 2000) -> str | None:
    """Card words kept with a feature: text only, NUL-free (PostgreSQL refuses it), bounded."""
    if not isinstance(value, str) or not value:
        return None
    return value.replace("\x00", "")[:limit]


def _safe_ref(source: dict[str, Any]) -> dict[str, Any]:
    """A source reference fit to keep: references to the patient or encounter lose their id; how the value was read
    ('converted from 1.2 mmol/L', 'written without a unit; read as 130 /min') and what the record is (its code's
    display) are kept for the details page."""
    ref = str(source.get("reference") or "")
    if ref.split("/", 1)[0] in ("Patient", "Encounter", "RelatedPerson") or ref.startswith("urn:"):
        ref = ref.split("/", 1)[0] if "/" in ref else "urn"
    kept = {"reference": ref, "date": source.get("date")}
    for key in ("note", "display"):  # the display: the record's words for what it is ('Chronic respiratory …')
        said = _text(source.get(key))
        if said:
            kept[key] = said
    written = source.get("written")  # the number and unit as written (a card note may read the number by its unit)
    if isinstance(written, list) and len(written) == 2 and isinstance(written[0], (int, float)) \
            and not isinstance(written[0], bool) and isfinite(written[0]) and _text(written[1]):
        kept["written"] = [written[0], _text(written[1])]
    return kept


def _prediction_dict(p: Prediction) -> dict[str, Any]:
    return {"prediction_id": p.prediction_id, "hook_instance": p.hook_instance, "hook": p.hook,
            "service_id": p.service_id, "model_id": p.model_id, "model_version": p.model_version, "alias": p.alias,
            "patient_key": p.patient_key, "encounter_key": p.encounter_key, "created_at": _utc(p.created_at),
            "outputs": p.outputs, "score": p.score, "category": p.category, "guard_reasons": p.guard_reasons,
            "refused_by": p.refused_by, "missing": p.missing, "cohort": p.cohort, "tenant": p.tenant,
            "client_id": p.client_id, "bounds": p.bounds or {}}


def _feedback_row(item: FeedbackRecord, now: datetime) -> dict[str, Any]:
    stamp = _utc(item.outcome_timestamp).astimezone(UTC)
    material = "|".join([item.service_id, item.card_uuid, item.outcome, stamp.isoformat(),
                         ",".join(sorted(item.accepted_suggestions)), item.override_reason_system or "",
                         item.override_reason_code or ""])
    return {
        "dedupe_key": hashlib.sha256(material.encode()).hexdigest(),
        "card_uuid": item.card_uuid, "service_id": item.service_id, "outcome": item.outcome,
        "outcome_timestamp": stamp, "accepted_suggestions": list(item.accepted_suggestions),
        "override_reason_system": item.override_reason_system, "override_reason_code": item.override_reason_code,
        "override_reason_display": item.override_reason_display, "override_comment": item.override_comment,
        "client_id": item.client_id, "received_at": now,
    }


def _sqlite_engine(url: str, synchronous: str = "FULL", gate: sqlite_gate.WriterGate | None = None
                   ) -> tuple[Engine, sqlite_gate.WriterGate | None]:
    """A SQLite engine with the store's pragmas, and its writer gate (None for an in-memory database): writers take
    turns on a lock that wakes the next at once, not SQLite's sleeping busy handler. `synchronous` FULL syncs the WAL
    at every commit (a commit survives a power loss); NORMAL syncs it at checkpoints only (a commit survives the
    process being killed, not the machine losing power). `gate`: the writer gate of another engine on the same file."""
    engine = create_engine(url, future=True,
                           connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_SECONDS})

    def pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    event.listen(engine, "connect", pragmas)
    return engine, sqlite_gate.attach(engine, timeout=SQLITE_BUSY_SECONDS, gate=gate)
