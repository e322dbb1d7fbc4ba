"""The model repository: `models/<model-id>/<version>/` folders, validated at start-up, with champion/challenger aliases.

Adding a model is adding a folder. Start-up refuses to run with a broken folder and lists every problem of every
folder, one per line as `file: field: problem — fix` (inference/validation.py does the checking).
"""

from __future__ import annotations

from collections.abc import Sequence
import copy
from dataclasses import dataclass, field
from pathlib import Path

from inference.problems import Problem, read_yaml
from inference.runtime import ModelRuntime
from inference.sequence_loader import load_if_sequence
from inference.validation import check_version


class ModelFolderError(RuntimeError):
    """A model folder cannot be served; the message lists every problem, one per line (`problems` holds them)."""

    def __init__(self, message: str | Sequence[Problem | str]) -> None:
        self.items: list[Problem | str] = [message] if isinstance(message, str) else list(message)
        self.problems: list[Problem] = [i for i in self.items if isinstance(i, Problem)]
        self.lines: list[str] = [str(i) for i in self.items]
        super().__init__("\n".join(self.lines))


@dataclass
class ModelEntry:
    """A model id with its champion (shown) and optional challenger (shadow, recorded, never shown).

    `configured_champion`/`configured_challenger` are what aliases.yaml says; once the promotion audit chain has a
    record for the model, the serving process moves `champion`/`challenger` with `set_aliases` (inference/promotion.py,
    cds_hooks/champion_sync.py). Every version stays loaded, so any of them can be reviewed and rolled back to."""

    id: str
    champion: ModelRuntime
    challenger: ModelRuntime | None
    versions: dict[str, ModelRuntime]
    configured_champion: str = field(init=False)
    configured_challenger: str | None = field(init=False)

    def __post_init__(self) -> None:
        self.configured_champion = self.champion.version
        self.configured_challenger = self.challenger.version if self.challenger is not None else None

    def snapshot(self) -> ModelEntry:
        """This entry with its champion and challenger as they are now: a service call works on one consistent pair
        even if a promotion moves the aliases while it runs."""
        return copy.copy(self)

    def set_aliases(self, champion: str, challenger: str | None) -> None:
        """Make `champion` the shown version and `challenger` the shadow one (both loaded, same inputs). Call it from
        the thread that reads the aliases (the event loop), so a request sees either the old pair or the new one."""
        missing = [v for v in (champion, challenger) if v is not None and v not in self.versions]
        if missing:
            raise ModelFolderError(f"{self.id}: version {', '.join(missing)} is not loaded "
                                   f"(loaded: {', '.join(sorted(self.versions))})")
        if champion == challenger:
            raise ModelFolderError(f"{self.id}: champion and challenger are the same version {champion}")
        new_champion = self.versions[champion]
        new_challenger = self.versions[challenger] if challenger is not None else None
        names = [i.name for i in new_champion.manifest.inputs]
        if new_challenger is not None and [i.name for i in new_challenger.manifest.inputs] != names:
            raise ModelFolderError(f"{self.id}: the challenger {challenger}'s inputs differ from the champion's")
        self.champion, self.challenger = new_champion, new_challenger


def load_version(folder: Path, remote_backends: tuple[str, ...] = ()) -> ModelRuntime:
    """Load and fully validate one model version folder; ModelFolderError lists every problem found.
    `remote_backends`: the OIP v2 base URLs the configuration allows a sequence model's `backend:` to name."""
    sequence = load_if_sequence(folder, remote_backends)  # a `sequence:` manifest (docs/timeline-models.md)
    if isinstance(sequence, list):
        raise ModelFolderError(sequence)
    if sequence is not None:
        return sequence  # type: ignore[return-value]  # same duck type as ModelRuntime (predict, manifest, spec)
    check = check_version(folder)
    if check.problems or check.runtime is None:
        raise ModelFolderError(check.problems or [Problem(folder, "", "cannot be loaded", "see the problems above")])
    check.runtime.warm_up()
    return check.runtime


def load_versions(model_dir: Path, remote_backends: tuple[str, ...] = ()) -> dict[str, ModelRuntime]:
    """Every version folder of a model (a folder with a manifest.yaml); one error listing all their problems."""
    versions: dict[str, ModelRuntime] = {}
    problems: list[Problem | str] = []
    for version_dir in sorted(p for p in model_dir.iterdir() if p.is_dir() and (p / "manifest.yaml").is_file()):
        try:
            versions[version_dir.name] = load_version(version_dir, remote_backends)
        except ModelFolderError as exc:
            problems += exc.items
    if problems:
        raise ModelFolderError(problems)
    return versions


class ModelRepository:
    """All models under a root folder, each with its aliases."""

    def __init__(self, root: Path, remote_backends: tuple[str, ...] = ()) -> None:
        self.root = root
        self.remote_backends = tuple(remote_backends)  # models.remote_backends: OIP v2 URLs model folders may name
        self.entries: dict[str, ModelEntry] = {}

    def load(self) -> ModelRepository:
        """Load every model folder; ModelFolderError lists the problems of all of them at once."""
        if not self.root.is_dir():
            raise ModelFolderError([Problem(self.root, "", "model repository folder not found",
                                            "point models.root (or --root) at the folder holding the model folders")])
        items: list[Problem | str] = []
        for model_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
            try:
                self.entries[model_dir.name] = self._load_model(model_dir)
            except ModelFolderError as exc:
                items += exc.items
        if items:
            raise ModelFolderError(items)
        return self

    def _load_model(self, model_dir: Path) -> ModelEntry:
        aliases_path = model_dir / "aliases.yaml"
        if not aliases_path.is_file():
            raise ModelFolderError(f"{model_dir}: aliases.yaml not found (it names the champion version)")
        aliases, problems = read_yaml(aliases_path)
        if problems:
            raise ModelFolderError(problems)
        aliases = aliases or {}
        if not isinstance(aliases, dict) or "champion" not in aliases:
            raise ModelFolderError(f"{aliases_path}: must name a `champion` version")
        versions = load_versions(model_dir, self.remote_backends)
        picked = {}
        for alias in ("champion", "challenger"):
            version = aliases.get(alias)
            if version is None:
                continue
            version = str(version)
            if version not in versions:
                raise ModelFolderError(f"{aliases_path}: {alias} version '{version}' has no folder {model_dir / version}")
            picked[alias] = versions[version]
        champion = picked["champion"]
        challenger = picked.get("challenger")
        if challenger is not None:
            if challenger is champion:
                raise ModelFolderError(f"{aliases_path}: champion and challenger are the same version")
            if [i.name for i in challenger.manifest.inputs] != [i.name for i in champion.manifest.inputs]:
                # a challenger runs in shadow on the champion's features; it may use a different graph, not different inputs
                raise ModelFolderError(f"{aliases_path}: the challenger's inputs differ from the champion's")
        return ModelEntry(model_dir.name, champion, challenger, versions)
