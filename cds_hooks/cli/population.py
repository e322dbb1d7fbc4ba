"""`cds-onnx population score`: score every patient of a FHIR Bulk Data export on Apache Spark (docs/population.md).

The command parses and checks its options, builds the Spark session (local mode unless --master or spark-submit
says otherwise) and runs `population.job`; every expected failure is one line naming what is wrong and the fix.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, time, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import typer

from cds_hooks.cli.apps import population_app
from cds_hooks.cli.common import fail, settings_from

DEFAULT_MASTER = "local[2]"


def parse_as_of(text: str, zone: tzinfo) -> datetime:
    """A date means the end of that day (23:59:59) in `zone`; a date-time is taken as written (UTC when it has no
    offset)."""
    text = text.strip()
    try:
        if len(text) == 10:
            day = datetime.strptime(text, "%Y-%m-%d").date()
            return datetime.combine(day, time(23, 59, 59), tzinfo=zone).astimezone(UTC)
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"'{text}' is not a date (YYYY-MM-DD) or an ISO date-time "
                                 "(YYYY-MM-DDTHH:MM:SS+00:00)", param_hint="--as-of") from None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


@population_app.command("score")
def score(
    input_dir: str = typer.Option(..., "--input", help="Folder of a FHIR Bulk Data export (*.ndjson, *.ndjson.gz); "
                                                       "a local path or any URI Spark reads (hdfs://, s3a://, dbfs:/)"),
    services: list[str] = typer.Option(..., "--service", help="CDS service id to score (repeat for several, e.g. "
                                                              "--service ascvd-pce-10y --service prevent-base)"),
    out: str = typer.Option(..., "--out", help="Output folder (created; must be new or empty, see --overwrite)"),
    as_of: str = typer.Option(None, "--as-of", help="Evaluate at this past date (YYYY-MM-DD: end of that day) or "
                                                    "date-time; data dated after it is never read. Default: now"),
    master: str = typer.Option(None, "--master", help="Spark master URL (default: spark-submit's, else "
                                                      f"{DEFAULT_MASTER})"),
    partitions: int = typer.Option(None, "--partitions", min=1, help="Partitions patients are grouped into "
                                                                     "(default: 4 × the cores Spark has)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the outputs of an earlier job in --out"),
    config: Path = typer.Option(None, "--config", "-c", help="TOML configuration (models.root, mapping.time_zone, "
                                                             "server.public_base_url)"),
) -> None:
    """Score every patient of a Bulk Data export with the online service's mapping, guards and model."""
    settings = settings_from(config)
    zone: tzinfo = ZoneInfo(settings.mapping.time_zone) if settings.mapping.time_zone else UTC
    when = parse_as_of(as_of, zone) if as_of else None
    if when is not None and when > datetime.now(UTC):
        fail(f"--as-of {as_of} is in the future; give a past date (back-testing) or leave it out (now)", 2)
    try:
        from population.job import JobConfig, JobError, run_job
        from population.outputs import OutputError, output_problem
        from population.session import build_session
        from population.sources import ExportError
    except ImportError as exc:
        fail(f"population scoring needs pyspark ({exc}); install it with `pip install 'cds-onnx[population]'`")
    job = JobConfig(input=input_dir, out=out, service_ids=list(dict.fromkeys(services)),
                    models_root=settings.path(settings.models.root), base_url=settings.audience_bases()[0],
                    as_of=when, time_zone=settings.mapping.time_zone, partitions=partitions, overwrite=overwrite)
    try:
        from population.job import load_services

        load_services(job.models_root, job.service_ids)  # a wrong --service fails before Spark starts
        job.aliases = _governed(settings, job)  # the champions the online service serves (promotion audit chain)
    except JobError as exc:
        fail(str(exc), 2)
    if _is_local_path(input_dir) and not Path(input_dir).is_dir():
        fail(f"--input {input_dir} does not exist or is not a folder; give the folder a FHIR Bulk Data $export was "
             "saved to", 2)
    if _is_local_path(out) and Path(out).exists():
        folder = Path(out)
        names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
        problem = output_problem(out, names, folder.is_dir(), overwrite)
        if problem:
            fail(problem, 2)
    chosen = master or (None if "PYSPARK_GATEWAY_PORT" in os.environ else DEFAULT_MASTER)
    try:
        spark = build_session(chosen)
    except Exception as exc:  # py4j/pyspark raise assorted errors when the JVM cannot start
        fail(f"Spark could not start ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); it needs Java 17 or "
             "newer on PATH or JAVA_HOME (Debian: apt-get install default-jre-headless) and a valid --master")
    try:
        summary = run_job(spark, job)
    except (ExportError, OutputError, JobError) as exc:
        fail(str(exc), 2)
    finally:
        spark.stop()
    typer.echo(f"{summary['patients']['scored']} patients scored as of {summary['as_of']} in "
               f"{summary['duration_seconds']:.1f} s; outputs in {out}")


def _governed(settings: Any, job: Any) -> tuple[tuple[str, str, str | None], ...]:
    from population.job import JobError, governed_aliases_for
    from store.store import Store

    try:
        store = Store(settings.store_url(), settings.store.hmac_secret.encode())
        store.migrate()
    except Exception as exc:  # the store is configuration: a wrong URL is the user's to fix, not a traceback
        raise JobError(f"cannot read the promotion audit from the store ({type(exc).__name__}); fix store.url, or "
                       "point --config at the deployment's configuration") from None
    try:
        return governed_aliases_for(store, job.models_root, job.service_ids)
    finally:
        store.dispose()


def _is_local_path(uri: str) -> bool:
    """A plain path (checked before Spark starts), not a URI such as hdfs://, s3a://, dbfs:/ or file:/."""
    return ":/" not in uri
