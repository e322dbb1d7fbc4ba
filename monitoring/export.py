"""Export predictions and events as Parquet in the layout Epic's open-source seismometer reads.

predictions.parquet: one row per shown (champion) prediction — entity_id (pseudonymous patient key), context_id
(hook instance), predict_time, score, model id/version, each input feature, and cohort attributes.
events.parquet: entity_id, context_id, event_type, event_time, event_value — targets (imported outcomes, type
"Target: <system>|<code>") and interventions (clinician feedback, "Intervention: accepted" / "Intervention:
overridden"). docs/monitoring.md gives the seismometer configuration that maps these columns.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from store.store import Store


def export_seismometer(store: Store, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    preds = [p for p in store.predictions() if p["alias"] == "champion"]
    features = sorted({k for p in preds for k in p["features"]})
    cohorts = sorted({k for p in preds for k in (p.get("cohort") or {})})
    columns: dict[str, list] = {"entity_id": [], "context_id": [], "predict_time": [], "score": [],
                                "model_id": [], "model_version": [], "category": []}
    columns.update({f: [] for f in features})
    columns.update({f"cohort_{c}": [] for c in cohorts})
    card_to_context: dict[str, tuple[str, str]] = {}
    for p in preds:
        columns["entity_id"].append(p["patient_key"])
        columns["context_id"].append(p["hook_instance"])
        columns["predict_time"].append(p["created_at"])
        columns["score"].append(p["score"])
        columns["model_id"].append(p["model_id"])
        columns["model_version"].append(p["model_version"])
        columns["category"].append(p["category"])
        for f in features:
            columns[f].append(p["features"].get(f))
        for c in cohorts:
            columns[f"cohort_{c}"].append((p.get("cohort") or {}).get(c))
        for card in p["card_uuids"]:
            card_to_context[card] = (p["patient_key"], p["hook_instance"])
    schema = pa.schema([("entity_id", pa.string()), ("context_id", pa.string()),
                        ("predict_time", pa.timestamp("us", tz="UTC")), ("score", pa.float64()),
                        ("model_id", pa.string()), ("model_version", pa.string()), ("category", pa.string()),
                        *[(f, pa.float64()) for f in features], *[(f"cohort_{c}", pa.string()) for c in cohorts]])
    predictions_path = out_dir / "predictions.parquet"
    pq.write_table(pa.table(columns, schema=schema), predictions_path)

    events: dict[str, list] = {"entity_id": [], "context_id": [], "event_type": [], "event_time": [],
                               "event_value": []}
    for o in store.outcomes():
        events["entity_id"].append(o["patient_key"])
        events["context_id"].append(None)
        events["event_type"].append(f"Target: {o['system']}|{o['code']}")
        events["event_time"].append(o["observed_at"])
        events["event_value"].append(o["label"])
    for f in store.feedback_joined():
        entity, context = card_to_context.get(f["card_uuid"], (None, None))
        if entity is None:
            continue
        events["entity_id"].append(entity)
        events["context_id"].append(context)
        events["event_type"].append(f"Intervention: {f['outcome']}")
        events["event_time"].append(f["outcome_timestamp"])
        events["event_value"].append(1.0)
    event_schema = pa.schema([("entity_id", pa.string()), ("context_id", pa.string()), ("event_type", pa.string()),
                              ("event_time", pa.timestamp("us", tz="UTC")), ("event_value", pa.float64())])
    events_path = out_dir / "events.parquet"
    pq.write_table(pa.table(events, schema=event_schema), events_path)
    return predictions_path, events_path
