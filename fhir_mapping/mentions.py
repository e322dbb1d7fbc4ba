"""Words that name a feature's condition in a record whose code the value sets do not hold.

Value sets are exact lists of codes; a problem list also carries local codes, codes newer or more specific than a
set's expansion, and entries with text alone. A "No" read from such a record would be false, so a feature may list
the words that name its condition (`mentions:` in features.yaml): a current record of the feature's resource types
that no set matched, whose text or coding display holds one of the words and none of the words that make it
something else ("family history of", "without", "pulmonary hypertension"), leaves the answer unknown, naming the
record, rather than "No". Matching is on whole words, case- and punctuation-blind: "heart-failure" is "heart
failure", and "hypertension" is not found in "prehypertension".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from fhir_mapping.index import codings

_NON_WORD = re.compile(r"[^0-9a-z]+")


def normalised(text: str) -> str:
    """Lower case, every run of other characters one space, padded with a space at each end: whole-word search is
    then a substring search for ' <phrase> '."""
    return f" {_NON_WORD.sub(' ', text.lower()).strip()} "


class MentionRule:
    """Phrases that name a condition, and phrases that make a text about something else."""

    def __init__(self, words: Iterable[str], unless: Iterable[str] = ()) -> None:
        self.words = tuple(normalised(w) for w in words)
        self.unless = tuple(normalised(w) for w in unless)
        if any(w.strip() == "" for w in self.words + self.unless):
            raise ValueError("a mention phrase needs at least one letter or digit")

    def names(self, text: str) -> bool:
        """Whether `text` names the condition: one of the words, none of the exceptions."""
        norm = normalised(text)
        return any(w in norm for w in self.words) and not any(u in norm for u in self.unless)

    def first_naming(self, texts: Iterable[str]) -> str | None:
        """The first of a record's texts (code.text, each coding's display) that names the condition. Each is read
        on its own: 'Hypertensive heart disease without heart failure' does not name heart failure, whatever the
        other texts say."""
        for text in texts:
            if self.names(text):
                return text
        return None


def concept_texts(concept: Any) -> list[str]:
    """What a CodeableConcept says in words: its text, then each coding's display."""
    if not isinstance(concept, dict):
        return []
    texts = [concept["text"]] if isinstance(concept.get("text"), str) else []
    return texts + [display for _, _, display in codings(concept) if display]
