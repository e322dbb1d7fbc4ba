"""docs/model-authoring.md documents every manifest field: a field added to the Manifest model without a line in the
authoring guide fails here."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from pydantic import BaseModel

from inference.manifest import Manifest

DOC = (Path(__file__).resolve().parent.parent / "docs" / "model-authoring.md").read_text(encoding="utf-8")


def field_paths(model: type[BaseModel], prefix: str = "", seen: set[type] | None = None) -> list[str]:
    seen = set() if seen is None else seen
    paths = []
    for name, info in model.model_fields.items():
        paths.append((prefix + name, name))
        for arg in typing.get_args(info.annotation) or (info.annotation,):
            for inner in typing.get_args(arg) or (arg,):
                if isinstance(inner, type) and issubclass(inner, BaseModel) and inner not in seen:
                    seen.add(inner)
                    paths.extend(field_paths(inner, f"{prefix}{name}.", seen))
    return paths


def test_every_manifest_field_is_in_the_authoring_guide() -> None:
    paths = field_paths(Manifest)
    assert len(paths) > 100  # the walk reaches nested blocks (inputs, categories, monitoring, sequence, backend…)
    undocumented = [path for path, name in paths if not re.search(rf"`{re.escape(name)}\b", DOC)]
    assert undocumented == []
