"""The manifest blocks of a sequence model: `sequence:` (how the timeline feeds the graph) and `backend:` (where the
graph runs when it is too large for the service's process).

A manifest with a `sequence:` block is served by inference/sequence_runtime.py: its graph reads the patient's
timeline (fhir_mapping/timeline.py) as tokens, times and a mask instead of one row of tabular features.
docs/timeline-models.md documents every field.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SequenceInputs(_Strict):
    """Names of the graph's three inputs, each [N, T]: token ids (int64), times (float32), mask (float32, 1 = read)."""

    tokens: str = "tokens"
    time: str = "ages"
    mask: str = "mask"

    @model_validator(mode="after")
    def _distinct(self) -> SequenceInputs:
        if len({self.tokens, self.time, self.mask}) != 3:
            raise ValueError("the tokens, time and mask inputs need three different names")
        return self


class SequenceSpec(_Strict):
    """How the patient's timeline becomes the graph's inputs."""

    timeline: str = "timeline.yaml"
    vocabulary: str = "vocab.json"
    max_length: int = Field(gt=1, le=16384)  # events read at most (the most recent; birth and gender always kept)
    min_events: int = Field(default=1, ge=1)  # fewer coded events in the look-back window: no number
    # ages: the patient's age in years at each event (needs the date of birth); times: years before the prediction
    time: Literal["ages", "times"] = "ages"
    inputs: SequenceInputs = SequenceInputs()
    explain_top: int = Field(default=3, ge=0, le=10)  # concept groups named on the card


class BackendSpec(_Strict):
    """A graph served by an Open Inference Protocol v2 endpoint (KServe, Triton, Seldon) instead of in process.

    The URL must also be listed in the configuration (`models.remote_backends`): a model folder alone never makes the
    service call a new host."""

    type: Literal["oip-v2"]
    url: str
    model_name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
    model_version: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    timeout_seconds: float = Field(default=2.0, gt=0, le=60)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ValueError("must be an http(s) base URL without query or fragment (e.g. http://kserve:8080)")
        return value.strip().rstrip("/")
