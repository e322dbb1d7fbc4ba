"""HEAD answered as GET without its body (RFC 9110 §9.3.2).

Why: FastAPI routes declared for GET answer HEAD with 405, while every general-purpose server must support HEAD
(RFC 9110 §9.1), and load balancers and uptime monitors probe `/readyz` or `/cds-services` with it. A HEAD request is
run as the GET it mirrors, so its status and header fields (Content-Type, Content-Length, ETag, cache and security
headers) are exactly the GET's, and the body is dropped on the way out. A path with no GET route still gets 405 with
its `Allow` header.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGetMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "HEAD":
            await self.app(scope, receive, send)
            return
        ended = False

        async def without_body(message: Message) -> None:
            nonlocal ended
            if message["type"] != "http.response.body":
                await send(message)
                return
            if ended:
                return
            if not message.get("more_body", False):  # one empty final part, whatever the GET streamed
                ended = True
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        await self.app({**scope, "method": "GET"}, receive, without_body)
