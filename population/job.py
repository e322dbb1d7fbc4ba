"""One population scoring job: export folder in, scores and FHIR resources and a summary out.

read the export (every line classified, as-of applied) → group by patient (Medications joined) → score each
partition with the online service's code → scores.parquet, <ResourceType>.ndjson, rejected.ndjson, summary.*.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from operator import add
from pathlib import Path
from typing import Any

import orjson
from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (ArrayType, BooleanType, DoubleType, MapType, StringType, StructField, StructType,
                               TimestampType)
from rich.console import Console

from cds_hooks.services import CdsService, build_services
from inference.repository import ModelRepository
from population.grouping import patient_groups
from population.ndjson import MEDICATION, PATIENT, REJECTED, SKIPPED, classify
from population.outputs import REJECTED as REJECTED_FILE
from population.outputs import SCORES, SUMMARY_HTML, SUMMARY_JSON, SUMMARY_PNG, OutputFolder
from population.progress import JobProgress
from population.scoring import ERROR, ScoringPlan, apply_aliases, score_partition
from population.sources import list_export, read_lines
from population.summary import FIRST_SHOWN, print_summary, render_html, render_png, service_summaries

SCHEMA = StructType([
    StructField("patient_id", StringType(), False),
    StructField("service", StringType(), False),
    StructField("model_id", StringType(), False),
    StructField("model_version", StringType(), False),
    StructField("alias", StringType(), False),
    StructField("outcome", StringType(), False),
    StructField("primary_output", StringType(), False),
    StructField("primary_value", DoubleType(), True),
    StructField("outputs", MapType(StringType(), DoubleType()), False),
    StructField("category", StringType(), True),
    StructField("refusal_reasons", ArrayType(StringType()), False),
    StructField("missing_inputs", ArrayType(StringType()), False),
    StructField("features", MapType(StringType(), DoubleType()), False),
    StructField("unresolved_medications", ArrayType(StringType()), False),
    StructField("patient_resource", BooleanType(), False),
    StructField("error", StringType(), True),
    StructField("as_of", TimestampType(), False),
    StructField("resource_type", StringType(), True),
    StructField("resource", StringType(), True),
])
FIELDS = tuple(f.name for f in SCHEMA.fields)
TEXT_SCHEMA = StructType([StructField("value", StringType(), False)])


class JobError(ValueError):
    """The job cannot start: a service or the model repository is wrong."""


@dataclass
class JobConfig:
    input: str
    out: str
    service_ids: list[str]
    models_root: Path
    base_url: str
    # None: the job's start, to the second (UTC), read as the online service reads "now" (the mapper tolerates a day
    # of clock skew); a date: a back-test, where nothing dated after it is read (population/asof.py)
    as_of: datetime | None = None
    time_zone: str | None = None
    partitions: int | None = None
    overwrite: bool = False
    # (model id, champion, challenger) from the promotion audit chain (governed_aliases); empty: aliases.yaml
    aliases: tuple[tuple[str, str, str | None], ...] = ()


def load_services(models_root: Path, service_ids: list[str],
                  aliases: tuple[tuple[str, str, str | None], ...] = ()) -> dict[str, CdsService]:
    services = build_services(ModelRepository(models_root).load())
    unknown = [s for s in service_ids if s not in services]
    if unknown:
        raise JobError(f"no CDS service {', '.join(repr(s) for s in unknown)} in {models_root} (services: "
                       f"{', '.join(sorted(services))}); pass --service with one of them")
    chosen = {sid: services[sid] for sid in service_ids}
    apply_aliases(chosen, aliases)
    return chosen


def governed_aliases_for(store: Any, models_root: Path,
                         service_ids: list[str]) -> tuple[tuple[str, str, str | None], ...]:
    """The champion and challenger the promotion audit chain in `store` gives each scored model, so the batch scores
    with the model the online service serves. A model whose chain does not verify, or whose approved files changed,
    is refused (JobError naming the problem), as the online service refuses to serve it."""
    from cds_hooks.champion_sync import governed_state

    repository = ModelRepository(models_root).load()
    services = build_services(repository)
    models = {services[sid].model.id for sid in service_ids if sid in services}
    state = governed_state(store, repository, store.audit_head())
    problems = [f"{m}: {state.problems[m]}" for m in sorted(models) if m in state.problems]
    if problems:
        raise JobError("not scored, as the online service would not serve it: " + "; ".join(problems))
    return tuple((m, a.champion, a.challenger) for m, (a, _) in sorted(state.aliases.items()) if m in models)


def run_job(spark: SparkSession, config: JobConfig, console: Console | None = None) -> dict[str, Any]:
    """Run the job and return the summary (also written to summary.json)."""
    console = console or Console(stderr=True)
    started = time.monotonic()
    as_of = (config.as_of or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    cutoff = as_of if config.as_of is not None else None  # back-testing: nothing dated after the as-of date is read
    services = load_services(config.models_root, config.service_ids, config.aliases)
    export = list_export(spark, config.input)
    out = OutputFolder(spark, config.out, overwrite=config.overwrite)
    sc = spark.sparkContext
    partitions = config.partitions or max(sc.defaultParallelism * 4, 2)
    spark.conf.set("spark.sql.shuffle.partitions", str(partitions))  # the summary's aggregations: small and few
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")  # as_of read back as UTC instants
    wanted = frozenset(t for s in services.values() for t in s.model.champion.spec.resource_types())
    sc.addFile(str(config.models_root.resolve()), recursive=True)
    plan = ScoringPlan(models_root=config.models_root.resolve().name, shipped=True,
                       service_ids=tuple(config.service_ids), as_of=as_of, base_url=config.base_url,
                       time_zone=config.time_zone, aliases=config.aliases)
    progress = JobProgress(spark, console)

    lines = read_lines(spark, export).map(lambda t: classify(t[0], t[1], t[2], cutoff, wanted))
    lines.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        with progress.phase("Reading the export"):
            tally = lines.map(_tally_key).reduceByKey(add).collect()
            rejected = lines.filter(lambda ln: ln.kind == REJECTED)
            first_rejected = rejected.takeOrdered(FIRST_SHOWN, key=lambda ln: (ln.file, ln.line))
            out.write_lines(spark.createDataFrame(rejected.map(lambda ln: (_rejected_json(ln),)), TEXT_SCHEMA),
                            REJECTED_FILE)
        scored = patient_groups(lines, partitions).mapPartitions(partial(_rows, plan))
        scores = spark.createDataFrame(scored, SCHEMA).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            with progress.phase("Scoring patients"):
                out.write_parquet(scores.drop("resource", "resource_type"), SCORES)
            resource_types = {"Observation" if s.model.champion.manifest.card.observation_code else "RiskAssessment"
                              for s in services.values()}
            with progress.phase("Writing FHIR resources"):
                for rtype in sorted(resource_types):
                    chosen = scores.where((F.col("resource_type") == rtype) & (F.col("alias") == "champion"))
                    out.write_lines(chosen.select("resource"), f"{rtype}.ndjson")
            with progress.phase("Summarising"):
                summary = _summary(spark, config, services, export, tally, first_rejected, scores, as_of, out,
                                   sorted(resource_types))
        finally:
            scores.unpersist()
    finally:
        lines.unpersist()
    summary["duration_seconds"] = time.monotonic() - started
    summary["patients_per_second"] = summary["patients"]["scored"] / max(summary["duration_seconds"], 1e-9)
    png = render_png(summary)
    out.write_bytes(SUMMARY_JSON, orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    out.write_bytes(SUMMARY_HTML, render_html(summary, png).encode())
    if png is not None:
        out.write_bytes(SUMMARY_PNG, png)
    print_summary(console, summary)
    return summary


def _rows(plan: ScoringPlan, groups: Any) -> Any:
    for row in score_partition(plan, groups):
        yield tuple(row[f] for f in FIELDS)


def _tally_key(ln: Any) -> tuple[tuple[str, str, str, str], int]:
    """What the summary counts of a line: its kind, the skip/rejection code or as-of change, its type and file."""
    code = ln.key if ln.kind in (SKIPPED, REJECTED) else (ln.detail or "") if ln.kind == PATIENT else ""
    return (ln.kind, code, ln.resource_type or "", ln.file), 1


def _rejected_json(ln: Any) -> str:
    return orjson.dumps({"file": ln.file, "line": ln.line, "reason": ln.key, "resourceType": ln.resource_type,
                         "detail": ln.detail}).decode()


def _summary(spark: SparkSession, config: JobConfig, services: dict[str, CdsService], export: Any,
             tally: list[tuple[tuple[str, str, str, str], int]], first_rejected: list[Any], scores: Any,
             as_of: datetime, out: OutputFolder, resource_files: list[str]) -> dict[str, Any]:
    per_file: dict[str, int] = defaultdict(int)
    resources: dict[str, int] = defaultdict(int)
    skipped: dict[str, int] = defaultdict(int)
    changes: dict[str, int] = defaultdict(int)
    rejected_by: dict[str, int] = defaultdict(int)
    for (kind, code, rtype, file), n in tally:
        per_file[file] += n
        if kind in (PATIENT, MEDICATION):
            resources[rtype] += n
            if code:
                changes[f"{rtype}: {code}"] += n
        elif kind == SKIPPED:
            skipped[f"{code} ({rtype})" if rtype else code] += n
        else:
            rejected_by[code] += n
    errors = scores.where(F.col("outcome") == ERROR)
    counted = scores.agg(
        F.countDistinct("patient_id").alias("patients"),
        F.countDistinct(F.when(~F.col("patient_resource"), F.col("patient_id"))).alias("no_patient"),
        F.count(F.when((F.col("outcome") == ERROR), 1)).alias("errors")).collect()[0]
    unresolved = (scores.where(F.col("alias") == "champion")
                  .select("patient_id", F.explode("unresolved_medications").alias("ref"))
                  .agg(F.countDistinct("ref").alias("refs"), F.countDistinct("patient_id").alias("patients"))
                  .collect()[0])
    summary: dict[str, Any] = {
        "as_of": as_of.isoformat().replace("+00:00", "Z"),
        "spark": {"version": spark.version, "master": spark.sparkContext.master,
                  "partitions": config.partitions or max(spark.sparkContext.defaultParallelism * 4, 2)},
        "input": {
            "folder": export.root,
            "files": [{"name": name, "lines": per_file.get(name, 0)} for name, _ in export.files],
            "ignored_files": list(export.ignored),
            "lines": sum(per_file.values()),
            "resources": dict(sorted(resources.items())),
            "skipped": dict(sorted(skipped.items())),
            "as_of_changes": dict(sorted(changes.items())),
            "rejected": {"total": sum(rejected_by.values()), "by_reason": dict(sorted(rejected_by.items())),
                         "first": [{"file": ln.file, "line": ln.line, "reason": ln.key,
                                    "resourceType": ln.resource_type, "detail": ln.detail} for ln in first_rejected]},
        },
        "patients": {"scored": counted["patients"], "without_patient_resource": counted["no_patient"]},
        "services": {},
        "unresolved_medication_references": {"references": unresolved["refs"], "patients": unresolved["patients"]},
        "errors": {
            "total": counted["errors"],
            "first": [r.asDict() for r in errors.select("patient_id", "service", "error")
                      .orderBy("patient_id", "service").limit(FIRST_SHOWN).collect()] if counted["errors"] else [],
        },
        "outputs": {"scores": out.uri_of(SCORES), "resources": [out.uri_of(f"{t}.ndjson") for t in resource_files],
                    "rejected": out.uri_of(REJECTED_FILE), "summary": out.uri_of(SUMMARY_JSON)},
    }
    kinds = {sid: s.model.champion.manifest.primary.kind for sid, s in services.items()}
    found = service_summaries(scores, kinds)
    for sid, service in services.items():
        manifest = service.model.champion.manifest
        summary["services"][sid] = {"model_id": manifest.id, "primary_output": manifest.primary.name,
                                    "kind": manifest.primary.kind, **found[sid]}
    return summary
