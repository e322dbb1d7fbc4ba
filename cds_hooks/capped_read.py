"""Read an HTTP answer body (a FHIR server's, a JWK Set's) up to a cap on what it decodes to.

httpx decodes a gzip or deflate answer one network chunk at a time, whole: a 64 KiB chunk of a crafted answer can
decode to some 64 MB before any cap is checked. Here the raw bytes are decoded with zlib's `max_length`, so no more
than the cap (plus one byte) is ever produced, whatever the compression ratio. Codings other than gzip, deflate and
identity are refused: the service asks for none of them.
"""

from __future__ import annotations

import zlib
from typing import Any


class BodyTooLarge(Exception):
    """The body decodes to more than the cap."""


class BodyUnreadable(Exception):
    """The body is in a content coding the service does not read, or is not valid in the one it names."""


async def read_capped(response: Any, max_bytes: int) -> bytes:
    """The decoded body of an httpx streaming response, refused (BodyTooLarge) once it passes `max_bytes`."""
    if response.is_stream_consumed:  # read whole already (a response built in process, never one off the network)
        if len(response.content) > max_bytes:
            raise BodyTooLarge
        return bytes(response.content)
    coding = response.headers.get("content-encoding", "").strip().lower()
    if coding in ("", "identity"):
        body = bytearray()
        async for chunk in response.aiter_raw():
            body.extend(chunk)
            if len(body) > max_bytes:
                raise BodyTooLarge
        return bytes(body)
    if coding not in ("gzip", "x-gzip", "deflate"):
        raise BodyUnreadable(f"content coding '{coding[:40]}' is not supported")
    decoder = _Decoder(coding, max_bytes)
    async for chunk in response.aiter_raw():
        decoder.feed(chunk)
    return decoder.finish()


class _Decoder:
    """zlib decoding with every call bounded by what is left of the cap."""

    def __init__(self, coding: str, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.body = bytearray()
        self.raw_deflate = False
        self.started = False
        self.wbits = 16 + zlib.MAX_WBITS if coding in ("gzip", "x-gzip") else zlib.MAX_WBITS
        self.zlib = zlib.decompressobj(self.wbits)
        self.seen = bytearray()  # a deflate answer's first bytes, kept until its framing is known

    def feed(self, data: bytes) -> None:
        if not data:
            return
        if not self.started and self.wbits == zlib.MAX_WBITS:
            self.seen.extend(data)
            try:
                self._decode(bytes(self.seen))
            except BodyUnreadable:
                # "deflate" sent as a raw deflate stream (without the zlib header), as some servers do
                self.zlib, self.body, self.raw_deflate = zlib.decompressobj(-zlib.MAX_WBITS), bytearray(), True
                self._decode(bytes(self.seen))
            self.started = True
            self.seen = bytearray()
            return
        self.started = True
        self._decode(data)

    def _decode(self, data: bytes) -> None:
        pending = data
        while pending:
            try:
                out = self.zlib.decompress(pending, self.max_bytes - len(self.body) + 1)
            except zlib.error as exc:
                raise BodyUnreadable(f"the body is not valid {'deflate' if self.raw_deflate else 'compressed'} "
                                     f"data ({exc})") from None
            self.body.extend(out)
            if len(self.body) > self.max_bytes:
                raise BodyTooLarge
            pending = self.zlib.unconsumed_tail
            if not out and pending:  # no progress: corrupt input
                raise BodyUnreadable("the compressed body makes no progress")

    def finish(self) -> bytes:
        try:
            self.body.extend(self.zlib.flush(self.max_bytes - len(self.body) + 1))
        except zlib.error as exc:
            raise BodyUnreadable(f"the compressed body is cut short ({exc})") from None
        if len(self.body) > self.max_bytes:
            raise BodyTooLarge
        if not self.zlib.eof:
            raise BodyUnreadable("the compressed body is cut short")
        return bytes(self.body)
