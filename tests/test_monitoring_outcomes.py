"""Importing outcomes: FHIR NDJSON of Condition, Encounter, Procedure, Observation and Patient resources, a FHIR
server searched with a bearer token (a local server started here on 127.0.0.1), and how imported outcomes are tied
to a model's predictions only once the prediction's follow-up window has closed."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from typer.testing import CliRunner

from cds_hooks.cli import app as cli
from inference.manifest import load_manifest
from monitoring.followup import CodeMatcher, OutcomeSpec, event_times, follow_up
from monitoring.outcomes import OutcomeFileError, read_outcomes
from monitoring.report import ReportOptions, build_summary
from monitoring_simulation import SECRET, SHIPPED, model_repository
from store.records import PredictionRecord
from store.store import Store

SNOMED = "http://snomed.info/sct"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
TOKEN = "s3cr3t-bearer-token-for-tests"


def write_ndjson(path: Path, resources: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in resources))
    return path


RESOURCES = [
    {"resourceType": "Condition", "subject": {"reference": "Patient/p1"}, "onsetDateTime": "2027-03-01",
     "code": {"coding": [{"system": SNOMED, "code": "22298006"}, {"system": ICD, "code": "I21.9"}]}},
    {"resourceType": "Condition", "subject": {"reference": "https://ehr.example/fhir/Patient/p2"},
     "recordedDate": "2027-04-01T10:00:00Z", "code": {"coding": [{"system": SNOMED, "code": "230690007"}]},
     "verificationStatus": {"coding": [{"code": "refuted"}]}},
    {"resourceType": "Condition", "subject": {"reference": "Patient/p3"}, "onsetDateTime": "2027-04-01",
     "code": {"coding": [{"system": SNOMED, "code": "22298006"}]},
     "verificationStatus": {"coding": [{"code": "entered-in-error"}]}},
    {"resourceType": "Procedure", "status": "completed", "subject": {"reference": "Patient/p4"},
     "performedPeriod": {"start": "2027-05-02T08:00:00Z"},
     "code": {"coding": [{"system": SNOMED, "code": "108241001"}]}},
    {"resourceType": "Procedure", "status": "not-done", "subject": {"reference": "Patient/p5"},
     "performedDateTime": "2027-05-02", "code": {"coding": [{"system": SNOMED, "code": "108241001"}]}},
    {"resourceType": "Encounter", "status": "finished", "subject": {"reference": "Patient/p6"},
     "period": {"start": "2027-01-05T02:00:00Z", "end": "2027-01-09T02:00:00Z"},
     "type": [{"coding": [{"system": SNOMED, "code": "305351004"}]}],
     "hospitalization": {"dischargeDisposition": {"coding": [
         {"system": "http://terminology.hl7.org/CodeSystem/discharge-disposition", "code": "exp"}]}}},
    {"resourceType": "Patient", "id": "p7", "deceasedDateTime": "2027-02-02T12:00:00Z"},
    {"resourceType": "Patient", "id": "p8", "deceasedBoolean": True},
    {"resourceType": "Patient", "id": "p9"},
]


def test_fhir_ndjson_resources_become_one_outcome_per_coding(tmp_path: Path) -> None:
    batch = read_outcomes(write_ndjson(tmp_path / "export.ndjson", RESOURCES))
    got = {(r["patient_id"], r["system"], r["code"], r["observed_at"].isoformat(), r["label"]) for r in batch.rows}
    assert got == {
        ("p1", SNOMED, "22298006", "2027-03-01T00:00:00+00:00", 1.0),
        ("p1", ICD, "I21.9", "2027-03-01T00:00:00+00:00", 1.0),
        ("p2", SNOMED, "230690007", "2027-04-01T10:00:00+00:00", 0.0),  # refuted: imported as a non-event
        ("p4", SNOMED, "108241001", "2027-05-02T08:00:00+00:00", 1.0),
        ("p6", SNOMED, "305351004", "2027-01-05T02:00:00+00:00", 1.0),
        ("p6", "http://terminology.hl7.org/CodeSystem/discharge-disposition", "exp", "2027-01-09T02:00:00+00:00", 1.0),
        ("p7", SNOMED, "419620001", "2027-02-02T12:00:00+00:00", 1.0),  # a recorded death
    }
    assert batch.skipped == {"Condition entered in error": 1, "Procedure status not-done": 1,
                             "Patient deceased without a date": 1}


@pytest.mark.parametrize(("line", "message"), [
    ('{"resourceType": "MedicationRequest"}', "line 1: resourceType must be one of Condition, Encounter, Procedure"),
    ('{"resourceType": "Condition", "subject": {"reference": "Group/1"}, "onsetDateTime": "2027-01-01", '
     '"code": {"coding": [{"system": "s", "code": "c"}]}}', "line 1: subject.reference must be 'Patient/<id>'"),
    ('{"resourceType": "Condition", "subject": {"reference": "Patient/1"}, "code": {"coding": [{"system": "s", '
     '"code": "c"}]}}', "line 1: Condition has no date"),
    ('{"resourceType": "Procedure", "subject": {"reference": "Patient/1"}, "performedDateTime": "2027", '
     '"code": {"text": "dialysis"}}', "line 1: Procedure.code has no coding with both system and code"),
    ("not json", "line 1: not JSON"),
])
def test_unusable_ndjson_lines_are_named(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.ndjson"
    path.write_text(line + "\n")
    with pytest.raises(OutcomeFileError, match=message.replace("(", r"\(").replace(")", r"\)").replace("'", "'")):
        read_outcomes(path)


def test_icd10_codes_match_their_subcodes_and_snomed_codes_match_exactly() -> None:
    manifest = load_manifest(SHIPPED / "ascvd-pce-10y" / "1.0.0")
    matcher = CodeMatcher.of(manifest.monitoring.outcome)  # type: ignore[arg-type]
    assert matcher.matches(ICD, "I21") and matcher.matches(ICD, "I21.4") and matcher.matches(ICD, "I214")
    assert not matcher.matches(ICD, "I2") and not matcher.matches(ICD, "I10")
    assert matcher.matches(SNOMED, "22298006") and not matcher.matches(SNOMED, "2229800")
    assert not matcher.matches("http://loinc.org", "22298006")


def test_follow_up_window_rules() -> None:
    manifest = load_manifest(SHIPPED / "cha2ds2-vasc" / "1.0.0")  # horizon 365 days
    spec = OutcomeSpec.of(manifest)
    assert spec is not None and spec.horizon == timedelta(days=365)
    t0 = datetime(2027, 1, 1, tzinfo=UTC)

    def outcome(key: str, days: float, label: float = 1.0) -> dict[str, Any]:
        return {"patient_key": key, "system": SNOMED, "code": "230690007", "label": label,
                "observed_at": t0 + timedelta(days=days)}

    events = event_times([outcome("a", 10), outcome("b", -5), outcome("c", 400), outcome("e", 10, label=0.0)], spec)
    open_now = t0 + timedelta(days=100)
    for key in "abcde":  # the window is open: nobody is judged yet, not even the patient with an event
        assert follow_up(t0, key, events, spec, open_now).status == "open"
    later = t0 + timedelta(days=365)
    states = {k: follow_up(t0, k, events, spec, later) for k in "abcde"}
    assert states["a"].status == "event"
    assert states["b"].status == "no_event" and states["b"].prior_outcome  # before the prediction: not an event
    assert states["c"].status == "no_event"  # after the window
    assert states["d"].status == "no_event" and states["e"].status == "no_event"  # refuted is not an event


def _predict(store: Store, model: str, pid: str, at: datetime, score: float) -> None:
    store.write_prediction(PredictionRecord(
        prediction_id=str(uuid.uuid4()), hook_instance=str(uuid.uuid4()), hook="patient-view", service_id=model,
        model_id=model, model_version="1.0.0", alias="champion", patient_id=pid, encounter_id=None, created_at=at,
        features={}, missing={}, outputs={"score": score}, category="elevated" if score >= 2 else "low",
        primary_output="score", cohort={}))


def test_report_counts_open_windows_as_open_not_as_non_events(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 's.sqlite3'}", SECRET.encode())
    store.migrate()
    t0 = datetime(2027, 1, 1, tzinfo=UTC)
    for i in range(30):  # 30 patients, the last 10 scored late enough that their year has not passed
        _predict(store, "cha2ds2-vasc", f"p{i}", t0 + timedelta(days=0 if i < 20 else 200), float(i % 5))
    store.write_outcomes([{"patient_id": "p1", "system": SNOMED, "code": "230690007", "label": 1.0,
                           "observed_at": t0 + timedelta(days=30), "source": "t"},
                          {"patient_id": "p25", "system": SNOMED, "code": "230690007", "label": 1.0,
                           "observed_at": t0 + timedelta(days=230), "source": "t"}])
    from inference.repository import ModelRepository

    repository = ModelRepository(model_repository(tmp_path)).load()
    options = ReportOptions(since=t0 - timedelta(days=1), until=t0 + timedelta(days=201),
                            outcomes_through=t0 + timedelta(days=400))
    model = build_summary(store, repository, options)["models"]["cha2ds2-vasc"]
    assert model["follow_up"]["judged"] == 20 and model["follow_up"]["follow_up_open"] == 10
    assert model["follow_up"]["events"] == 1  # p25's event is in an open window: neither event nor non-event
    assert model["performance"]["message"] == "not enough events (n=1; need 20)"
    assert model["outcome"]["matched_outcomes"] == 2
    store.dispose()


# ---- a FHIR server ---------------------------------------------------------------------------------------------------
class FhirHandler(BaseHTTPRequestHandler):
    """Searches over RESOURCES by code/type (two results per page), `Patient?deceased=true`; bearer token required."""

    seen: list[str] = []
    next_host: str | None = None

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        FhirHandler.seen.append(self.path)
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._send(401, {"resourceType": "OperationOutcome"})
            return
        parts = urlsplit(self.path)
        rtype = parts.path.rsplit("/", 1)[1]
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if rtype == "Patient":
            matches = [r for r in RESOURCES if r["resourceType"] == "Patient" and r.get("deceasedDateTime")]
        else:
            wanted = query.get("code") or query.get("type") or ""
            system, _, code = wanted.partition("|")
            matches = [r for r in RESOURCES if r["resourceType"] == rtype and any(
                c.get("system") == system and c.get("code") == code
                for concept in ([r.get("code")] if "code" in r else r.get("type", []))
                for c in (concept or {}).get("coding", []))]
        page = int(query.get("page", "0"))
        links = []
        if len(matches) > 2 * (page + 1):
            host = FhirHandler.next_host or f"127.0.0.1:{self.server.server_address[1]}"
            rest = "&".join(f"{k}={v}" for k, v in query.items() if k != "page")
            links.append({"relation": "next", "url": f"http://{host}/fhir/{rtype}?{rest}&page={page + 1}"})
        entries = [{"resource": r, "search": {"mode": "match"}} for r in matches[2 * page: 2 * page + 2]]
        self._send(200, {"resourceType": "Bundle", "type": "searchset", "link": links, "entry": entries})

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def fhir_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FhirHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FhirHandler.seen, FhirHandler.next_host = [], None
    yield f"http://127.0.0.1:{server.server_address[1]}/fhir"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{tmp_path / "s.sqlite3"}"\nhmac_secret = "{SECRET}"\n'
                      f'[models]\nroot = "{model_repository(tmp_path)}"\n')
    return config


def test_import_from_a_fhir_server_with_a_bearer_token(tmp_path: Path, fhir_server: str) -> None:
    # three Conditions share a code so the search pages (two per page) are followed
    RESOURCES.extend({"resourceType": "Condition", "subject": {"reference": f"Patient/q{i}"},
                      "onsetDateTime": f"2027-06-0{i + 1}",
                      "code": {"coding": [{"system": SNOMED, "code": "22298006"}]}}
                     for i in range(3))
    try:
        config = _config(tmp_path)
        result = CliRunner().invoke(cli, ["monitor", "import-outcomes", "--fhir-server", fhir_server, "--token", TOKEN,
                                          "-c", str(config)])
        assert result.exit_code == 0, result.output
        assert TOKEN not in result.output
        # default codes: every code the models' manifests declare; found: p1 (2 codings, its ICD-10 code is not
        # searched but comes with the resource), p2 (refuted: a non-event row), q0–q2, p4's dialysis, p6's ICU
        # admission (+ its discharge disposition) and p7's death; p3 (entered in error) and p5 (not done) skipped
        assert result.output == ("read 10 outcomes, 10 new; skipped 1 (Condition entered in error); skipped 1 "
                                 "(Procedure status not-done)\n")
        assert sum("page=" in p for p in FhirHandler.seen) == 2  # both next pages of the MI search were followed
        assert any(p.startswith("/fhir/Patient?deceased=true") for p in FhirHandler.seen)
        store = Store(f"sqlite:///{tmp_path / 's.sqlite3'}", SECRET.encode())
        keys = {o["patient_key"] for o in store.outcomes()}
        assert store.patient_key("q2") in keys and "q2" not in keys  # pseudonymised like predictions
        store.dispose()
    finally:
        del RESOURCES[-3:]


def test_fhir_server_errors_are_one_line_and_never_show_the_token(tmp_path: Path, fhir_server: str) -> None:
    config = _config(tmp_path)
    result = CliRunner().invoke(cli, ["monitor", "import-outcomes", "--fhir-server", fhir_server, "--token", "wrong",
                                      "--code", f"{SNOMED}|22298006", "-c", str(config)])
    assert result.exit_code == 1
    assert "the FHIR server answered 401; check --token" in result.output and "wrong" not in result.output
    FhirHandler.next_host = "127.0.0.2:9"  # a next link to another host: the token must not be sent there
    RESOURCES.extend({"resourceType": "Condition", "subject": {"reference": f"Patient/r{i}"},
                      "onsetDateTime": "2027-06-01", "code": {"coding": [{"system": SNOMED, "code": "22298006"}]}}
                     for i in range(3))
    try:
        result = CliRunner().invoke(cli, ["monitor", "import-outcomes", "--fhir-server", fhir_server, "--token", TOKEN,
                                          "--code", f"{SNOMED}|22298006", "-c", str(config)])
    finally:
        del RESOURCES[-3:]
    assert result.exit_code == 1 and "next page is on another host (127.0.0.2:9); not followed" in result.output
    result = CliRunner().invoke(cli, ["monitor", "import-outcomes", "--fhir-server", "http://127.0.0.1:9/fhir",
                                      "--token", TOKEN, "--code", f"{SNOMED}|22298006", "-c", str(config)])
    assert result.exit_code == 1 and "could not be reached" in result.output and TOKEN not in result.output


@pytest.mark.parametrize(("monitoring", "message"), [
    ({"outcome": {"label": "x", "codes": ["22298006"]}}, "outcome code '22298006' must be 'system|code'"),
    ({"outcome": {"label": "x", "codes": [f"{SNOMED}|1"]}},
     "monitoring.outcome.horizon_days is needed: the primary output has no horizon_years"),
    ({"reference": {"age": {"edges": [0, 1, 2], "proportions": [1.0]}}},
     "monitoring.reference.age: 3 edges need 2 proportions, not 1"),
    ({"min_events": 0}, "monitoring.min_events"),
])
def test_a_wrong_monitoring_block_names_the_field(tmp_path: Path, monitoring: dict[str, Any], message: str) -> None:
    import shutil

    import yaml

    from inference.manifest import ManifestError

    folder = tmp_path / "news2" / "1.0.0"
    shutil.copytree(SHIPPED / "news2" / "1.0.0", folder)
    doc = yaml.safe_load((folder / "manifest.yaml").read_text())
    doc["monitoring"] = monitoring
    (folder / "manifest.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(ManifestError) as info:
        load_manifest(folder)
    assert message in str(info.value) and "manifest.yaml" in str(info.value)
