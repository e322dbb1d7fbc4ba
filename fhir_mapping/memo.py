"""A bounded memory of a pure function's answers, for the mapper's caches that live across requests.

Drug-class recognition and strict R4 validation are both pure functions of what a record holds, and EHRs send the
same products and resources again and again (`json_key` keys content by what it says). Each keeps its answers in a
plain dict that starts afresh when full (a new generation), which bounds its memory without the bookkeeping of an
LRU.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import orjson

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
_UNSEEN = object()


def remembered(answers: dict[K, V], key: K, compute: Callable[[], V], limit: int) -> V:
    """The answer kept in `answers` under `key`, or `compute()` kept there (emptying `answers` first once it holds
    `limit` entries)."""
    known = answers.get(key, _UNSEEN)  # one lookup: another thread may start a new generation meanwhile
    if known is not _UNSEEN:
        return known  # type: ignore[return-value]
    answer = compute()
    if len(answers) >= limit:
        answers.clear()  # bounded: a new generation of answers
    answers[key] = answer
    return answer


def json_key(value: Any) -> bytes | None:
    """A key for JSON content: a BLAKE2b digest of it serialised with sorted keys (so key order does not matter).
    None for content the serialisation could blur, which must be answered afresh every time: what orjson cannot write
    (integers past 64 bits, keys that are not strings), and anything written as `null` — orjson writes NaN and
    infinities as null, so a NaN and a null would share a key."""
    try:
        text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return None
    if b"null" in text:
        return None
    return hashlib.blake2b(text, digest_size=16).digest()
