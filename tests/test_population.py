"""Population scoring on Spark (issue #15): the batch path gives what the online service gives, back-tests without
reading the future, reports every bad input line, and runs end to end from the command line. docs/population.md.

One local[2] SparkSession (loopback only, no UI) serves the module; the CLI test starts its own in a subprocess.
"""

from __future__ import annotations

import copy
import gzip
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

import fhirfactory as F
from conftest import SignedClient, make_settings
from realworld import plain_reading as R
from realworld import shapes as S
from test_realworld_corpus import kind_of, post, resource_of

ROOT = Path(__file__).resolve().parent.parent
AS_OF = datetime.now(UTC).replace(microsecond=0)  # the online clock is set to it; the batch job runs as of it
SHAPED = ("labs_si", "med_ref_bundled", "med_statement", "entered_in_error", "deceased")
SHAPED_PATIENTS = 6  # shapes are checked on the first patients; as_is on every patient of the corpus
OUTCOME_OF_KIND = {"result": "result", "missing": "missing-data", "refused": "refused", "none": "deceased"}


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    from population.session import build_session

    session = build_session("local[2]", shuffle_partitions=2)
    yield session
    session.stop()


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_settings(tmp_path_factory.mktemp("population-app"))


def job_config(settings: Any, export: Path, out: Path, services: list[str], as_of: datetime | None) -> Any:
    from population.job import JobConfig

    return JobConfig(input=str(export), out=str(out), service_ids=services,
                     models_root=settings.path(settings.models.root), base_url=settings.audience_bases()[0],
                     as_of=as_of, time_zone=settings.mapping.time_zone, partitions=4)


def write_export(folder: Path, records: list[list[dict[str, Any]]], gz: tuple[str, ...] = ()) -> dict[str, int]:
    """A Bulk Data export of these records: one NDJSON file per type (gzip'd for the types in `gz`), in record
    order. Returns the number of lines written per file."""
    folder.mkdir(parents=True, exist_ok=True)
    by_type: dict[str, list[str]] = {}
    for record in records:
        for res in record:
            by_type.setdefault(res["resourceType"], []).append(json.dumps(res))
    counts = {}
    for rtype, lines in by_type.items():
        name = f"{rtype}.ndjson" + (".gz" if rtype in gz else "")
        data = "\n".join(lines) + "\n"
        if rtype in gz:
            with gzip.open(folder / name, "wt", encoding="utf-8") as fh:
                fh.write(data)
        else:
            (folder / name).write_text(data, encoding="utf-8")
        counts[name] = len(lines)
    return counts


def read_ndjson(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------------------- equivalence
def as_export_record(bundle: dict[str, Any], case: str) -> list[dict[str, Any]]:
    """The bundle's resources as a Bulk Data export writes them: a patient id unique to the case, references as
    Patient/<id>, and the case's Medications under ids of their own."""
    resources = S.resources(bundle)
    old = R.patient(resources)["id"]
    new = f"{case}-{old[:18]}"
    text = json.dumps(resources).replace(f"urn:uuid:{old}", f"Patient/{new}").replace(f'"{old}"', f'"{new}"')
    for med in (r for r in resources if r["resourceType"] == "Medication"):
        text = text.replace(f'"Medication/{med["id"]}"', f'"Medication/{med["id"]}-{case}"')
        text = text.replace(f'"id": "{med["id"]}"', f'"id": "{med["id"]}-{case}"')
    return json.loads(text)


def equivalence_cases() -> list[tuple[str, str, list[dict[str, Any]]]]:
    """(case id, shape, export record): every corpus patient as is, and the first ones re-shaped."""
    cases = []
    for i, name in enumerate(S.patient_files()):
        base = S.load_base(name)
        for shape in ("as_is", *(SHAPED if i < SHAPED_PATIENTS else ())):
            case = f"{shape.replace('_', '')}{i}"
            cases.append((case, shape, as_export_record(S.apply(shape, base), case)))
    return cases


@pytest.fixture(scope="module")
def online(settings: Any) -> Iterator[tuple[SignedClient, list[Any]]]:
    """The real HTTP app at the batch job's "now", recording every prediction it makes into a list."""
    from cds_hooks.app import create_app
    from cds_hooks.signing import load_local_key
    from conftest import KEYS

    recorded: list[Any] = []
    with TestClient(create_app(settings)) as tc:
        caller = tc.app.state.cds.caller
        caller.clock = lambda: AS_OF
        caller.record = recorded.append
        yield SignedClient(tc, load_local_key(KEYS / "local")), recorded


def test_batch_equals_the_online_service_for_every_corpus_patient(spark: Any, settings: Any, online: Any,
                                                                  tmp_path: Path) -> None:
    from population.job import run_job

    client, recorded = online
    templates = {s["id"]: s.get("prefetch", {}) for s in client.get("/cds-services").json()["services"]}
    cases = equivalence_cases()
    write_export(tmp_path / "export", [record for _, _, record in cases], gz=("Observation",))
    summary = run_job(spark, job_config(settings, tmp_path / "export", tmp_path / "out", list(R.MODELS), AS_OF))
    assert summary["patients"]["scored"] == len(cases)
    assert summary["input"]["rejected"]["total"] == 0 and summary["errors"]["total"] == 0

    rows = {(r["patient_id"], r["service"]): r for r in pq.read_table(tmp_path / "out" / "scores.parquet").to_pylist()
            if r["alias"] == "champion"}
    resources = {}
    for name in ("RiskAssessment.ndjson", "Observation.ndjson"):
        for res in read_ndjson(tmp_path / "out" / name):
            resources[(res["subject"]["reference"].split("/")[1], res["method"]["coding"][0]["code"]
                       if res["resourceType"] == "RiskAssessment" else "egfr-ckd-epi-2021")] = res
    inputs = {m: {i.name for i in client.app.state.repository.entries[m].champion.manifest.inputs} for m in R.MODELS}
    compared = {"result": 0, "missing": 0, "refused": 0, "none": 0}
    for case, shape, record in cases:
        pid = R.patient(record)["id"]
        for model in S.AFFECTS[shape]:
            recorded.clear()
            resp = post(client, templates[model], model, F.bundle(copy.deepcopy(record)), shape)
            assert resp.status_code == 200, resp.text
            cards = resp.json()["cards"]
            (rec,) = [r for r in recorded if r.alias == "champion"]
            row = rows[(pid, model)]
            where = f"{case} {model}"
            assert row["outcome"] == OUTCOME_OF_KIND[kind_of(cards)], f"{where}: batch {row['outcome']}, online {cards}"
            assert row["refusal_reasons"] == rec.guard_reasons, where
            missing = set(rec.missing) & inputs[model] if row["outcome"] == "missing-data" else set()
            assert set(row["missing_inputs"]) == missing, where
            assert row["category"] == rec.category, where
            online_outputs = rec.outputs or {}
            assert set(dict(row["outputs"])) == set(online_outputs), where
            for name, value in dict(row["outputs"]).items():
                assert abs(value - online_outputs[name]) <= 1e-12, f"{where} {name}: {value} vs {online_outputs[name]}"
            chart = None
            if cards:
                chart = resource_of(cards[0], "Observation" if model == "egfr-ckd-epi-2021" else "RiskAssessment")
            assert resources.get((pid, model)) == chart, f"{where}: the batch resource differs from the card's"
            compared[kind_of(cards)] += 1
    # the comparison covered every kind of answer, and the right number of them
    assert all(compared.values()), compared
    assert sum(compared.values()) == sum(len(S.AFFECTS[shape]) for _, shape, _ in cases)
    as_is = {(R.patient(record)["id"], m) for _, shape, record in cases if shape == "as_is" for m in R.MODELS}
    assert len([k for k in resources if k in as_is]) == len([k for k in as_is if rows[k]["outcome"] == "result"])


# -------------------------------------------------------------------------------------------------------- back-testing
PAST = AS_OF - timedelta(days=365)


def _at(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def backtest_base(pid: str) -> list[dict[str, Any]]:
    """PCE inputs all recorded 35 days before the as-of date; the patient is 62 then (63 now)."""
    record = F.pce_record(age=62, gender="male", race="white", tc=200, hdl=50, sbp=130, pid=pid)
    record[0]["birthDate"] = F.birth_date_for_age(62, PAST)
    for res in record[1:]:
        res["effectiveDateTime"] = _at(PAST - timedelta(days=35))
    return record


def later_labs(pid: str) -> list[dict[str, Any]]:
    """Total cholesterol drawn after the as-of date: 3 minutes after it (inside the mapper's 5-minute tolerance for
    an EHR's clock, so only the as-of filter keeps it out) and 30 days ago; and diabetes diagnosed 100 days ago."""
    soon = F.quantity_obs("2093-3", 290, "mg/dL", pid=pid, display="Cholesterol")
    soon["effectiveDateTime"] = _at(PAST + timedelta(minutes=3))
    recent = F.quantity_obs("2093-3", 280, "mg/dL", pid=pid, days=30, display="Cholesterol")
    diabetes = F.condition("44054006", pid=pid, display="Diabetes mellitus type 2")
    diabetes["onsetDateTime"] = F.days_ago(100)
    return [soon, recent, diabetes]


def resolved_later(pid: str) -> list[dict[str, Any]]:
    """Diabetes diagnosed before the as-of date and resolved after it: active at the as-of date."""
    cond = F.condition("44054006", pid=pid, display="Diabetes mellitus type 2", clinical="resolved")
    cond["onsetDateTime"] = _at(PAST - timedelta(days=400))
    cond["abatementDateTime"] = F.days_ago(100)
    return [cond]


def pce_reference(diabetes: int) -> float:
    """The 10-year risk by the model's plain reference implementation for the inputs as they stood at the as-of date."""
    inputs = {"age": 62, "total_cholesterol": 200, "hdl": 50, "sbp": 130, "bp_treated": 0, "smoker": 0,
              "diabetes": diabetes, "female": 0, "black": 0}
    return float(R.reference("ascvd-pce-10y").compute(inputs)["risk_10y"])


BAD_LINES = [
    ("{\"resourceType\": \"Observation\", \"id\": \"cut", "malformed-json"),
    ("{\"resourceType\": \"Observatoin\", \"id\": \"typo\", \"subject\": {\"reference\": \"Patient/bt-a\"}}",
     "unknown-resource-type"),
    ("{\"resourceType\": \"Condition\", \"id\": \"nobody\", \"code\": {\"text\": \"x\"}}", "no-patient-reference"),
    ("{\"resourceType\": \"Observation\", \"id\": \"grp\", \"status\": \"final\", \"subject\": "
     "{\"reference\": \"Group/g1\"}}", "no-patient-reference"),
    ("[1, 2, 3]", "not-a-resource"),
]


def test_as_of_back_testing_never_reads_later_data_and_bad_lines_are_reported(spark: Any, settings: Any,
                                                                              tmp_path: Path) -> None:
    from cds_hooks.pipeline import map_patient
    from fhir_mapping.index import ResourceIndex
    from population.job import run_job

    with_later = backtest_base("bt-a") + later_labs("bt-a")
    without = backtest_base("bt-b")
    resolved = backtest_base("bt-c") + resolved_later("bt-c")
    counts = write_export(tmp_path / "export", [with_later, without, resolved])
    condition_lines = counts["Condition.ndjson"]
    with (tmp_path / "export" / "Condition.ndjson").open("a", encoding="utf-8") as fh:
        fh.write("\n".join(line for line, _ in BAD_LINES) + "\n\n")
    (tmp_path / "export" / "README.txt").write_text("not part of the export")

    summary = run_job(spark, job_config(settings, tmp_path / "export", tmp_path / "out", ["ascvd-pce-10y"], PAST))
    scores = pd.read_parquet(tmp_path / "out" / "scores.parquet").set_index("patient_id")
    assert set(scores.index) == {"bt-a", "bt-b", "bt-c"}
    risk = scores["primary_value"]
    assert risk["bt-a"] == risk["bt-b"] == pytest.approx(pce_reference(diabetes=0), abs=1e-9)
    assert risk["bt-c"] == pytest.approx(pce_reference(diabetes=1), abs=1e-9)
    assert dict(scores.loc["bt-a", "features"])["diabetes"] == 0.0 and dict(scores.loc["bt-a", "features"])["age"] == 62
    assert (scores["as_of"] == pd.Timestamp(PAST)).all()
    ra = {r["subject"]["reference"]: r for r in read_ndjson(tmp_path / "out" / "RiskAssessment.ndjson")}
    assert ra["Patient/bt-a"]["occurrenceDateTime"] == _at(PAST)
    assert not {b["reference"] for b in ra["Patient/bt-a"]["basis"]} & {f"Observation/{r['id']}" for r in
                                                                      later_labs("bt-a")[:2]}

    # the same record mapped at the as-of instant without the as-of filter reads the lab drawn 3 minutes later
    runtime = settings_entry(settings).champion
    unfiltered = map_patient(runtime, ResourceIndex((r, None) for r in with_later), at=PAST, patient_id="bt-a",
                             time_zone=None)
    assert unfiltered.values["total_cholesterol"].value == 290
    assert runtime.predict(unfiltered).outputs["risk_10y"] != pytest.approx(risk["bt-a"], abs=1e-6)

    # what the as-of date removed and undid is counted; bad lines are reported with file and line, nothing silently
    assert summary["input"]["skipped"]["after-as-of (Observation)"] == 2
    assert summary["input"]["skipped"]["after-as-of (Condition)"] == 1
    assert summary["input"]["as_of_changes"] == {"Condition: resolution dated after the as-of date": 1}
    assert summary["input"]["skipped"]["blank-line"] == 1
    assert summary["input"]["ignored_files"] == ["README.txt"]
    rejected = summary["input"]["rejected"]
    want = [("Condition.ndjson", condition_lines + i + 1, reason) for i, (_, reason) in enumerate(BAD_LINES)]
    assert [(r["file"], r["line"], r["reason"]) for r in rejected["first"]] == want
    assert rejected["total"] == len(BAD_LINES)
    assert "Group/g1" in rejected["first"][3]["detail"] and "Observatoin" in rejected["first"][1]["detail"]
    in_file = read_ndjson(tmp_path / "out" / "rejected.ndjson")
    assert sorted((r["file"], r["line"], r["reason"]) for r in in_file) == want
    total_lines = sum(f["lines"] for f in summary["input"]["files"])
    used = sum(summary["input"]["resources"].values())
    assert total_lines == used + sum(summary["input"]["skipped"].values()) + rejected["total"]


def settings_entry(settings: Any) -> Any:
    from inference.repository import ModelRepository

    return ModelRepository(settings.path(settings.models.root)).load().entries["ascvd-pce-10y"]


def test_medications_are_joined_to_the_patients_that_reference_them(spark: Any, settings: Any,
                                                                     tmp_path: Path) -> None:
    """A statin written as medicationReference to a Medication in Medication.ndjson (relative and absolute
    reference) counts exactly as an inline code does; a reference to a Medication not in the export is reported, and
    leaves the statin input unknown (a drug that may be one is not read as "no statin"): no score for that patient."""
    from population.job import run_job

    def record(pid: str, how: str) -> list[dict[str, Any]]:
        res = F.pce_record(age=60, gender="male", race="white", tc=220, hdl=45, sbp=145, pid=pid)
        res.append(F.quantity_obs("2160-0", 1.0, "mg/dL", pid=pid, display="Creatinine"))
        res.append(F.quantity_obs("39156-5", 28.0, "kg/m2", pid=pid, display="BMI"))
        if how != "none":
            med = F.med_request("617310", pid=pid, display="atorvastatin 20 MG Oral Tablet")
            if how != "inline":
                del med["medicationCodeableConcept"]
                target = {"relative": "Medication/statin", "absolute": "https://ehr.example.org/fhir/Medication/statin",
                          "absent": "Medication/not-exported"}[how]
                med["medicationReference"] = {"reference": target}
            res.append(med)
        return res

    formulary = {"resourceType": "Medication", "id": "statin", "code": {"coding": [
        {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "617310",
         "display": "atorvastatin 20 MG Oral Tablet"}]}}
    records = [record(f"m-{how}", how) for how in ("inline", "relative", "absolute", "absent", "none")]
    write_export(tmp_path / "export", records + [[formulary]])
    summary = run_job(spark, job_config(settings, tmp_path / "export", tmp_path / "out", ["prevent-base"], AS_OF))
    scores = pd.read_parquet(tmp_path / "out" / "scores.parquet").set_index("patient_id")
    statin = {pid: dict(f).get("statin") for pid, f in scores["features"].items()}
    assert statin == {"m-inline": 1.0, "m-relative": 1.0, "m-absolute": 1.0, "m-absent": None, "m-none": 0.0}
    assert "statin" in list(scores.loc["m-absent", "missing_inputs"])
    assert pd.isna(scores.loc["m-absent", "primary_value"])
    risk = scores["primary_value"]
    assert risk["m-inline"] == risk["m-relative"] == risk["m-absolute"] != risk["m-none"]
    assert list(scores.loc["m-absent", "unresolved_medications"]) == ["Medication/not-exported"]
    assert summary["unresolved_medication_references"] == {"references": 1, "patients": 1}
    assert summary["input"]["resources"]["Medication"] == 1


# --------------------------------------------------------------------------------------------------------- CLI, e2e
def test_cli_scores_a_gzip_export_end_to_end_and_the_worklist_query_runs(settings: Any, tmp_path: Path) -> None:
    ages = {"w-high": 70, "w-treated": 70, "w-young": 38, "w-low": 45}
    records = []
    for pid, age in ages.items():
        high = pid != "w-low"
        rec = F.pce_record(age=age, gender="male", race="white", tc=280 if high else 170, hdl=35 if high else 60,
                           sbp=170 if high else 115, smoker=high, diabetes=high, treated=high, pid=pid)
        rec.append(F.quantity_obs("2160-0", 1.0, "mg/dL", pid=pid, display="Creatinine"))
        rec.append(F.quantity_obs("39156-5", 28.0, "kg/m2", pid=pid, display="BMI"))
        if pid == "w-treated":
            rec.append(F.med_request("617310", pid=pid, display="atorvastatin 20 MG Oral Tablet"))
        records.append(rec)
    write_export(tmp_path / "export", records, gz=("Observation",))
    with (tmp_path / "export" / "Patient.ndjson").open("a", encoding="utf-8") as fh:
        fh.write("{oops\n")
    config = tmp_path / "config.toml"
    config.write_text(f'[models]\nroot = "{settings.path(settings.models.root)}"\n'
                      f'[store]\nurl = "sqlite:///{tmp_path / "s.sqlite3"}"\n'
                      'hmac_secret = "cli-test-secret-0123456789"\n'
                      '[server]\npublic_base_url = "https://cds.example.org"\n')
    cli = [sys.executable, "-m", "cds_hooks.cli", "population", "score", "--config", str(config)]
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run([*cli, "--input", str(tmp_path / "export"), "--out", str(tmp_path / "out"),
                           "--service", "ascvd-pce-10y", "--service", "prevent-base", "--master", "local[1]",
                           "--partitions", "2"], capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Patient.ndjson:5: malformed-json" in done.stderr
    assert "4 patients scored" in done.stdout
    assert "Scoring patients" in done.stderr

    out = tmp_path / "out"
    table = pq.read_table(out / "scores.parquet")
    assert table.num_rows == 8 and str(table.schema.field("as_of").type) == "timestamp[us, tz=UTC]"
    ra = read_ndjson(out / "RiskAssessment.ndjson")
    assert len(ra) == sum(1 for r in table.to_pylist() if r["outcome"] == "result")
    assert {r["method"]["coding"][0]["system"] for r in ra} == {"https://cds.example.org/models"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["input"]["rejected"]["first"][0]["line"] == 5
    assert (out / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ascvd-pce-10y" in (out / "summary.html").read_text()

    # docs/population.md's worklist: PCE ≥ 20 %, aged 40–75, no statin (from PREVENT's statin feature)
    scores = pd.read_parquet(out / "scores.parquet")
    champion = scores[scores.alias == "champion"]
    pce = champion[champion.service == "ascvd-pce-10y"].set_index("patient_id")
    prevent = champion[champion.service == "prevent-base"].set_index("patient_id")
    statin = prevent["features"].map(lambda f: dict(f).get("statin"))
    age = pce["features"].map(lambda f: dict(f).get("age"))
    worklist = pce[(pce.primary_value >= 0.20) & age.between(40, 75) & (statin.reindex(pce.index) == 0)]
    assert list(worklist.index) == ["w-high"]

    # a second run into the same folder needs --overwrite; a wrong service or input fails in one line, before Spark
    again = subprocess.run([*cli, "--input", str(tmp_path / "export"), "--out", str(out), "--service",
                            "ascvd-pce-10y"], capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert again.returncode == 2 and "--overwrite" in again.stderr and "Traceback" not in again.stderr
    wrong = subprocess.run([*cli, "--input", str(tmp_path / "export"), "--out", str(tmp_path / "o2"), "--service",
                            "no-such-model"], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert wrong.returncode == 2 and "no CDS service 'no-such-model'" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1
    missing = subprocess.run([*cli, "--input", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o3"),
                              "--service", "ascvd-pce-10y"], capture_output=True, text=True, timeout=120, env=env,
                             cwd=ROOT)
    assert missing.returncode == 2 and "nowhere does not exist" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------ pure parts, no Spark
def test_as_of_view_removes_later_resources_and_undoes_later_changes() -> None:
    from population.asof import as_of_view

    at = datetime(2024, 6, 30, 23, 59, 59, tzinfo=UTC)
    obs = {"resourceType": "Observation", "effectiveDateTime": "2024-06-01", "issued": "2024-07-02T08:00:00Z"}
    assert as_of_view(obs, at) == (None, "dated after the as-of date")  # drawn before, resulted after: not known
    assert as_of_view({**obs, "issued": "2024-06-02"}, at)[0] is not None
    statement = {"resourceType": "MedicationStatement", "status": "completed",
                 "effectivePeriod": {"start": "2024-01-01", "end": "2024-09-01"}}
    now_active, why = as_of_view(statement, at)
    assert now_active == {"resourceType": "MedicationStatement", "status": "active",
                          "effectivePeriod": {"start": "2024-01-01"}} and why == "end dated after the as-of date"
    assert statement["status"] == "completed"  # the input is never modified
    assert as_of_view({**statement, "status": "entered-in-error"}, at)[1] is None
    encounter = {"resourceType": "Encounter", "status": "finished",
                 "period": {"start": "2024-06-30T10:00:00Z", "end": "2024-07-01T10:00:00Z"}}
    assert as_of_view(encounter, at)[0]["status"] == "in-progress"
    patient = {"resourceType": "Patient", "id": "p", "deceasedDateTime": "2024-08-01"}
    assert as_of_view(patient, at) == ({"resourceType": "Patient", "id": "p"}, "death dated after the as-of date")
    assert as_of_view({**patient, "deceasedDateTime": "2024-06-01"}, at) == (
        {**patient, "deceasedDateTime": "2024-06-01"}, None)


def test_classify_sorts_every_line_and_names_the_problem() -> None:
    from population.ndjson import MEDICATION, PATIENT, REJECTED, SKIPPED, classify

    wanted = frozenset({"Observation", "MedicationRequest"})

    def one(text: str, number: int = 2) -> Any:
        return classify("Observation.ndjson", number, text, None, wanted)

    bom = one('\ufeff{"resourceType": "Patient", "id": "p1"}', number=1)
    assert (bom.kind, bom.key) == (PATIENT, "p1")
    absolute = one('{"resourceType": "Observation", "subject": {"reference": "https://ehr.example/fhir/Patient/p2"}}')
    assert (absolute.kind, absolute.key) == (PATIENT, "p2")
    versioned = one('{"resourceType": "Observation", "subject": {"reference": "Patient/p3/_history/4"}}')
    assert versioned.key == "p3"
    med = one('{"resourceType": "MedicationRequest", "subject": {"reference": "Patient/p1"}, '
              '"medicationReference": {"reference": "https://ehr.example/fhir/Medication/m9"}}')
    assert (med.kind, med.medication_ref) == (PATIENT, "Medication/m9")
    assert one('{"resourceType": "Medication", "id": "m9"}').key == "Medication/m9"
    assert one('{"resourceType": "Medication", "id": "m9"}').kind == MEDICATION
    assert (one("   ").kind, one("   ").key) == (SKIPPED, "blank-line")
    assert one('{"resourceType": "Immunization", "patient": {"reference": "Patient/p1"}}').key == "not-read"
    for text, reason in [('{"resourceType": "Patient"}', "no-id"),
                         ('{"resourceType": "Observation", "subject": {"reference": "urn:uuid:p1"}}',
                          "no-patient-reference"),
                         ('"just a string"', "not-a-resource"), ('{"id": "x"}', "not-a-resource"),
                         ('{"resourceType": "observation"}', "unknown-resource-type")]:
        line = one(text)
        assert (line.kind, line.key, line.file, line.line) == (REJECTED, reason, "Observation.ndjson", 2), text
        assert line.detail


def test_as_of_option_reads_a_date_as_the_end_of_that_day_in_the_configured_zone() -> None:
    import typer
    from zoneinfo import ZoneInfo

    from cds_hooks.cli.population import parse_as_of

    assert parse_as_of("2024-06-30", UTC) == datetime(2024, 6, 30, 23, 59, 59, tzinfo=UTC)
    assert parse_as_of("2024-06-30", ZoneInfo("America/Chicago")) == datetime(2024, 7, 1, 4, 59, 59, tzinfo=UTC)
    assert parse_as_of("2024-06-30T08:00:00+02:00", UTC) == datetime(2024, 6, 30, 6, 0, tzinfo=UTC)
    assert parse_as_of("2024-06-30T08:00:00", UTC) == datetime(2024, 6, 30, 8, 0, tzinfo=UTC)
    with pytest.raises(typer.BadParameter, match="not a date"):
        parse_as_of("30/06/2024", UTC)


def test_the_batch_scores_with_the_champion_the_promotion_audit_governs(spark: Any, settings: Any,
                                                                        tmp_path: Path) -> None:
    """A promoted challenger is the batch's champion too (no training/serving skew after a promotion); a model whose
    audit chain does not verify is not scored at all, as the online service does not serve it."""
    from dataclasses import replace

    from sqlalchemy import text

    from inference.promotion import folder_digests
    from population.job import JobError, governed_aliases_for, run_job
    from store.audit import new_record
    from store.store import Store

    models_root = settings.path(settings.models.root)
    store = Store(f"sqlite:///{tmp_path / 'audit.sqlite3'}", b"population-audit-secret")
    store.migrate()
    assert governed_aliases_for(store, models_root, ["t2d-onset-5y"]) == ()  # no record: aliases.yaml decides
    store.append_audit(new_record(None, model_id="t2d-onset-5y", action="promote", from_version="1.0.0",
                                  to_version="1.1.0", approver="Dr Ada Example", reason="shadow evidence met",
                                  evidence={}, files=folder_digests(models_root / "t2d-onset-5y" / "1.1.0")))
    aliases = governed_aliases_for(store, models_root, ["t2d-onset-5y", "ascvd-pce-10y"])
    assert aliases == (("t2d-onset-5y", "1.1.0", "1.0.0"),)

    pid = "governed-1"
    record = F.pce_record(age=55, gender="female", race="white", pid=pid)
    record.append(F.quantity_obs("39156-5", 31.0, "kg/m2", pid=pid, display="BMI"))
    write_export(tmp_path / "export", [record])
    config = replace(job_config(settings, tmp_path / "export", tmp_path / "out", ["t2d-onset-5y"], AS_OF),
                     aliases=aliases)
    run_job(spark, config)
    rows = pq.read_table(tmp_path / "out" / "scores.parquet").to_pylist()
    versions = {r["alias"]: r["model_version"] for r in rows}
    assert versions["champion"] == "1.1.0"
    assert versions.get("challenger", "1.0.0") == "1.0.0"

    with store.engine.begin() as conn:  # someone edits history behind the triggers' back
        conn.execute(text("DROP TRIGGER promotion_audit_no_update"))
        conn.execute(text("UPDATE promotion_audit SET reason = 'nothing to see'"))
    with pytest.raises(JobError, match="t2d-onset-5y: its promotion audit chain does not verify"):
        governed_aliases_for(store, models_root, ["t2d-onset-5y"])
    store.dispose()
