"""A FHIR server's or JWKS answer is capped on what it decodes to (cds_hooks/capped_read.py): a crafted gzip answer
of a few kilobytes that decodes to megabytes is refused without ever decoding past the cap, and gzip, zlib and raw
deflate answers within the cap are read as JSON."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from cds_hooks.capped_read import BodyTooLarge, _Decoder
from cds_hooks.prefetch import resolve_prefetch

PATIENT = json.dumps({"resourceType": "Patient", "id": "p1", "gender": "female"}).encode()


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


def _answer(body: bytes, coding: str) -> httpx.Response:
    async def stream() -> AsyncIterator[bytes]:  # streamed, as off the network: httpx leaves the decoding to us
        for i in range(0, len(body), 4096):
            yield body[i:i + 4096]
    return httpx.Response(200, content=stream(), headers={"Content-Type": "application/fhir+json",
                                                          "Content-Encoding": coding})


async def _fetch(body: bytes, coding: str, cap: int = 10_000) -> Any:
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda request: _answer(body, coding))) as client:
        return await resolve_prefetch({"patient": "Patient/{{context.patientId}}"}, None, context={"patientId": "p1"},
                                      fhir_server="http://fhir.test/r4", access_token=None, client=client,
                                      max_response_bytes=cap)


@pytest.mark.parametrize(("coding", "encode"), [("gzip", gzip.compress), ("x-gzip", gzip.compress),
                                                ("deflate", zlib.compress), ("deflate", _raw_deflate),
                                                ("identity", lambda b: b)])
async def test_a_compressed_answer_within_the_cap_is_read(coding: str, encode: Any) -> None:
    out = await _fetch(encode(PATIENT), coding)
    assert out.resources["patient"]["id"] == "p1", out.failed


async def test_a_compression_bomb_is_refused_at_the_cap() -> None:
    """Ten megabytes of zeros gzip to about ten kilobytes; with a cap of 10,000 bytes the key fails as too large."""
    bomb = gzip.compress(b"0" * 10_000_000)
    assert len(bomb) < 20_000
    out = await _fetch(bomb, "gzip")
    assert "larger than 10000 bytes" in out.failed["patient"], out.failed


def test_the_decoder_never_holds_more_than_the_cap() -> None:
    """Fed the whole bomb in one piece (httpx would have decoded such a chunk whole before any check), the decoder
    stops at the cap plus one byte."""
    decoder = _Decoder("gzip", 10_000)
    with pytest.raises(BodyTooLarge):
        decoder.feed(gzip.compress(b"0" * 10_000_000))
    assert len(decoder.body) <= 10_001


@pytest.mark.parametrize(("body", "coding", "said"), [
    (PATIENT, "br", "content coding 'br' is not supported"),
    (b"\x1f\x8b\x08\x00garbage-that-is-not-gzip", "gzip", "not valid"),
    (gzip.compress(PATIENT, mtime=0)[:-12], "gzip", "cut short")], ids=["br", "gzip-garbage", "gzip-cut-short"])
async def test_an_answer_that_cannot_be_decoded_fails_its_key_with_the_reason(body: bytes, coding: str,
                                                                               said: str) -> None:
    out = await _fetch(body, coding)
    assert "cannot be read" in out.failed["patient"] and said in out.failed["patient"], out.failed
