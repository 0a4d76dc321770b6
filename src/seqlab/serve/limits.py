"""A request body larger than `max_bytes` is a 413, before anything parses it.

A declared Content-Length over the limit is refused at once; a body sent in chunks is counted as it
arrives. A body within the limit is read whole and handed on (the server's bodies are small JSON).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from seqlab.serve.errors import APIError

MAX_BODY_BYTES = 1_000_000


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # later: the disconnect
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = APIError(413, f"the request body is larger than {self.max_bytes:,} bytes", code="body_too_large",
                         headers={"Connection": "close"})
        await error.response()(scope, receive, send)
