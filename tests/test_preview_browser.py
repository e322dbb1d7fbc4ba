"""The card preview page in a real headless Chromium: fire a hook, read the card, accept a suggestion."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service_process import ServiceProcess, start_service
from store.store import Store

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                                          "(`apt-get install chromium` or `make system-deps`)")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceProcess, Path]]:
    tmp = tmp_path_factory.mktemp("preview")
    proc = start_service(tmp)
    yield proc, tmp
    proc.stop()


def fire_example(page: Any, base: str, service: str, example: str, loaded: str) -> Any:
    """Open the preview, pick a service and an example patient, fire the hook; the first card's locator."""
    from playwright.sync_api import expect

    page.goto(f"{base}/preview")
    expect(page.locator("#status")).to_have_text("Ready.")
    page.select_option("#service", service)
    page.select_option("#example", example)
    expect(page.locator("#bundle")).to_have_value(re.compile(re.escape(loaded)))
    page.click("#fire")
    return page.locator("article.card").first


def test_preview_fires_a_hook_and_records_feedback(service: tuple[ServiceProcess, Path], tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    proc, tmp = service
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            card = fire_example(page, proc.base, "ascvd-pce-10y", "pce-example", '"resourceType": "Bundle"')
            expect(card.locator(".summary")).to_contain_text("10-year ASCVD risk 5.4% (borderline)")
            assert "indicator-info" in (card.get_attribute("class") or "")
            detail = card.locator(".detail")
            expect(detail).to_contain_text("Total cholesterol: 213 mg/dL")
            expect(detail).to_contain_text("Systolic blood pressure: 120 mmHg")
            assert detail.locator("strong").count() > 3  # Markdown rendered, not shown raw
            expect(page.locator("#raw")).to_contain_text('"cards"')
            card_uuid = card.get_attribute("data-uuid")
            card.locator("button.accept").first.click()
            expect(card.locator(".feedback-status")).to_have_text("Feedback stored (accepted).")
            page.screenshot(path=str(tmp_path / "preview.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()
    assert (tmp_path / "preview.png").stat().st_size > 10_000
    store = Store(f"sqlite:///{tmp / 'store.sqlite3'}", b"development-only-pseudonymisation-key")
    deadline = time.monotonic() + 10
    rows: list[dict] = []
    while time.monotonic() < deadline and not rows:
        rows = [r for r in store.feedback_joined() if r["card_uuid"] == card_uuid]
        time.sleep(0.1)
    assert rows and rows[0]["outcome"] == "accepted" and rows[0]["accepted_suggestions"]
    assert rows[0]["model_id"] == "ascvd-pce-10y"  # joined to the prediction that showed the card
    store.dispose()


def test_preview_override_with_a_coded_reason(service: tuple[ServiceProcess, Path]) -> None:
    from playwright.sync_api import expect, sync_playwright

    proc, tmp = service
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            card = fire_example(page, proc.base, "cha2ds2-vasc", "af-example", "Atrial fibrillation")
            expect(card.locator(".summary")).to_contain_text("CHA2DS2-VASc 4")
            card.locator(".override select").select_option("patient-declined")
            card.locator("button.dismiss").click()
            expect(card.locator(".feedback-status")).to_have_text("Feedback stored (overridden).")
            uuid = card.get_attribute("data-uuid")
        finally:
            browser.close()
    store = Store(f"sqlite:///{tmp / 'store.sqlite3'}", b"development-only-pseudonymisation-key")
    rows = [r for r in store.feedback_joined() if r["card_uuid"] == uuid]
    assert rows and rows[0]["override_reason_code"] == "patient-declined"
    assert rows[0]["override_reason_display"] == "Patient declined"
    store.dispose()
