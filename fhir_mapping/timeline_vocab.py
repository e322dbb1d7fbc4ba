"""A sequence model's vocabulary (vocab.json): event tokens to the integer ids its embedding was trained on.

A token is an event's `SYSTEM/CODE`, or the code with its value bin (`LOINC/4548-4|bin2`) or coded answer. Ids 0 and
1 are reserved for padding and for every token the model never saw in training; unknown tokens are counted so a
card can say how much of the record the model could not read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fhir_mapping.timeline import Event, TimelineSpecError

PAD_TOKEN, UNKNOWN_TOKEN = "[PAD]", "[UNK]"


@dataclass(frozen=True)
class Vocabulary:
    """Token → id, with the reserved padding and unknown ids."""

    ids: dict[str, int]
    pad_id: int = 0
    unknown_id: int = 1

    @property
    def size(self) -> int:
        """Rows the model's embedding needs (largest id + 1)."""
        return max([self.pad_id, self.unknown_id, *self.ids.values()]) + 1

    def encode(self, events: Sequence[Event]) -> tuple[list[int], int]:
        """Token ids of the events and how many were unknown."""
        out: list[int] = []
        unknown = 0
        for event in events:
            token_id = self.ids.get(event.token)
            if token_id is None:
                unknown += 1
                token_id = self.unknown_id
            out.append(token_id)
        return out, unknown

    def to_document(self) -> dict[str, Any]:
        return {"format": "cds-onnx-vocab", "version": 1,
                "special": {PAD_TOKEN: self.pad_id, UNKNOWN_TOKEN: self.unknown_id},
                "tokens": dict(sorted(self.ids.items(), key=lambda kv: kv[1]))}


def build_vocabulary(tokens: Sequence[str]) -> Vocabulary:
    """Ids 2.. for the distinct tokens, in sorted order (training builds the vocabulary this way)."""
    return Vocabulary({token: i + 2 for i, token in enumerate(sorted(set(tokens)))})


def load_vocabulary(path: Path) -> Vocabulary:
    """Read and check a vocab.json; TimelineSpecError names the file and what is wrong."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TimelineSpecError(f"{path}: cannot read vocabulary: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != "cds-onnx-vocab" or doc.get("version") != 1:
        raise TimelineSpecError(f"{path}: not a vocabulary (expected format: cds-onnx-vocab, version: 1)")
    special, tokens = doc.get("special"), doc.get("tokens")
    if not isinstance(special, dict) or not isinstance(tokens, dict) or not tokens:
        raise TimelineSpecError(f"{path}: needs `special` ({PAD_TOKEN}, {UNKNOWN_TOKEN}) and a non-empty `tokens`")
    pad, unknown = special.get(PAD_TOKEN), special.get(UNKNOWN_TOKEN)
    for name, value in ((PAD_TOKEN, pad), (UNKNOWN_TOKEN, unknown)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise TimelineSpecError(f"{path}: special.{name} must be a non-negative integer id")
    seen: dict[int, str] = {pad: PAD_TOKEN, unknown: UNKNOWN_TOKEN}
    if pad == unknown:
        raise TimelineSpecError(f"{path}: {PAD_TOKEN} and {UNKNOWN_TOKEN} need different ids")
    for token, token_id in tokens.items():
        if not isinstance(token_id, int) or isinstance(token_id, bool) or token_id < 0:
            raise TimelineSpecError(f"{path}: tokens.{token}: id must be a non-negative integer, not {token_id!r}")
        if token_id in seen:
            raise TimelineSpecError(f"{path}: tokens.{token}: id {token_id} is already used by {seen[token_id]}")
        seen[token_id] = token
    return Vocabulary(dict(tokens), pad_id=pad, unknown_id=unknown)
