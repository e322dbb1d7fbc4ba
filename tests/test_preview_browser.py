"""The card preview page in a real headless Chromium: fire a hook (or every service for a hook, as an EHR does), read
the patient banner and the cards, accept a suggestion, dismiss only with a reason the clinician chose."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from cds_hooks.preview_examples import example_bundle
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
            feedback_calls: list[str] = []
            page.on("request", lambda req: feedback_calls.append(req.url) if req.url.endswith("/feedback") else None)
            card = fire_example(page, proc.base, "cha2ds2-vasc", "af-example", "Atrial fibrillation")
            expect(card.locator(".summary")).to_contain_text("CHA2DS2-VASc 4")
            # no reason is chosen for the clinician, and a dismissal cannot be sent without one
            select, dismiss = card.locator(".override select"), card.locator("button.dismiss")
            expect(select).to_have_value("")
            assert select.locator("option:checked").inner_text().startswith("Choose a reason")
            assert select.locator("option").first.get_attribute("disabled") is not None  # cannot be re-chosen
            expect(dismiss).to_be_disabled()
            dismiss.click(force=True)  # a click on the disabled button does nothing
            dismiss.evaluate("b => { b.disabled = false; b.click(); }")  # nor does a click that gets past it
            expect(card.locator(".feedback-status")).to_have_text("Choose an override reason first.")
            page.wait_for_timeout(300)
            assert feedback_calls == []
            select.select_option("patient-declined")
            expect(dismiss).to_be_enabled()
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


def test_preview_banner_shows_the_example_patient(service: tuple[ServiceProcess, Path]) -> None:
    from playwright.sync_api import expect, sync_playwright

    proc, _ = service
    synthetic = example_bundle("synthea-0102")
    assert synthetic is not None
    patient = next(e["resource"] for e in synthetic["entry"] if e["resource"]["resourceType"] == "Patient")
    name = patient["name"][0]
    full_name = " ".join([*name.get("given", []), name["family"]])
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{proc.base}/preview")
            expect(page.locator("#status")).to_have_text("Ready.")
            banner = page.locator("#banner")
            expect(banner).to_contain_text("No patient loaded.")
            page.select_option("#example", "pce-example")
            expect(banner.locator(".name")).to_have_text("Example Goff")
            expect(banner.locator(".age")).to_have_text("55 y")
            expect(banner.locator(".sex")).to_have_text("Male")
            page.select_option("#example", "synthea-0102")  # a synthetic record, moved to today: age as recorded
            expect(banner.locator(".name")).to_have_text(full_name)
            expect(banner.locator(".age")).to_have_text(f"{age(date.fromisoformat(patient['birthDate']))} y")
            expect(banner.locator(".sex")).to_have_text(patient["gender"].capitalize())
            expect(banner.locator(".dob")).to_have_text(f"DOB {patient['birthDate']}")
            page.fill("#bundle", "not json")  # a pasted record that is not a Bundle: no stale banner
            expect(banner).to_contain_text("No single Patient in this Bundle.")
        finally:
            browser.close()


def test_preview_fires_every_service_for_the_hook(service: tuple[ServiceProcess, Path]) -> None:
    from playwright.sync_api import expect, sync_playwright

    proc, tmp = service
    patient_view = [s["id"] for s in httpx.get(f"{proc.base}/preview/services", timeout=10).json()["services"]
                    if s["hook"] == "patient-view"]
    assert len(patient_view) >= 3
    synthetic = example_bundle("synthea-0066")
    assert synthetic is not None
    family = next(e["resource"] for e in synthetic["entry"]
                  if e["resource"]["resourceType"] == "Patient")["name"][0]["family"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            calls: list[str] = []
            page.on("request", lambda req: calls.append(req.url.rsplit("/", 1)[-1])
                    if req.method == "POST" and "/cds-services/" in req.url else None)
            page.goto(f"{proc.base}/preview")
            expect(page.locator("#status")).to_have_text("Ready.")
            page.select_option("#service", "ascvd-pce-10y")
            expect(page.locator("#hook")).to_have_value("patient-view")
            page.select_option("#example", "synthea-0066")
            expect(page.locator("#banner .name")).to_contain_text(family)
            page.click("#fire-all")
            expect(page.locator("#status")).to_contain_text(re.compile(
                rf"card\(s\) from \d+ of {len(patient_view)} patient-view services"))
            assert sorted(calls) == sorted(patient_view)  # every service registered for the hook, once each
            cards = page.locator("article.card")
            shown = {cards.nth(i).get_attribute("data-service") for i in range(cards.count())}
            assert len(shown) >= 3 and shown <= set(patient_view), shown
            assert {"cha2ds2-vasc", "ascvd-pce-10y"} <= shown  # AF: CHA2DS2-VASc; established ASCVD: no PCE number
            order = [cards.nth(i).get_attribute("class") or "" for i in range(cards.count())]
            ranks = [0 if "critical" in c else 1 if "warning" in c else 2 for c in order]
            assert ranks == sorted(ranks)  # the most urgent first, as an EHR sorts them
            # feedback goes to the service that made the card, not to the one chosen in the list
            card = page.locator('article.card[data-service="cha2ds2-vasc"]').first
            card.locator(".override select").select_option("already-addressed")
            card.locator("button.dismiss").click()
            expect(card.locator(".feedback-status")).to_have_text("Feedback stored (overridden).")
            uuid = card.get_attribute("data-uuid")
            assert not errors, errors
        finally:
            browser.close()
    store = Store(f"sqlite:///{tmp / 'store.sqlite3'}", b"development-only-pseudonymisation-key")
    deadline = time.monotonic() + 10
    rows: list[dict] = []
    while time.monotonic() < deadline and not rows:
        rows = [r for r in store.feedback_joined() if r["card_uuid"] == uuid]
        time.sleep(0.1)
    assert rows and rows[0]["model_id"] == "cha2ds2-vasc" and rows[0]["override_reason_code"] == "already-addressed"
    instance = next(p["hook_instance"] for p in store.predictions() if uuid in p["card_uuids"])
    together = {p["model_id"] for p in store.predictions(hook_instance=instance)}
    assert {"cha2ds2-vasc", "ascvd-pce-10y"} <= together and len(together) >= 3  # one hookInstance, as an EHR sends
    store.dispose()
    assert family not in proc.log.read_text(errors="replace")  # the banner's name is never logged by the service


def age(birth: date) -> int:
    today = date.today()
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))
