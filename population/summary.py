"""What a population job found, for people: counts by outcome, category, refusal reason and missing input per
service, the distribution of the primary output, and every problem in the input (summary.json, summary.html with
the plot embedded, summary.png, and a table on the console).
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from rich.console import Console
from rich.table import Table

HISTOGRAM_BINS = 40
FIRST_SHOWN = 100  # rejected lines and errors listed in summary.json (all of them are in rejected.ndjson / parquet)
# "Age 85 a is outside the range ..." -> "Age is outside the range ...": one row per reason, not per patient value
_VALUE_IN_REASON = r"^(.*?) [-−]?[0-9][0-9.,]*(?: \S+)? is outside the range"


def service_summaries(scores: DataFrame, kinds: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Per service: outcome and category counts of the champion and challenger, the champion's refusal reasons and
    missing inputs, and the distribution of its primary output. A handful of aggregations over all services at once
    (the scores are cached), not a handful per service."""
    out: dict[str, dict[str, Any]] = {sid: {} for sid in kinds}
    for r in scores.groupBy("service", "alias", "model_version", "outcome", "category").count().collect():
        part = out[r["service"]].setdefault(r["alias"], {"version": r["model_version"], "outcomes": {},
                                                         "categories": {}})
        part["outcomes"][r["outcome"]] = part["outcomes"].get(r["outcome"], 0) + r["count"]
        if r["category"] is not None:
            part["categories"][r["category"]] = part["categories"].get(r["category"], 0) + r["count"]
    champion = scores.where(F.col("alias") == "champion")
    for sid in kinds:
        out[sid]["refusal_reasons"], out[sid]["missing_inputs"], out[sid]["distribution"] = {}, {}, None
    reasons = (champion.select("service", F.explode("refusal_reasons").alias("reason"))
               .select("service", F.regexp_replace("reason", _VALUE_IN_REASON, "$1 is outside the range").alias("r"))
               .groupBy("service", "r").count().orderBy("service", F.desc("count"), "r").collect())
    for r in reasons:
        out[r["service"]]["refusal_reasons"][r["r"]] = r["count"]
    missing = (champion.select("service", F.explode("missing_inputs").alias("input")).groupBy("service", "input")
               .count().orderBy("service", F.desc("count"), "input").collect())
    for r in missing:
        out[r["service"]]["missing_inputs"][r["input"]] = r["count"]
    values = champion.where(F.col("primary_value").isNotNull())
    quantiles = F.percentile_approx("primary_value", [0.1, 0.25, 0.5, 0.75, 0.9], 10000)
    stats = {r["service"]: r for r in values.groupBy("service").agg(
        F.count("primary_value").alias("n"), F.min("primary_value").alias("lo"), F.max("primary_value").alias("hi"),
        quantiles.alias("q")).collect()}
    ranges = {sid: ((0.0, 1.0) if kinds[sid] == "probability" else (float(r["lo"]), float(r["hi"])))
              for sid, r in stats.items()}
    if not ranges:
        return out
    lo = F.coalesce(*(F.when(F.col("service") == sid, F.lit(a)) for sid, (a, _) in ranges.items()))
    width = F.coalesce(*(F.when(F.col("service") == sid, F.lit(_width(a, b))) for sid, (a, b) in ranges.items()))
    index = F.least(F.greatest(F.floor((F.col("primary_value") - lo) / width), F.lit(0)),
                    F.lit(HISTOGRAM_BINS - 1)).cast("int")
    counts: dict[str, list[int]] = {sid: [0] * HISTOGRAM_BINS for sid in ranges}
    for r in values.select("service", index.alias("bin")).groupBy("service", "bin").count().collect():
        counts[r["service"]][r["bin"]] += r["count"]
    for sid, r in stats.items():
        a, b = ranges[sid]
        out[sid]["distribution"] = {
            "n": r["n"], "min": r["lo"], "max": r["hi"],
            "edges": [a + i * _width(a, b) for i in range(HISTOGRAM_BINS + 1)], "counts": counts[sid],
            "quantiles": dict(zip(("p10", "p25", "p50", "p75", "p90"), r["q"]))}
    return out


def _width(lo: float, hi: float) -> float:
    return (hi - lo) / HISTOGRAM_BINS if hi > lo else 1.0


def render_png(summary: dict[str, Any]) -> bytes | None:
    """One histogram of the primary output per service with results (None when no service has any)."""
    shown = [(sid, s) for sid, s in summary["services"].items() if s.get("distribution")]
    if not shown:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(shown), 1, figsize=(8, 2.8 * len(shown)), squeeze=False)
    for ax, (sid, s) in zip(axes[:, 0], shown):
        dist = s["distribution"]
        scale = 100.0 if s["kind"] == "probability" else 1.0
        edges = [e * scale for e in dist["edges"]]
        ax.stairs(dist["counts"], edges, fill=True, color="#4a7ab5")
        ax.set_title(f"{sid}: {s['primary_output']} ({dist['n']} patients with a result)", fontsize=10)
        ax.set_xlabel(f"{s['primary_output']}{' (%)' if scale == 100.0 else ''}")
        ax.set_ylabel("patients")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()




def render_html(summary: dict[str, Any], png: bytes | None) -> str:
    """summary.html: the summary's tables with the plot embedded (one self-contained file)."""
    env = Environment(loader=FileSystemLoader(Path(__file__).parent), autoescape=select_autoescape(default=True))
    return env.get_template("summary.html.j2").render(s=summary, png=base64.b64encode(png).decode() if png else None)


def print_summary(console: Console, summary: dict[str, Any]) -> None:
    """The outcome table, then every kind of input problem with the first lines (file:line) that show it."""
    table = Table(title=f"Population scoring as of {summary['as_of']} — {summary['patients']['scored']} patients")
    outcomes = ("result", "missing-data", "refused", "deceased", "error")
    for col in ("service", *outcomes, "categories"):
        table.add_column(col, justify="left" if col in ("service", "categories") else "right")
    for sid, svc in summary["services"].items():
        champ = svc.get("champion") or {"outcomes": {}, "categories": {}}
        cats = ", ".join(f"{k} {v}" for k, v in champ["categories"].items())
        table.add_row(sid, *(str(champ["outcomes"].get(o, 0)) for o in outcomes), cats)
    console.print(table)
    rejected = summary["input"]["rejected"]
    if rejected["total"]:
        by = ", ".join(f"{k} {v}" for k, v in rejected["by_reason"].items())
        console.print(f"[yellow]{rejected['total']} input lines rejected ({by}); all in rejected.ndjson:[/]")
        for r in rejected["first"][:10]:
            console.print(f"  {r['file']}:{r['line']}: {r['reason']}: {r['detail']}", markup=False)
    skipped = summary["input"]["skipped"]
    if skipped:
        console.print("Skipped lines: " + ", ".join(f"{k} {v}" for k, v in skipped.items()))
    unresolved = summary["unresolved_medication_references"]
    if unresolved["references"]:
        console.print(f"[yellow]{unresolved['references']} medicationReference targets are not in the export "
                      f"({unresolved['patients']} patients): those medications are read as not recognised[/]")
    if summary["errors"]["total"]:
        console.print(f"[red]{summary['errors']['total']} patient × service scores failed:[/]")
        for e in summary["errors"]["first"][:10]:
            console.print(f"  {e['patient_id']} {e['service']}: {e['error']}", markup=False)
