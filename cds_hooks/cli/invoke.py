"""`cds-onnx invoke`: call a running service as an EHR would.

`invoke` builds a real CDS Hooks request — from a Bundle file, or from a live FHIR server — signs it with the local
developer key, sends it to a running service and prints the cards. `--shift-to-today` first moves a Bundle's dates so
its newest clinical entry is today (`cds_hooks.time_shift`, the preview's shift), so a saved record's data falls
inside the models' look-back windows.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import typer

from cds_hooks.bundle_prefetch import BundleError, bundle_resources, patient_of, prefetch_from_resources
from cds_hooks.cli.apps import app
from cds_hooks.cli.common import CLI_ISSUER, KEYS_FIX, fail, shown
from cds_hooks.prefetch import resolve_prefetch
from cds_hooks.signing import LocalKey, load_local_key, mint_token
from cds_hooks.time_shift import newest_clinical_date
from cds_hooks.time_shift import shift_to_today as shift_bundle_to_today

@app.command()
def invoke(
    service: str = typer.Argument(..., help="CDS service id, e.g. ascvd-pce-10y"),
    bundle: Path = typer.Option(None, "--bundle", "-b", help="FHIR Bundle file (collection, transaction, searchset)"),
    shift_to_today: bool = typer.Option(False, "--shift-to-today",
                                        help="Move every date in the --bundle by the same number of days so its "
                                             "newest clinical entry is today (ages and times of day kept)"),
    fhir_server: str = typer.Option(None, "--fhir-server", help="Build the request from this FHIR server"),
    patient: str = typer.Option(None, "--patient", "-p", help="Patient id (needed with --fhir-server)"),
    token: str = typer.Option(None, "--token", help="Bearer token for the FHIR server"),
    url: str = typer.Option("http://127.0.0.1:8080", "--url", help="Base URL of the CDS service"),
    hook: str = typer.Option(None, "--hook", help="Hook to fire (default: the service's own)"),
    user: str = typer.Option("Practitioner/example", "--user", help="context.userId"),
    encounter: str = typer.Option(None, "--encounter", help="context.encounterId"),
    key_dir: Path = typer.Option(Path("var/keys"), "--key-dir", help="Local signing key (cds-onnx keys generate)"),
    issuer: str = typer.Option(CLI_ISSUER, "--iss", help="JWT issuer the service trusts for this key"),
    no_auth: bool = typer.Option(False, "--no-auth", help="Send no JWT (for a service with auth disabled)"),
    as_json: bool = typer.Option(False, "--json", help="Print the raw JSON response"),
) -> None:
    """Fire a hook at a running service and print the cards."""
    if (bundle is None) == (fhir_server is None):
        fail("give exactly one of --bundle FILE or --fhir-server URL", 2)
    if fhir_server is not None and not patient:
        fail("--patient is required with --fhir-server", 2)
    if shift_to_today and bundle is None:
        fail("--shift-to-today moves the dates of a --bundle file; it cannot change a FHIR server's records", 2)
    url = url.rstrip("/")
    resources = _read_bundle(bundle, shift_to_today) if bundle is not None else None
    key = None if no_auth else _key(key_dir)
    try:
        code = asyncio.run(_invoke(service, resources, fhir_server, patient, token, url, hook, user,
                                   encounter, key, issuer, as_json))
    except httpx.TimeoutException:
        fail(f"the CDS service at {url} did not answer in time; check that it is running (cds-onnx serve) and --url")
    except httpx.HTTPError as exc:
        fail(f"cannot reach the CDS service at {url} ({type(exc).__name__}); start it with `cds-onnx serve` "
             f"or pass --url with its address")
    except BundleError as exc:
        fail(f"{bundle}: {exc} (give a FHIR Bundle with the patient's resources)")
    except (OSError, ValueError) as exc:
        fail(f"error: {exc}")
    raise typer.Exit(code)


def _read_bundle(path: Path, shift_to_today: bool = False) -> list[dict[str, Any]]:
    """The resources of a Bundle file (its dates moved so the newest clinical entry is today when `shift_to_today`),
    or a one-line failure naming the file and what is wrong with it."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc} (give --bundle the path of a FHIR Bundle JSON file)")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        fail(f"{path} is not valid JSON ({exc}); give --bundle a FHIR Bundle JSON file")
    try:
        resources = bundle_resources(doc)
    except BundleError as exc:
        fail(f"{path}: {exc} (give --bundle a FHIR Bundle: collection, transaction or searchset)")
    if not shift_to_today:
        return resources
    newest = newest_clinical_date(doc)
    if newest is None:
        typer.echo(f"{path}: no dated clinical entry, dates not moved", err=True)
        return resources
    now = datetime.now(UTC)
    shifted, days = shift_bundle_to_today(doc, now=now)
    landed = newest + timedelta(days=days)
    when = "today" if landed == now.date() else "yesterday, as its time of day is still to come today"
    typer.echo(f"{path}: moved every date by {days:+d} days (newest clinical entry {newest.isoformat()} -> "
               f"{landed.isoformat()}, {when})", err=True)
    return bundle_resources(shifted)  # the same Bundle with other dates: it was valid above


def _key(key_dir: Path) -> LocalKey:
    try:
        return load_local_key(key_dir)
    except FileNotFoundError as exc:
        fail(f"no local signing key: {exc}; {KEYS_FIX.format(dir=shown(key_dir))}, pass --key-dir, "
             "or --no-auth for a service with auth disabled")
    except (OSError, ValueError) as exc:
        fail(f"the local signing key cannot be used: {exc}; {KEYS_FIX.format(dir=shown(key_dir))} --overwrite "
             "or pass --key-dir")


def _auth_header(key: LocalKey | None, issuer: str, aud: str) -> dict[str, str]:
    if key is None:
        return {}
    return {"Authorization": f"Bearer {mint_token(key, issuer, aud)}"}


async def _invoke(service: str, resources: list[dict[str, Any]] | None, fhir_server: str | None,
                  patient: str | None, token: str | None, url: str, hook: str | None, user: str,
                  encounter: str | None, key: LocalKey | None, issuer: str, as_json: bool) -> int:
    async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
        disc_url = f"{url}/cds-services"
        resp = await client.get(disc_url, headers=_auth_header(key, issuer, disc_url))
        if resp.status_code != 200:
            hint = (" (the service does not accept this key: check --iss and that its configuration trusts "
                    "var/keys/jwks.json)" if resp.status_code == 401 else "")
            typer.secho(f"discovery failed: HTTP {resp.status_code} from {disc_url}{hint}", fg="red", err=True)
            return 1
        try:
            services = resp.json().get("services", [])
        except (ValueError, AttributeError):
            typer.secho(f"{disc_url} did not answer with CDS Hooks discovery JSON; check --url", fg="red", err=True)
            return 1
        entry = next((s for s in services if isinstance(s, dict) and s.get("id") == service), None)
        if entry is None:
            known = ", ".join(str(s.get("id")) for s in services if isinstance(s, dict))
            typer.secho(f"the service has no CDS service '{service}' (it has: {known or 'none'})", fg="red", err=True)
            return 1
        templates: dict[str, str] = entry.get("prefetch", {})
        if resources is not None:
            patient_id = str(patient_of(resources, patient)["id"])
            context = _context(user, patient_id, encounter)
            prefetch = prefetch_from_resources(templates, resources, context)
        else:
            assert patient is not None
            context = _context(user, patient, encounter)
            outcome = await resolve_prefetch(templates, None, context=context, fhir_server=fhir_server,
                                             access_token=token, client=client, deadline_seconds=20, max_pages=10)
            typer.echo(f"fetched from {fhir_server}: {', '.join(sorted(outcome.fetched)) or 'nothing'}", err=True)
            for key, why in sorted(outcome.failed.items()):
                typer.echo(f"  not obtained: {key}: {why}", err=True)
            prefetch = {k: v for k, v in outcome.resources.items()}
        request = {"hook": hook or entry["hook"], "hookInstance": str(uuid.uuid4()), "context": context,
                   "prefetch": prefetch}
        call_url = f"{url}/cds-services/{service}"
        resp = await client.post(call_url, content=orjson.dumps(request),
                                 headers={"Content-Type": "application/json",
                                          **_auth_header(key, issuer, call_url)})
        if as_json:
            try:
                typer.echo(json.dumps(resp.json() if resp.content else {}, indent=2, ensure_ascii=False))
            except ValueError:
                typer.echo(resp.text)
        else:
            _print_response(resp)
        return 0 if resp.status_code == 200 else 1


def _context(user: str, patient_id: str, encounter: str | None) -> dict[str, Any]:
    context: dict[str, Any] = {"userId": user, "patientId": patient_id}
    if encounter:
        context["encounterId"] = encounter
    return context


def _print_response(resp: httpx.Response) -> None:
    if resp.status_code != 200:
        typer.secho(f"HTTP {resp.status_code}", fg="red")
        if resp.content:
            typer.echo(resp.text)
        return
    cards = resp.json().get("cards", [])
    if not cards:
        typer.echo("no cards")
    for card in cards:
        colour = {"info": "blue", "warning": "yellow", "critical": "red"}.get(card.get("indicator"), "white")
        typer.secho(f"[{card.get('indicator')}] {card.get('summary')}", fg=colour, bold=True)
        typer.echo(card.get("detail", ""))
        for sug in card.get("suggestions", []):
            typer.echo(f"  → suggestion: {sug.get('label')}")
        for link in card.get("links", []):
            typer.echo(f"  ↗ {link.get('label')}: {link.get('url')}")
        typer.echo("")
