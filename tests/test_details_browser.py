"""The details page in a real headless Chromium: the card's number is visible, the explanation chart is drawn, and a
what-if scenario shows its estimate next to the current value (with the page's strict CSP: script from 'self' only)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import fhirfactory as F
from cds_hooks.bundle_prefetch import prefetch_from_resources
from cds_hooks.signing import load_local_key, mint_token
from service_process import ROOT, ServiceProcess, start_service

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                                          "(`apt-get install chromium` or `make system-deps`)")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SERVICE = "ascvd-pce-10y"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    proc = start_service(tmp_path_factory.mktemp("details"))
    yield proc
    proc.stop()


def fire(proc: ServiceProcess, resources: list[dict[str, Any]]) -> dict[str, Any]:
    """Call the service as a CDS client would (JWT signed with the local developer key `cds-onnx serve` trusts)."""
    key = load_local_key(ROOT / "var" / "keys")
    with httpx.Client(base_url=proc.base, timeout=30) as client:
        def auth(path: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {mint_token(key, 'cds-onnx-cli', proc.base + path)}"}

        entry = next(s for s in client.get("/cds-services", headers=auth("/cds-services")).json()["services"]
                     if s["id"] == SERVICE)
        context = {"userId": "Practitioner/example", "patientId": "browser-patient-1"}
        body = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()), "context": context,
                "prefetch": prefetch_from_resources(entry["prefetch"], resources, context)}
        resp = client.post(f"/cds-services/{SERVICE}", json=body, headers=auth(f"/cds-services/{SERVICE}"))
        assert resp.status_code == 200, resp.text
        return resp.json()["cards"][0]


def test_details_page_what_if_in_chromium(service: ServiceProcess, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    card = fire(service, F.pce_record(smoker=True, sbp=150, pid="browser-patient-1"))
    url = next(link["url"] for link in card["links"] if link["label"] == "Full reasoning, sources and what-if")
    assert url.startswith(f"{service.base}/details/")
    assert "7.6%" in card["summary"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" and "status of 422"
                    not in msg.text else None)  # the out-of-range what-if below answers 422 on purpose
            page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 and not
                    r.url.endswith("/what-if") else None)
            page.goto(url)
            expect(page.locator("#value")).to_have_text("7.6%")
            expect(page.locator("#value")).to_be_visible()
            expect(page.locator("#category")).to_have_text("(intermediate)")
            assert page.title() == "10-year ASCVD risk: details"
            bars = page.locator("#explanation svg rect")
            assert bars.count() == 6 and bars.first.bounding_box()["width"] > 20  # drawn, not just present
            expect(page.locator("#inputs")).to_contain_text("150 mmHg")

            page.locator("button.scenario", has_text="Stop smoking").click()
            result = page.locator("#what-if-result")
            expect(result).to_be_visible()
            expect(result).to_contain_text("Estimate")
            expect(result).to_contain_text("Stop smoking")
            expect(result).to_contain_text("now 7.6% (intermediate)")
            expect(result).to_contain_text("Smoking status Current smoker → Not a current smoker")
            estimate = page.locator("#what-if-value").inner_text()
            assert estimate.endswith(")") and "%" in estimate and not estimate.startswith("7.6%")
            page.screenshot(path=str(tmp_path / "details-what-if.png"), full_page=True)

            # typed-in values: out of range is refused with the range, in range gives an estimate
            page.locator("#what-if-edit summary").click()
            page.fill("#what-if-edit input[name=sbp]", "250")
            page.click("#what-if-run")
            expect(page.locator("#what-if-error")).to_contain_text("outside the range the model was validated for "
                                                                   "(90–200 mmHg)")
            page.fill("#what-if-edit input[name=sbp]", "120")
            page.click("#what-if-run")
            expect(page.locator("#what-if-result")).to_contain_text("Systolic blood pressure 150 mmHg → 120 mmHg")
            expect(page.locator("#what-if-error")).to_be_hidden()
            assert not errors, errors  # no CSP violation, no script error
        finally:
            browser.close()
    assert (tmp_path / "details-what-if.png").stat().st_size > 10_000
