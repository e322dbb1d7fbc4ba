"""Words that name a feature's condition in a record whose code the value sets do not hold.

Value sets are exact lists of codes; a problem list also carries local codes, codes newer or more specific than a
set's expansion, and entries with text alone. A "No" read from such a record would be false, so a feature may list
the words that name its condition (`mentions:` in features.yaml): a current record of the feature's resource types
that no set matched, whose text or coding display holds one of the words and none of the words that make it
something else ("family history of", "without", "pulmonary hypertension"), leaves the answer unknown, naming the
record, rather than "No". Matching is on whole words, case- and punctuation-blind: "heart-failure" is "heart
failure", and "hypertension" is not found in "prehypertension". An exception that is a disease term of its own
("intracranial hypertension") is cut out before the rest of the text is read; any other ("family history", "at risk
for stroke") sets the whole text aside.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

_NON_WORD = re.compile(r"[^0-9a-z]+")


def normalised(text: str) -> str:
    """Lower case, every run of other characters one space, padded with a space at each end: whole-word search is
    then a substring search for ' <phrase> '."""
    return f" {_NON_WORD.sub(' ', text.lower()).strip()} "


def _alternation(phrases: tuple[str, ...]) -> str:
    """The phrases as one regular-expression alternation, longest first (each already normalised)."""
    return "|".join(re.escape(p.strip()) for p in sorted(set(phrases), key=len, reverse=True))


def _any_of(phrases: tuple[str, ...]) -> re.Pattern[str] | None:
    """One pattern for whole-word search of every phrase in a normalised text (one scan, not one per phrase)."""
    return re.compile(" (?:" + _alternation(phrases) + ") ") if phrases else None


#: words that make an exception about risk, absence or prevention: it sets the whole text aside, never cut out
_CONTEXT = frozenset({"risk", "without", "no", "not", "non", "excluded", "prevention", "negative", "denies", "free",
                      "ruled", "rule", "fh", "fhx", "family", "screening", "screen", "absence"})


def _whole_words(phrases: tuple[str, ...]) -> re.Pattern[str] | None:
    """Every phrase as whole words of a normalised text, to cut them out (matches may be adjacent)."""
    return re.compile(r"(?<=[ ])(?:" + _alternation(phrases) + r")(?=[ ])") if phrases else None


class MentionRule:
    """Phrases that name a condition, and phrases that make a text about something else."""

    _MEMO_LIMIT = 20_000  # texts remembered per rule (a problem list's texts come back on every call)

    def __init__(self, words: Iterable[str], unless: Iterable[str] = ()) -> None:
        self.words = tuple(normalised(w) for w in words)
        self.unless = tuple(normalised(w) for w in unless)
        if any(w.strip() == "" for w in self.words + self.unless):
            raise ValueError("a mention phrase needs at least one letter or digit")
        self._words = _any_of(self.words)
        # Two kinds of exception. One that holds a naming word is another term ("intracranial hypertension",
        # "gestational diabetes"): it is cut out of the text, and the rest is still read ("Migraine; HTN;
        # idiopathic intracranial hypertension" names hypertension). One that holds none says the whole text is
        # about something else ("family history", "ruled out", "screening"); so does one that holds a word but
        # speaks of risk, absence or prevention ("risk for stroke", "without CAD": cutting only the term would leave
        # the rest of its list behind, "At risk for stroke and TIA").
        terms = tuple(u for u in self.unless if self._words is not None and self._words.search(u)
                      and not _CONTEXT.intersection(u.split()))
        self._terms = _whole_words(terms)
        self._vetoes = _any_of(tuple(u for u in self.unless if u not in terms))
        # the same phrases in the text as written (any case, any punctuation between words): where to quote from
        self._as_written = re.compile(r"(?<![0-9a-z])(?:" + "|".join(
            r"[^0-9a-z]+".join(re.escape(t) for t in w.split()) for w in self.words) + r")(?![0-9a-z])", re.I)
        self._memo: dict[str, bool] = {}

    def names(self, text: str) -> bool:
        """Whether `text` names the condition: one of the words outside the exceptions' terms, and no exception
        that makes the whole text about something else."""
        known = self._memo.get(text)
        if known is not None:
            return known
        norm = normalised(text)
        if self._vetoes is not None and self._vetoes.search(norm):
            found = False
        else:
            if self._terms is not None:
                norm = self._terms.sub(" ", norm)
            found = self._words is not None and self._words.search(norm) is not None
        if len(self._memo) < self._MEMO_LIMIT:
            self._memo[text] = found
        return found

    def excerpt(self, text: str, limit: int = 90) -> str:
        """The text as a card quotes it: whole when short, else the words around the first phrase that names the
        condition (a sidebar line is clipped at its end, where the naming word of a long text would be lost)."""
        if len(text) <= limit:
            return text
        found = self._as_written.search(text)
        if found is None:
            return text[:limit - 1].rstrip() + "…"
        room = max(0, limit - (found.end() - found.start())) // 2
        start, end = max(0, found.start() - room), min(len(text), found.end() + room)
        return ("…" if start else "") + text[start:end].strip() + ("…" if end < len(text) else "")

    def first_naming(self, texts: Iterable[str]) -> str | None:
        """The first of a record's texts (code.text, each coding's display) that names the condition. Each is read
        on its own: 'Hypertensive heart disease without heart failure' does not name heart failure, whatever the
        other texts say."""
        for text in texts:
            if self.names(text):
                return text
        return None


def concept_texts(concept: Any) -> list[str]:
    """What a CodeableConcept says in words: its text, then each coding's display (a coding without a system or
    code still says something)."""
    if not isinstance(concept, dict):
        return []
    text = concept.get("text")
    texts = [text] if isinstance(text, str) and text else []
    coding = concept.get("coding")
    if isinstance(coding, list):
        for item in coding:
            display = item.get("display") if isinstance(item, dict) else None
            if isinstance(display, str) and display:
                texts.append(display)
    return texts
