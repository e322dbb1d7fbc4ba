"""The monitoring report as one self-contained HTML page (inline CSS and PNG figures, no script, nothing fetched).

Read top-down: what needs a decision, a one-row-per-model summary, volume and feedback, then one section per model
with data quality, drift, outcomes and performance, fairness, and champion vs challenger. Every figure is printed
with its 95% interval and the counts behind it; a withheld figure shows why ("not enough events (n=4; need 20)").
"""

from __future__ import annotations

import html
from typing import Any

from monitoring import plots

e = html.escape
NAMES = {"__score__": "model output"}
TYPE_WORDS = {"probability": "probability", "score": "integer score", "value": "measured value"}
ATTRIBUTE_WORDS = {"sex": "Sex", "age_band": "Age band", "race": "Race", "ethnicity": "Ethnicity"}
METRIC_WORDS = {"flag_rate": "Flag rate", "sensitivity": "Sensitivity", "ppv": "PPV", "oe_ratio": "O/E",
                "auroc": "AUROC"}

CSS = """
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;background:#f6f7f9;margin:0}
main{max-width:1200px;margin:0 auto;padding:24px 20px 48px}
h1{font-size:24px;margin:0 0 4px}
h2{font-size:18px;margin:32px 0 10px;padding-bottom:6px;border-bottom:2px solid #d0d7de}
h3{font-size:15px;margin:0 0 8px}
h4{font-size:13px;margin:12px 0 6px;color:#57606a;text-transform:uppercase;letter-spacing:.03em}
p{margin:6px 0}.muted{color:#57606a}.small{font-size:12px}
.meta{color:#57606a;margin-bottom:16px}
.panel{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:14px 16px;margin:12px 0;
  overflow-wrap:anywhere}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:12px;align-items:start}
.grid>.panel{margin:0;min-width:0}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:6px 8px;border-bottom:1px solid #eaeef2;text-align:left;vertical-align:top;overflow-wrap:anywhere}
th{background:#f6f8fa;font-weight:600;font-size:12px;color:#424a53}
table.summary{table-layout:fixed;font-size:12.5px}
table.summary td,table.summary th{line-height:1.35;padding:6px 5px}
table.summary .badge{padding:1px 5px}
.num{font-variant-numeric:tabular-nums;white-space:nowrap}
.ci{color:#57606a;font-size:11.5px}.iv{white-space:nowrap}
.badge{display:inline-block;padding:1px 7px;border-radius:10px;font-size:11.5px;font-weight:600;white-space:nowrap}
.ok{background:#dafbe1;color:#116329}.warn{background:#fff1c2;color:#7a4d00}.bad{background:#ffebe9;color:#a40e26}
.na{background:#eaeef2;color:#57606a}
ul.attention{list-style:none;padding:0;margin:0}
ul.attention li{padding:8px 10px;border-left:4px solid #cf222e;background:#fff;margin:6px 0;border-radius:4px}
img{max-width:100%;height:auto;display:block;margin:6px 0}
.model-id{color:#57606a;font-size:11.5px;font-family:ui-monospace,SFMono-Regular,Menlo,monospace}
a{color:#0b57d0;text-decoration:none}a:hover{text-decoration:underline}
.note{background:#f6f8fa;border-radius:6px;padding:6px 10px;color:#57606a;font-size:12.5px}
"""


def _num(value: float | None, digits: int = 3, pct: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value * 100:.1f}%" if pct else f"{value:.{digits}f}"


def stat(s: dict[str, Any] | None, digits: int = 3, pct: bool = False, counts: bool = True,
         signed: bool = False) -> str:
    """A statistic with its 95% interval (and counts), or the reason it is withheld."""
    if not s:
        return '<span class="muted">—</span>'
    if s.get("estimate") is None:
        return f'<span class="muted">{e(s.get("message") or "not available")}</span>'
    extra = []
    if counts:
        if s.get("events") is not None:
            extra.append(f"{s['events']} events")
        elif s.get("n") is not None:
            extra.append(f"n={s['n']}")
    tail = f"; {', '.join(extra)}" if extra else ""
    sign = "+" if signed and s["estimate"] > 0 else ""
    return (f'<span class="num">{sign}{_num(s["estimate"], digits, pct)}</span> '
            f'<span class="ci">(<span class="iv">{_num(s["low"], digits, pct)}–{_num(s["high"], digits, pct)}</span>'
            f"{tail})</span>")


def _ratio_cell(r: dict[str, Any] | None) -> str:
    if not r:
        return ""
    if r.get("estimate") is None:
        return f'<div class="ci">{e(r.get("message") or "")}</div>'
    cls = {"within": "ok", "outside": "bad", "inconclusive": "warn"}.get(r.get("status", ""), "na")
    return (f'<div><span class="badge {cls}">×{r["estimate"]:.2f}</span> '
            f'<span class="ci">(<span class="iv">{r["low"]:.2f}–{r["high"]:.2f}</span>) {e(r.get("status", ""))}'
            "</span></div>")


def _days(days: int) -> str:
    """A follow-up window in words: "1 day", "365 days", "3652 days (10 years)"."""
    if days == 1:
        return "1 day"
    years = days / 365.25
    return f"{days} days ({years:.0f} years)" if days >= 730 and abs(years - round(years)) < 0.01 else f"{days} days"


def _badge(text: str, cls: str) -> str:
    return f'<span class="badge {cls}">{e(text)}</span>'


# ---- the page -------------------------------------------------------------------------------------------------------
def render_html(summary: dict[str, Any]) -> str:
    w = summary["window"]
    parts = [f"<h1>Model monitoring report</h1><p class=meta>Predictions from {e(w['since'][:10])} to "
             f"{e(w['until'][:10])}; outcomes complete through {e(summary['outcomes_through'][:10])} "
             f"(a prediction is judged only once its follow-up window has closed by then). "
             f"{summary['volume']['predictions']} predictions shown, {summary['volume']['cards']} cards, "
             f"{summary['volume']['shadow_predictions']} shadow predictions, {summary['outcomes']['imported']} "
             "imported "
             "outcomes.</p>"]
    parts.append(_summary_table(summary["summary"]))
    parts.append(_attention_html(summary["attention"]))
    parts.append(_volume_html(summary))
    parts.append(_feedback_html(summary))
    for model_id, m in summary["models"].items():
        parts.append(_model_html(model_id, m))
    return ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            "<meta name=viewport content=\"width=device-width,initial-scale=1\">"
            f"<title>Model monitoring report</title><style>{CSS}</style></head><body><main>{''.join(parts)}"
            "</main></body></html>")


def _attention_html(items: list[dict[str, str]]) -> str:
    if not items:
        return ('<section id=attention><h2>Needs a decision</h2><p class=panel>Nothing in this window crosses a '
                "decision threshold with confidence (see each model for figures still withheld for lack of "
                "events).</p></section>")
    rows = "".join(f"<li><b>{e(i['model'])}</b> · {_badge(i['topic'], 'bad')} {e(i['detail'])}</li>" for i in items)
    return (f"<section id=attention><h2>Needs a decision</h2><ul class=attention>{rows}</ul>"
            "<p class='muted small'>Listed when a 95% interval excludes the reference value: calibration slope or "
            "observed/expected away from 1, a fairness ratio wholly outside 0.8–1.25, PSI above the drift threshold, "
            "more than 20% of requests surely without a number, more than half of responses surely overridden, or "
            "a challenger's AUROC difference away from 0.</p></section>")


def _summary_table(rows: list[dict[str, Any]]) -> str:
    widths = (15, 7, 13, 9, 10, 10, 10, 10, 7, 9)
    head = ("<colgroup>" + "".join(f"<col style='width:{w}%'>" for w in widths) + "</colgroup>"
            "<tr><th>Model</th><th>Volume</th><th>No number</th><th>Accepted</th><th>Drift (PSI)</th>"
            "<th>Outcomes</th><th>AUROC</th><th>Calibration</th><th>Fairness</th><th>Challenger</th></tr>")
    body = []
    for r in rows:
        nn = r["no_number_share"]
        no_number = stat(nn, pct=True, counts=False)
        if r["top_no_number_reason"]:
            no_number += f'<div class="ci">top: {e(r["top_no_number_reason"])}</div>'
        if r["top_missing_input"]:
            no_number += f'<div class="ci">most missing: {e(r["top_missing_input"])}</div>'
        fb = (f'{stat(r["acceptance_rate"], pct=True, counts=False)}<div class="ci">of {r["feedback"]} responses'
              "</div>" if r["feedback"] else '<span class="muted">none</span>')
        if r["max_psi"] is None:
            drift = f'<span class="muted">{e(r["drift_note"] or "—")}</span>'
        else:
            cls = "bad" if r["drift_flagged"] else "ok"
            drift = (_badge(f"max {r['max_psi']:.2f}", cls) +
                     (f'<div class="ci">{e(", ".join(NAMES.get(n, n) for n in r["drift_flagged"]))}</div>'
                      if r["drift_flagged"] else '<div class="ci">stable</div>'))
        if not r["outcome_declared"]:
            outcomes = '<span class="muted">no outcome declared</span>'
            auroc = calib = '<span class="muted">—</span>'
        else:
            outcomes = (f'<span class="num">{r["events"]} events</span><div class="ci">of {r["judged"]} judged, '
                        f'{r["follow_up_open"]} still open</div>')
            auroc = (stat(r["auroc"], counts=False) if r["auroc"] else
                     f'<span class="muted">{e(r["performance_message"] or "—")}</span>')
            if r["score_type"] != "probability":
                calib = '<span class="muted">not a probability</span>'
            elif r["oe_ratio"]:
                calib = (f'<div>O/E {stat(r["oe_ratio"], 2, counts=False)}</div>'
                         f'<div>slope {stat(r["calibration_slope"], 2, counts=False)}</div>')
            else:
                calib = f'<span class="muted">{e(r["performance_message"] or "—")}</span>'
        fair = (_badge(f"{len(r['fairness_outside'])} outside", "bad") if r["fairness_outside"]
                else _badge("0 outside", "ok"))
        if r["challenger_version"]:
            diff = r["auroc_difference"]
            chall = (f'<div class="small">{e(r["challenger_version"])}: agreement '
                     f'{stat(r["category_agreement"], pct=True, counts=False)}</div>')
            chall += (f'<div class="small">ΔAUROC {stat(diff, counts=False, signed=True)}</div>' if diff else
                      f'<div class="ci">{e(r["challenger_message"] or "")}</div>')
        else:
            chall = '<span class="muted">none</span>'
        body.append(f'<tr><td><a href="#model-{e(r["model"])}"><b>{e(r["title"])}</b></a>'
                    f'<div class="model-id">{e(r["model"])}</div></td>'
                    f'<td><span class="num">{r["predictions"]}</span><div class="ci">'
                    f'{e(TYPE_WORDS.get(r["score_type"], r["score_type"]))}</div></td>'
                    f"<td>{no_number}</td><td>{fb}</td><td>{drift}</td><td>{outcomes}</td><td>{auroc}</td>"
                    f"<td>{calib}</td><td>{fair}</td><td>{chall}</td></tr>")
    return (f'<section id=summary><h2>Summary by model</h2><div class=panel><table class=summary>{head}'
            f"{''.join(body)}</table></div></section>")


def _volume_html(summary: dict[str, Any]) -> str:
    vol = summary["volume"]
    out = ["<section id=volume><h2>Volume</h2><div class=panel>"]
    if vol["by_day"]:
        figure = plots.volume(vol["by_day"], vol["cards_by_day"])
        out.append(f'<img alt="predictions per service per day" src="{figure}">')
    rows = "".join(f"<tr><td>{e(s)}</td><td class=num>{n}</td></tr>" for s, n in vol["by_service"].items())
    out.append(f"<table><tr><th>Service</th><th>Predictions shown</th></tr>{rows}</table></div></section>")
    return "".join(out)


def _feedback_html(summary: dict[str, Any]) -> str:
    rows = []
    for model_id, m in summary["models"].items():
        fb = m["feedback"]
        reasons = "; ".join(f"{r['reason']} ({r['count']})" for r in fb["top_override_reasons"]) or "—"
        rows.append(f"<tr><td>{e(model_id)}</td><td class=num>{fb['total']}</td>"
                    f"<td>{stat(fb['acceptance_rate'], pct=True, counts=False)}</td>"
                    f"<td>{stat(fb['override_rate'], pct=True, counts=False)}</td><td>{e(reasons)}</td></tr>")
    total = summary["feedback"]
    untied = (f"<p class='muted small'>{total['not_tied_to_a_prediction']} responses name a card whose prediction "
              "is not in the store (yet).</p>" if total["not_tied_to_a_prediction"] else "")
    return ("<section id=feedback><h2>Clinician feedback</h2><div class=panel><table><tr><th>Model</th>"
            "<th>Responses</th><th>Accepted</th><th>Overridden</th><th>Top override reasons</th></tr>"
            f"{''.join(rows)}</table>{untied}</div></section>")


# ---- one model ------------------------------------------------------------------------------------------------------
def _model_html(model_id: str, m: dict[str, Any]) -> str:
    versions = ", ".join(f"{v} ({n})" for v, n in m["versions"].items()) or "—"
    out = [f'<section id="model-{e(model_id)}"><h2>{e(m["title"])} <span class="model-id">{e(model_id)}</span></h2>'
           f'<p class=muted>{e(TYPE_WORDS.get(m["score_type"], m["score_type"]))} output · versions shown: '
           f"{e(versions)} · {m['predictions']} predictions, {m['scored']} with a number.</p><div class=grid>"]
    out.append(_quality_html(m))
    out.append(_drift_html(m))
    if m["scores_by_day"]:
        out.append(f'<div class=panel><h3>Output over time</h3><img alt="output per day" '
                   f'src="{plots.scores_over_time(m["scores_by_day"], "output")}"></div>')
    out.append("</div>")
    out.append(_performance_html(m))
    out.append(_fairness_html(m))
    out.append(_challenger_html(m))
    out.append("</section>")
    return "".join(out)


def _quality_html(m: dict[str, Any]) -> str:
    nn = m["no_number"]
    reasons = "".join(f"<tr><td>{e(r['reason'])}</td><td class=num>{r['count']}</td></tr>" for r in nn["reasons"])
    missing = "".join(f"<tr><td>{e(r['label'])}</td><td class=num>{r['count']} ({r['share']:.0%})</td>"
                      f"<td class=num>{r['in_no_number']}</td></tr>" for r in nn["missing_inputs"])
    cats = ", ".join(f"{e(k)} {v}" for k, v in m["categories"].items())
    out = [f"<div class=panel><h3>Data quality</h3><p>No number for {nn['count']} of {m['predictions']}: "
           f"{stat(nn['share'], pct=True, counts=False)}</p><p class='small muted'>Categories: {cats}</p>"]
    if reasons:
        out.append(f"<h4>Why no number</h4><table><tr><th>Reason</th><th>Count</th></tr>{reasons}</table>")
    if missing:
        out.append("<h4>Most often missing inputs</h4><table><tr><th>Input</th><th>Missing</th>"
                   f"<th>No number</th></tr>{missing}</table>")
    out.append("</div>")
    return "".join(out)


def _drift_html(m: dict[str, Any]) -> str:
    d = m["drift"]
    out = [f"<div class=panel><h3>Drift</h3><p class='small muted'>Reference: {e(d['reference'])}; PSI above "
           f"{d['threshold']} is flagged.</p>"]
    if d["note"]:
        out.append(f"<p class=note>{e(d['note'])}</p>")
    if d["features"]:
        out.append(f'<img alt="PSI per input" src="{plots.psi_bars(d["features"], d["threshold"])}">')
    if d.get("not_in_reference"):
        out.append(f"<p class='small muted'>Inputs without reference bins: {e(', '.join(d['not_in_reference']))}</p>")
    out.append("</div>")
    return "".join(out)


def _performance_html(m: dict[str, Any]) -> str:
    o = m["outcome"]
    out = ["<div class=panel><h3>Outcomes and performance</h3>"]
    if not o["declared"]:
        out.append(f"<p class=note>{e(o['message'])}: this model is monitored for drift only.</p></div>")
        return "".join(out)
    fu = m["follow_up"]
    out.append(f"<p>Outcome: <b>{e(o['label'])}</b> within {_days(o['horizon_days'])} "
               f"({o['matched_outcomes']} imported outcomes carry its codes). Unit: {e(fu['unit'])}. "
               f"{fu['judged']} judged ({fu['events']} events), {fu['follow_up_open']} still in follow-up "
               f"(not counted as non-events)"
               + (f", {fu['prior_outcome']} judged predictions for patients who had the outcome before" if
                  fu["prior_outcome"] else "") + ".</p>")
    perf = m["performance"]
    if perf["message"]:
        out.append(f"<p class=note>No figures: {e(perf['message'])}. Figures appear once "
                   f"{o['min_events']} events and non-events have closed follow-up.</p></div>")
        return "".join(out)
    rows = [("AUROC", stat(perf["auroc"]))]
    cal = perf.get("calibration")
    if cal:
        rows += [("Observed / expected", stat(cal["oe_ratio"], 2)),
                 ("Calibration slope", stat(cal["slope"], 2)),
                 ("Calibration-in-the-large (intercept)", stat(cal["intercept"], 2)),
                 ("Observed event rate", stat(cal["observed_rate"], pct=True)),
                 ("Mean predicted risk", f"{cal['mean_predicted']:.1%}")]
    table = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    out.append(f"<div class=grid><div><table>{table}</table></div>")
    if cal:
        out.append(f'<div><img alt="calibration by decile" src="{plots.calibration(cal["deciles"])}"></div>')
    elif perf.get("event_rate_by_score"):
        figure = plots.event_rate_by_score(perf["event_rate_by_score"], m["title"])
        out.append(f'<div><img alt="event rate by score" src="{figure}"></div>')
    out.append("</div></div>")
    return "".join(out)


def _fairness_html(m: dict[str, Any]) -> str:
    f = m["fairness"]
    out = [f"<div class=panel><h3>Fairness</h3><p class='small muted'>Flagged: {e(f['flag_rule'])} "
           f"({f['flagged']} of {f['n']}). Each group against the largest recorded group; ratio bounds "
           f"{f['bounds'][0]}–{f['bounds'][1]}: <i>within</i> or <i>outside</i> when the whole 95% interval is, "
           "else <i>inconclusive</i>.</p>"]
    if not f["attributes"]:
        out.append("<p class=note>Fewer than two groups recorded for every attribute.</p></div>")
        return "".join(out)
    metrics = [k for k in METRIC_WORDS if any(k in g for a in f["attributes"].values() for g in a["groups"].values())]
    head = "".join(f"<th>{METRIC_WORDS[k]}</th>" for k in metrics)
    for attribute, a in f["attributes"].items():
        rows = []
        for group, g in a["groups"].items():
            ref = " <span class='badge na'>reference</span>" if group == a["reference_group"] else ""
            counts = f"{g['n']}" + (f" · {g['events']} ev" if "events" in g else "")
            cells = "".join(_fairness_cell(g, k) for k in metrics)
            rows.append(f"<tr><td>{e(group)}{ref}</td><td class=num>{counts}</td>{cells}</tr>")
        out.append(f"<h4>{e(ATTRIBUTE_WORDS.get(attribute, attribute))}</h4><table><tr><th>Group</th><th>n</th>"
                   f"{head}</tr>{''.join(rows)}</table>")
    out.append("</div>")
    return "".join(out)


def _fairness_cell(group: dict[str, Any], key: str) -> str:
    own = group.get(key)
    figure = stat(own, 3 if key == "auroc" else 2, pct=key in ("flag_rate", "sensitivity", "ppv"), counts=False)
    ratio = (group.get("ratios") or {}).get(key)
    shown_ratio = _ratio_cell(ratio) if own and own.get("estimate") is not None else ""
    return f"<td>{figure}{shown_ratio}</td>"


def _challenger_html(m: dict[str, Any]) -> str:
    cc = m["champion_challenger"]
    if not cc:
        return ""
    ev = cc.get("evidence") or {}
    out = [f"<div class=panel><h3>Champion {e(cc['champion_version'])} vs challenger {e(cc['challenger_version'])}"
           f"</h3><div class=grid><div><p>{cc['requests']} requests answered by both: {cc['both_numbers']} with a "
           f"number from both, {cc['champion_only']} from the champion only, {cc['challenger_only']} from the "
           f"challenger only, {cc['neither']} from neither.</p>"]
    rows = [("Category agreement (both gave a number)", stat(cc["category_agreement"], pct=True)),
            ("Mean |difference|", _num(cc["mean_abs_difference"], 4))]
    if ev:
        if ev.get("message"):
            rows.append(("Paired comparison", f'<span class="muted">{e(ev["message"])}</span>'))
        else:
            rows += [("Pairs judged (follow-up closed)", f"{ev['pairs']} ({ev['events']} events)"),
                     ("AUROC champion", stat(ev["champion_auroc"], counts=False)),
                     ("AUROC challenger", stat(ev["challenger_auroc"], counts=False)),
                     ("Difference (paired DeLong)", stat(ev["auroc_difference"], counts=False, signed=True))]
            if ev.get("calibration_slope"):
                rows.append(("Challenger calibration slope", stat(ev["calibration_slope"], 2, counts=False)))
    elif cc.get("evidence_message"):
        rows.append(("Paired comparison", f'<span class="muted">{e(cc["evidence_message"])}</span>'))
    out.append("<table>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table></div>")
    if cc["points"]:
        figure = plots.champion_vs_challenger(cc["points"], cc["champion_version"], cc["challenger_version"])
        out.append(f'<div><img alt="champion vs challenger" src="{figure}"></div>')
    out.append("</div></div>")
    return "".join(out)
