"""The committed Synthea fixtures are valid R4, catalogued truthfully, varied, and reproducible."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "synthea"
SCRIPT = ROOT / "synthetic" / "generate_patients.py"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from synthetic.bundle_tools import (
    dangling_references,
    exclude_types,
    serialise,
    summarise,
    trim_history,
)


def _index() -> dict[str, Any]:
    return json.loads((FIXTURES / "index.json").read_text(encoding="utf-8"))


def _load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def _rows() -> list[dict[str, Any]]:
    return _index()["patients"]


def test_index_lists_exactly_the_bundle_files() -> None:
    on_disk = {p.name for p in FIXTURES.glob("*.json")} - {"index.json"}
    assert on_disk == {row["file"] for row in _rows()}
    assert len(on_disk) >= 8


def test_fixtures_are_small() -> None:
    total = sum(p.stat().st_size for p in FIXTURES.glob("*.json"))
    assert total < 3_200_000


@pytest.mark.parametrize("row", _rows(), ids=lambda r: r["file"])
def test_bundle_validates_as_r4b_and_resolves_references(row: dict[str, Any]) -> None:
    data = _load(row["file"])
    bundle = Bundle.model_validate(data)
    assert bundle.type in {"transaction", "collection"}
    assert dangling_references(data) == []


@pytest.mark.parametrize("row", _rows(), ids=lambda r: r["file"])
def test_index_row_agrees_with_file(row: dict[str, Any]) -> None:
    path = FIXTURES / row["file"]
    data = json.loads(path.read_bytes())
    assert row["size_bytes"] == path.stat().st_size
    assert path.read_bytes() == serialise(data), (
        "fixture is not in canonical serialisation"
    )
    reference = date.fromisoformat(_index()["settings"]["reference_date"])
    expected = summarise(data, reference)
    assert {k: row[k] for k in expected} == expected
    patient = next(
        e["resource"]
        for e in data["entry"]
        if e["resource"]["resourceType"] == "Patient"
    )
    assert row["patient_id"] == patient["id"]
    assert 30 <= row["age"] <= 80


def test_fixtures_cover_the_cases_the_models_need() -> None:
    rows = _rows()
    assert any(r["has_diabetes"] for r in rows)
    assert any(r["has_hypertension"] and r["active_medication_rxnorm"] for r in rows)
    assert any(r["has_ckd"] for r in rows)
    assert any(r["has_atrial_fibrillation"] for r in rows)
    assert any(r["age"] < 40 for r in rows)
    assert any(r["age"] >= 75 for r in rows)


def test_fixtures_carry_the_codes_our_feature_specs_read() -> None:
    loinc: set[str] = set()
    bp_components: set[str] = set()
    rxnorm = False
    for row in _rows():
        for entry in _load(row["file"])["entry"]:
            res = entry["resource"]
            if res["resourceType"] == "Observation":
                code = res["code"]["coding"][0]["code"]
                loinc.add(code)
                if code == "85354-9":
                    bp_components |= {
                        c["code"]["coding"][0]["code"] for c in res.get("component", [])
                    }
            if res["resourceType"] == "MedicationRequest":
                codings = res.get("medicationCodeableConcept", {}).get("coding", [])
                rxnorm |= any(
                    c.get("system") == "http://www.nlm.nih.gov/research/umls/rxnorm"
                    for c in codings
                )
    for code in (
        "2093-3",
        "2085-9",
        "85354-9",
        "72166-2",
        "2160-0",
        "33914-3",
        "4548-4",
        "39156-5",
        "29463-7",
        "8302-2",
    ):
        assert code in loinc, code
    assert {"8480-6", "8462-4"} <= bp_components
    assert rxnorm


def test_regenerating_a_fixture_is_byte_identical(tmp_path: Path) -> None:
    settings = _index()["settings"]
    row = min(_rows(), key=lambda r: r["size_bytes"])
    cmd = [
        sys.executable,
        str(SCRIPT),
        "--seed", str(settings["seed"]),
        "--reference-date", settings["reference_date"],
        "--min-age", str(settings["min_age"]),
        "--max-age", str(settings["max_age"]),
        "--indices", str(row["index"]),
        "--out", str(tmp_path),
    ]  # fmt: skip
    if settings["state"]:
        cmd += ["--state", settings["state"]]
    if settings["history_years"] is not None:
        cmd += ["--history-years", str(settings["history_years"])]
    if settings["exclude_types"]:
        cmd += ["--exclude-types", ",".join(settings["exclude_types"])]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    assert (tmp_path / row["file"]).read_bytes() == (
        FIXTURES / row["file"]
    ).read_bytes()
    regenerated = json.loads((tmp_path / "index.json").read_text(encoding="utf-8"))
    assert regenerated["patients"] == [row]


# --- the post-processing helpers, on a hand-written bundle -------------------------------


def _entry(resource: dict[str, Any]) -> dict[str, Any]:
    return {"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource,
            "request": {"method": "POST", "url": resource["resourceType"]}}  # fmt: skip


def _mini_bundle() -> dict[str, Any]:
    pat = {"reference": "urn:uuid:p1"}
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            _entry({"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1960-05-01"}),
            _entry({"resourceType": "Encounter", "id": "e-old", "status": "finished", "subject": pat,
                    "class": {"code": "AMB"}, "period": {"start": "2001-01-01T00:00:00+00:00"}}),
            _entry({"resourceType": "Encounter", "id": "e-new", "status": "finished", "subject": pat,
                    "class": {"code": "AMB"}, "period": {"start": "2024-01-01T00:00:00+00:00"}}),
            _entry({"resourceType": "Condition", "id": "c-dm", "subject": pat,
                    "encounter": {"reference": "urn:uuid:e-old"},
                    "clinicalStatus": {"coding": [{"code": "active"}]},
                    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
                    "onsetDateTime": "2001-01-01T00:00:00+00:00"}),
            _entry({"resourceType": "Condition", "id": "c-old", "subject": pat,
                    "encounter": {"reference": "urn:uuid:e-old"},
                    "clinicalStatus": {"coding": [{"code": "resolved"}]},
                    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "10509002"}]},
                    "onsetDateTime": "2001-01-01T00:00:00+00:00", "abatementDateTime": "2001-02-01T00:00:00+00:00"}),
            _entry({"resourceType": "Observation", "id": "o-old", "status": "final", "subject": pat,
                    "encounter": {"reference": "urn:uuid:e-old"},
                    "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
                    "effectiveDateTime": "2001-01-01T00:00:00+00:00"}),
            _entry({"resourceType": "Observation", "id": "o-new", "status": "final", "subject": pat,
                    "encounter": {"reference": "urn:uuid:e-new"},
                    "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
                    "effectiveDateTime": "2024-01-01T00:00:00+00:00"}),
            _entry({"resourceType": "Claim", "id": "cl", "patient": pat, "created": "2024-01-01T00:00:00+00:00"}),
            _entry({"resourceType": "ExplanationOfBenefit", "id": "eob", "patient": pat,
                    "claim": {"reference": "urn:uuid:cl"}, "created": "2024-01-01T00:00:00+00:00"}),
            _entry({"resourceType": "Provenance", "id": "prov", "recorded": "2024-01-01T00:00:00+00:00",
                    "target": [{"reference": "urn:uuid:o-old"}, {"reference": "urn:uuid:o-new"}]}),
        ],
    }  # fmt: skip


def _ids(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle["entry"]]


def test_trim_history_keeps_recent_and_ongoing_and_what_they_reference() -> None:
    trimmed = trim_history(_mini_bundle(), date(2020, 1, 1))
    assert _ids(trimmed) == [
        "p1",
        "e-old",
        "e-new",
        "c-dm",
        "o-new",
        "cl",
        "eob",
        "prov",
    ]
    prov = trimmed["entry"][-1]["resource"]
    assert prov["target"] == [{"reference": "urn:uuid:o-new"}]
    assert dangling_references(trimmed) == []


def test_exclude_types_drops_dependents_instead_of_leaving_dangling_references() -> (
    None
):
    slim = exclude_types(_mini_bundle(), ["Claim"])
    assert "cl" not in _ids(slim) and "eob" not in _ids(slim)
    assert dangling_references(slim) == []


def test_summarise_flags_active_conditions_only() -> None:
    row = summarise(_mini_bundle(), date(2025, 1, 1))
    assert row["has_diabetes"] is True
    assert row["has_hypertension"] is False
    assert row["age"] == 64
    assert row["observation_counts"]["hba1c"] == 2


def test_summarise_rejects_a_bundle_without_one_patient() -> None:
    bundle = _mini_bundle()
    bundle["entry"] = bundle["entry"][1:]
    with pytest.raises(ValueError, match="Patient"):
        summarise(bundle, date(2025, 1, 1))


def test_large_record_option_writes_about_the_requested_size(tmp_path: Path) -> None:
    out = tmp_path / "large.json"
    subprocess.run(
        [sys.executable, str(SCRIPT), "--large-record", str(out), "--large-bytes", "300000"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    data = out.read_bytes()
    assert 300_000 <= len(data) < 900_000
    Bundle.model_validate(json.loads(data))


def test_asking_for_a_patient_who_died_is_a_clear_error(tmp_path: Path) -> None:
    # With the default seed and age band, patient 3 dies before the reference date.
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--indices", "3", "--out", str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "--indices: patient 3 died" in result.stderr
    assert not (tmp_path / "index.json").exists()
