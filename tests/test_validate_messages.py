"""`cds-onnx models validate` names every problem as `file: field: problem — fix`, all of them in one run, in plain
words; `serve` refuses the same folder with the same list before binding a port."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import pytest
import yaml

from conftest import ROOT

PCE = ROOT / "models" / "ascvd-pce-10y"
FOLDER = "models/ascvd-pce-10y/1.0.0"
MANIFEST, FEATURES, GOLDEN, GRAPH = (f"{FOLDER}/{name}" for name in
                                     ("manifest.yaml", "features.yaml", "golden.yaml", "model.onnx"))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A working folder holding models/ with a copy of the shipped PCE model (valid as shipped)."""
    shutil.copytree(PCE, tmp_path / "models" / "ascvd-pce-10y")
    return tmp_path


def validate(cwd: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_ONNX_")}
    return subprocess.run([sys.executable, "-m", "cds_hooks.cli", "models", "validate", "--root", "models", *extra],
                          cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**env, "NO_COLOR": "1", "COLUMNS": "300"})


def problems(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("invalid: ") and lines[0].endswith(f"problem{'s' if len(lines) > 2 else ''} in the "
                                                                  "model repository models:")
    return lines[1:]


def edit(path: Path, change: Callable[[Any], None]) -> None:
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


def placeholder_in_summary(repo: Path) -> None:
    edit(repo / MANIFEST, lambda m: m["card"].update(summary="10-year ASCVD risk {risk_pct} ({category})"))


def unit_mismatch(repo: Path) -> None:
    edit(repo / FEATURES, lambda f: f["features"]["sbp"].update(unit="mmHg"))


def graph_input_renamed(repo: Path) -> None:
    model = onnx.load(str(repo / GRAPH))
    model.graph.input[0].name = "x"
    for node in model.graph.node:
        node.input[:] = ["x" if name == "features" else name for name in node.input]
    onnx.save(model, str(repo / GRAPH))


def unknown_population_feature(repo: Path) -> None:
    edit(repo / MANIFEST, lambda m: m["population"][0].update(feature="agee"))


def unknown_advice_feature_and_category(repo: Path) -> None:
    edit(repo / MANIFEST, lambda m: m["advice"][0].update(when=[{"feature": "statinn", "equals": 1}],
                                                          unchecked=["diabetis"], categories=["moderate"]))


ADVICE = [f"{MANIFEST}: advice[0].when[0].feature: 'statinn' is not a feature of features.yaml — define it there or "
          "fix the name",
          f"{MANIFEST}: advice[0].unchecked[0]: 'diabetis' is not a feature of features.yaml — define it there or "
          "fix the name",
          f"{MANIFEST}: advice[0].categories: 'moderate' is not a category — use one of borderline, high, "
          "intermediate, low"]


def test_advice_names_features_and_categories_that_exist(repo: Path) -> None:
    unknown_advice_feature_and_category(repo)
    assert sorted(problems(validate(repo))) == sorted(ADVICE)


def test_card_notes_name_features_that_exist_and_fill_only_their_placeholders(repo: Path) -> None:
    """A note resting on a misspelt feature would never show, and one writing {category} would show the braces
    ({evidence}, {value} and {date} are filled)."""
    edit(repo / MANIFEST, lambda m: m["card"].update(notes=[{
        "when": [{"feature": "statinn", "equals": 1}],
        "text": "On a statin ({evidence}, {value} on {date}), risk {category}."}]))
    assert sorted(problems(validate(repo))) == sorted([
        f"{MANIFEST}: card.notes[0].when[0].feature: 'statinn' is not a feature of features.yaml — define it there "
        "or fix the name",
        f"{MANIFEST}: card.notes[0].text: writes {{category}}, but a note fills only {{evidence}}, {{value}} and "
        "{date} — write the text out, or use {evidence} for the records it rests on, {value} and {date} for its first "
        "condition's value as the card shows it"])


PLACEHOLDER = (f"{MANIFEST}: card.summary: names {{risk_pct}} which is not a card value — use one of {{value}}, "
               "{category}")
UNIT = f"{FEATURES}: features.sbp.unit: mmHg differs from manifest inputs.sbp.unit mm[Hg] — make them the same UCUM unit"
INPUT_NAME = (f"{GRAPH}: inputs: graph input 'x' but the service feeds 'features' — rename the graph input to "
              "'features' (see docs/model-authoring.md)")
POPULATION = (f"{MANIFEST}: population[0].feature: 'agee' is not a feature of features.yaml — define it there or fix "
              "the name")


def test_the_shipped_copy_is_valid(repo: Path) -> None:
    result = validate(repo)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok: 1 models, 1 versions valid in models"


@pytest.mark.parametrize(("breaks", "message"), [
    (placeholder_in_summary, PLACEHOLDER),
    (unit_mismatch, UNIT),
    (graph_input_renamed, INPUT_NAME),
    (unknown_population_feature, POPULATION),
], ids=["card-placeholder", "unit-mismatch", "graph-input-name", "population-feature"])
def test_each_problem_has_its_exact_message(repo: Path, breaks: Callable[[Path], None], message: str) -> None:
    breaks(repo)
    assert problems(validate(repo)) == [message]


def test_malformed_yaml_names_line_and_column(repo: Path) -> None:
    lines = (repo / MANIFEST).read_text().splitlines()
    assert lines[2].startswith("title:")
    lines[2] = "title: a: b"  # line 3; the second ':' is column 9
    (repo / MANIFEST).write_text("\n".join(lines) + "\n")
    found = problems(validate(repo))
    assert found == [f"{MANIFEST}: line 3, column 9: not valid YAML: mapping values are not allowed here — fix the "
                     "YAML there (indentation, a missing ':', an unclosed quote or bracket)"]


def test_several_problems_are_reported_in_one_run(repo: Path) -> None:
    for breaks in (placeholder_in_summary, unit_mismatch, graph_input_renamed, unknown_population_feature):
        breaks(repo)
    found = problems(validate(repo))
    assert sorted(found) == sorted([PLACEHOLDER, UNIT, INPUT_NAME, POPULATION])


def test_pydantic_wording_never_reaches_the_author(repo: Path) -> None:
    def change(m: dict[str, Any]) -> None:
        del m["citation"]
        m["titel"] = m.pop("title")
        m["inputs"][0]["range"] = [40, 60, 79]
        m["kind"] = "learned"
    edit(repo / MANIFEST, change)
    found = problems(validate(repo))
    assert f"{MANIFEST}: citation: missing — add it (see docs/model-authoring.md)" in found
    assert f"{MANIFEST}: title: missing — add it (see docs/model-authoring.md)" in found
    assert f"{MANIFEST}: titel: 'titel' is not a known field — did you mean 'title'?" in found
    assert f"{MANIFEST}: inputs[0].range: [40, 60, 79] is not a [low, high] pair — write two numbers, e.g. [40, 79]" \
        in found
    assert f"{MANIFEST}: kind: 'learned' is not allowed — use one of evidence-based, predictive" in found
    text = "\n".join(found)
    for leak in ("Field required", "type=", "input_value", "Extra inputs", "pydantic"):
        assert leak not in text


def test_cross_field_checks_are_all_reported(repo: Path) -> None:
    def change(m: dict[str, Any]) -> None:
        m["outputs"][0]["primary"] = False
        del m["categories"][1]["below"]
        m["what_if"][0]["set"]["sbp"] = 250
    edit(repo / MANIFEST, change)
    found = problems(validate(repo))
    assert sorted(found) == sorted([
        f"{MANIFEST}: outputs: no output is `primary: true` — mark exactly one output `primary: true`",
        f"{MANIFEST}: categories[1]: has neither `below` nor `at_least` — give it a bound (only the last category has "
        "none)",
        f"{MANIFEST}: what_if[0].set.sbp: 250 is outside the input's range [90, 200] — use a value inside the range",
    ])  # the manifest does not validate, so the checks against the other files wait for these


def test_card_texts_are_rendered_from_the_golden_examples(repo: Path) -> None:
    edit(repo / MANIFEST, lambda m: m["categories"][1].update(guidance="Borderline: {value} merits a discussion"))
    assert problems(validate(repo)) == [
        f"{MANIFEST}: categories[1].guidance: writes {{value}}, but only card.summary fills placeholders — write the "
        "text out (the card shows it exactly as written)"]
    edit(repo / MANIFEST, lambda m: m["categories"][1].update(guidance="Discuss the risk."))
    edit(repo / MANIFEST, lambda m: m["card"].update(summary="10-year ASCVD risk {value:.1f}"))
    found = problems(validate(repo))
    assert len(found) == 1 and found[0].startswith(f"{MANIFEST}: card.summary: cannot be filled (Unknown format code")
    edit(repo / MANIFEST, lambda m: m["card"].update(summary="10-year ASCVD risk {value}", template="nope.md.j2"))
    assert problems(validate(repo)) == [f"{MANIFEST}: card.template: 'nope.md.j2' is not a card template — use "
                                        "risk.md.j2 (the templates are in cards/templates/)"]


def test_golden_examples_and_defaults_must_be_inside_the_ranges(repo: Path) -> None:
    edit(repo / GOLDEN, lambda g: g["examples"][0]["inputs"].update(age=30))
    edit(repo / FEATURES, lambda f: f["features"]["hdl"].update(required=False, default=5, default_note="assumed"))
    found = problems(validate(repo))
    assert (f"{GOLDEN}: examples[0].inputs.age: 30 is outside manifest inputs.age.range [40, 79] — use a value inside "
            "the validated range (the service refuses others)") in found
    assert (f"{FEATURES}: features.hdl.default: 5 is outside manifest inputs.hdl.range [20, 100], so every patient "
            "without a value would be refused — use a default inside the range, or no default") in found


def test_serve_refuses_the_folder_listing_every_problem_before_binding(repo: Path) -> None:
    for breaks in (placeholder_in_summary, unit_mismatch):
        breaks(repo)
    (repo / "cds-onnx.toml").write_text('[models]\nroot = "models"\n[store]\nhmac_secret = "0123456789abcdef0123"\n'
                                        'url = "sqlite:///var/store.sqlite3"\nspool_dir = "var/spool"\n'
                                        '[server]\nport = 9\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_ONNX_")}
    result = subprocess.run([sys.executable, "-m", "cds_hooks.cli", "serve"], cwd=repo, capture_output=True,
                            text=True, timeout=300, env={**env, "NO_COLOR": "1", "COLUMNS": "300"})
    assert result.returncode == 3, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("cannot start: 2 problems in the model repository")
    assert sorted(lines[1:]) == sorted([PLACEHOLDER, UNIT])


@pytest.mark.parametrize(("source", "said"), [
    ({"resource": "MedicationRequest", "reason_valueset": "no-such-set"}, "reason_valueset"),
    ({"resource": "Condition", "reason_valueset": "hypertension"},
     "`reason_valueset` only applies to MedicationRequest and MedicationStatement sources"),
], ids=["unknown-set", "not-a-medication"])
def test_a_reason_value_set_is_checked_like_any_value_set(repo: Path, source: dict[str, str], said: str) -> None:
    """`reason_valueset` names a value set that must exist, and only a medication source can give a reason."""
    edit(repo / FEATURES, lambda f: f["features"]["diabetes"]["sources"].append(source))
    found = problems(validate(repo))
    assert len(found) == 1 and said in found[0] and "features.diabetes.sources[5]" in found[0], found
    if source["reason_valueset"] == "no-such-set":
        assert "no-such-set" in found[0], found


@pytest.mark.parametrize(("source", "said"), [
    ({"resource": "Observation", "codes": ["http://loinc.org|4548-4"], "provisional_statuses": ["preliminary"]},
     "`provisional_statuses` needs `above` and `above_unit`"),
    ({"resource": "Observation", "codes": ["http://loinc.org|4548-4"], "above": 6.49, "above_unit": "%",
      "provisional_statuses": ["preliminary", "final"]},
     "`provisional_statuses` must not repeat a counted status: final"),
], ids=["without-a-threshold", "a-counted-status"])
def test_provisional_statuses_need_a_threshold_and_new_statuses(repo: Path, source: dict[str, Any], said: str) -> None:
    """A result not yet final leaves an `exists` feature unknown only when it meets a threshold (a quantity or coded
    feature's newest one leaves it unknown whatever it says), and a status already counted cannot also be
    provisional."""
    edit(repo / FEATURES, lambda f: f["features"]["diabetes"]["sources"].append(source))
    found = problems(validate(repo))
    where = "features.diabetes: " if source.get("above") is None else "features.diabetes.sources[5]"
    assert len(found) == 1 and said in found[0] and where in found[0], found
