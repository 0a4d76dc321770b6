"""API keys: with a key, every request but `/health` and the page's files needs `Authorization: Bearer KEY`.

The key is compared in constant time (`hmac.compare_digest`). The check is ASGI middleware, so it runs
before the body is read: a client without the key learns nothing about its request but 401. The page
(`/`, `/static/...`) holds no data and stays open; it asks for the key and sends it with each call.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from seqlab.serve.errors import APIError

OPEN_PATHS = ("/health", "/", "/favicon.ico")
OPEN_PREFIXES = ("/static/",)


class BearerAuth:
    def __init__(self, app: ASGIApp, api_key: str):
        self.app = app
        self.key = api_key.encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._open(scope["path"]) or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        error = APIError(401, "a valid API key is needed: send the header 'Authorization: Bearer KEY'",
                         code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
        await error.response()(scope, receive, send)

    def _open(self, path: str) -> bool:
        return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)

    def _authorized(self, scope: Scope) -> bool:
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key)
