"""The monitoring report as a person sees it, in a real headless Chromium at a 1280 px wide window: the summary table is
visible, no element spills out of its container horizontally, every figure is drawn from inside the page, and a
screenshot is kept under /tmp for a human look."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from inference.repository import ModelRepository
from monitoring import plots
from monitoring.report import ReportOptions, build_summary
from monitoring.report_html import render_html
from monitoring_simulation import PCE_THROUGH, SECRET, START, model_repository, simulate
from store.store import Store

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT = Path("/tmp/cds-onnx-monitoring-report.png")

# every element whose box reaches past its parent's content edge, or whose content is wider than its box
OVERFLOWING = """() => {
  const out = [];
  for (const el of document.querySelectorAll("body *")) {
    const parent = el.parentElement, r = el.getBoundingClientRect();
    if (!parent || (r.width === 0 && r.height === 0)) continue;
    const p = parent.getBoundingClientRect(), cs = getComputedStyle(parent);
    const left = p.left + parseFloat(cs.borderLeftWidth), right = p.right - parseFloat(cs.borderRightWidth);
    const spills = el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0;
    if (r.right > right + 0.5 || r.left < left - 0.5 || spills) {
      out.push(`${el.tagName.toLowerCase()}.${el.className} in ${parent.tagName.toLowerCase()}: ` +
               `${(el.textContent || "").trim().slice(0, 50)}`);
    }
  }
  return out;
}"""


@pytest.fixture(scope="module")
def report_html(tmp_path_factory: pytest.TempPathFactory) -> str:
    tmp = tmp_path_factory.mktemp("report-browser")
    sim = simulate(tmp, seed=99, scale=0.4)
    store = Store(f"sqlite:///{sim.store_path}", SECRET.encode())
    from fhir_mapping.fhirdates import parse_fhir_datetime

    store.write_outcomes([dict(o, observed_at=parse_fhir_datetime(o["observed_at"]), label=float(o["label"]),
                               source="simulation") for o in sim.outcomes])
    repository = ModelRepository(model_repository(tmp)).load()
    summary = build_summary(store, repository, ReportOptions(since=START - timedelta(days=1),
                                                             until=START + timedelta(days=31),
                                                             outcomes_through=PCE_THROUGH))
    store.dispose()
    # eighteen services, as at the health system that found the old report's legend overflowing
    for day in summary["volume"]["by_day"].values():
        day.update({f"extra-service-{k:02d}": k for k in range(13)})
    return render_html(summary)


def test_volume_chart_keeps_the_busiest_services_and_sums_the_rest() -> None:
    by_day = {f"2026-09-{d:02d}": {f"s{k:02d}": k + d for k in range(18)} for d in range(1, 6)}
    series = plots.volume_series(by_day)
    assert list(series) == ["s17", "s16", "s15", "s14", "s13", "s12", "other (12 services)"]
    assert series["other (12 services)"] == [sum(k + d for k in range(12)) for d in range(1, 6)]


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (`apt-get install chromium` or "
                                             "`make system-deps`)")
def test_report_layout_in_chromium(report_html: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            requests: list[str] = []
            page.on("request", lambda req: requests.append(req.url))
            page.set_content(report_html, wait_until="load")
            summary = page.locator("table.summary")
            expect(summary).to_be_visible()
            assert summary.locator("tbody tr, tr").count() >= 6  # a header and one row per model
            assert page.evaluate(OVERFLOWING) == []
            assert page.evaluate("document.documentElement.scrollWidth") <= 1280
            broken = page.evaluate("[...document.images].filter(i => !i.complete || i.naturalWidth === 0).length")
            assert broken == 0 and page.locator("img").count() >= 10
            assert [u for u in requests if not u.startswith(("data:", "about:"))] == []  # nothing fetched
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            # the check itself finds a spill: a table too wide for its panel
            page.evaluate("document.querySelector('.panel').insertAdjacentHTML('beforeend', "
                          "'<table style=\"width:1500px\"><tr><td>wide</td></tr></table>')")
            assert any(line.startswith("table.") for line in page.evaluate(OVERFLOWING))
        finally:
            browser.close()
    assert SCREENSHOT.stat().st_size > 50_000
