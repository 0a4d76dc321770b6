"""The server's errors, in OpenAI's shape, and the handlers that make every failure one.

    {"error": {"message": "temperature: Input should be less than or equal to 2",
               "type": "invalid_request_error", "param": "temperature", "code": "invalid_value"}}

A client's mistake is a 4xx and never a 500: 400 malformed JSON / unknown or out-of-range field / a
prompt that does not fit the model, 401 missing or wrong key, 404 unknown model or route, 405 wrong
method, 413 body too large, 429 queue full. Only a bug in seqlab answers 500 ("server_error"). During a
stream the same object arrives as an SSE event (seqlab.serve.sse), followed by `data: [DONE]`.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from seqlab.errors import SeqlabError, one_line

log = logging.getLogger("seqlab.serve")

# GenerationOptions' names -> the request field a client set (their messages name the option first)
OPTION_FIELDS = {"max_new_tokens": "max_tokens", "stop_strings": "stop", "stop": "stop", "num_return_sequences": "n",
                 **{name: name for name in ("temperature", "top_p", "top_k", "min_p", "repetition_penalty",
                                            "num_beams", "seed", "prompt")}}
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
               405: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error",
               500: "server_error"}


class APIError(Exception):
    """An error answered as `{"error": {...}}` with `status`."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, one_line(message), param, code
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return error_body(self.message, ERROR_TYPES.get(self.status, "invalid_request_error"), self.param, self.code)

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def option_error(error: SeqlabError, param: str | None = None) -> APIError:
    """A 400 for a `GenerationOptions` (or engine) error, whose one-line message starts with the option's name."""
    message = str(error)
    if param is None:
        param = OPTION_FIELDS.get(message.split(" ", 1)[0])
    return APIError(400, message, param=param, code="invalid_value")


def server_error(error: BaseException) -> APIError:
    """A bug in seqlab: logged with its traceback, answered with its type and first line only."""
    log.error("unexpected error while answering a request", exc_info=error)
    return _internal(error)


def _internal(error: BaseException) -> APIError:
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return APIError(500, f"internal error: {type(error).__name__}: {first}", code="server_error")


def install_handlers(app: FastAPI) -> None:
    """Every failure FastAPI or Starlette would answer in their own shape answers in OpenAI's."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, error: APIError) -> JSONResponse:
        return error.response()

    @app.exception_handler(HTTPException)
    async def _http(request: Request, error: HTTPException) -> JSONResponse:
        if error.status_code == 404:
            return APIError(404, f"no route {request.method} {request.url.path}", code="unknown_url").response()
        if error.status_code == 405:
            return APIError(405, f"{request.method} is not allowed on {request.url.path}",
                            code="method_not_allowed").response()
        return APIError(error.status_code, str(error.detail)).response()

    @app.exception_handler(Exception)
    async def _bug(request: Request, error: Exception) -> JSONResponse:  # Starlette re-raises it: uvicorn logs it
        return _internal(error).response()


def validation_error(errors: list[dict[str, Any]]) -> APIError:
    """pydantic's first error as a 400 naming the field: `messages[0].role`."""
    first = errors[0]
    loc = [p for p in first.get("loc", ()) if p != "body"]
    kind = first.get("type", "")
    if kind == "json_invalid":
        return APIError(400, f"the body is not valid JSON: {first.get('ctx', {}).get('error', first['msg'])}",
                        code="invalid_json")
    param = _param(loc)
    if kind == "extra_forbidden":
        return APIError(400, f"unknown field {param!r}", param=param, code="unknown_field")
    if kind == "missing":
        return APIError(400, f"{param or 'the body'}: a required field is missing", param=param, code="missing_field")
    return APIError(400, f"{param or 'the body'}: {first['msg']}", param=param, code="invalid_value")


def _param(loc: list[Any]) -> str | None:
    """A location as one name (`messages[0].content`); pydantic's union tags (`str`, `list[str]`) are left out."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not any(c in part for c in "[]-") and part not in ("str", "int", "float", "bool", "list", "dict"):
            text += f".{part}" if text else part
    return text or None
