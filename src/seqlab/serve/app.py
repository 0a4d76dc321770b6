"""The FastAPI app: OpenAI's routes over the loaded models, /health, and the chat page at `/`.

    app = create_app(load_models(["runs/chatbot"]), api_key="secret")
    uvicorn.run(app, host="127.0.0.1", port=8000)      # what `seqlab serve` does

    GET  /v1/models              the models (id = run directory name)
    POST /v1/completions         language models
    POST /v1/chat/completions    language models and seq2seq chatbots
    GET  /health                 {"status": "ok", "models": {id: {"active_slots", "queue_depth", "max_step_rows"}}};
                                 never needs a key (max_step_rows: the most rows one decode step has run)
    GET  /                       the web chat page (static files under /static/)

A request is checked (seqlab.serve.requests), queued on its model's worker (429 when the queue is
full), and answered once its first event is there: an error the engine finds at the start (e.g. a
prompt too long for the context) is still a 400, never the start of a stream. While a request waits
or decodes, a client that disconnects cancels it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError

import seqlab
from seqlab.errors import SeqlabError
from seqlab.serve.auth import BearerAuth
from seqlab.serve.errors import APIError, install_handlers, option_error, server_error, validation_error
from seqlab.serve.generation import Event
from seqlab.serve.limits import MAX_BODY_BYTES, BodyLimit
from seqlab.serve.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    ModelCard,
    ModelList,
    SamplingFields,
)
from seqlab.serve.registry import ServedModel
from seqlab.serve.replies import ChatReplies, CompletionReplies, Replies
from seqlab.serve.requests import chat_plan, completion_plan
from seqlab.serve.sse import DONE, EventStreamResponse, sse_event
from seqlab.serve.worker import QueueFull, Submission

Body = TypeVar("Body", bound=SamplingFields)
STATIC = Path(__file__).parent / "static"
DISCONNECT_POLL_SECONDS = 0.2  # how often a waiting request checks that its client is still there


class ClientGone(Exception):
    """The client disconnected while its request waited or decoded."""


def create_app(models: dict[str, ServedModel], api_key: str | None = None,
               max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        for served in models.values():
            served.worker.close()

    # no /docs: FastAPI's pages load their scripts from a CDN, and the bodies are parsed by hand (`parse`)
    app = FastAPI(title="seqlab", version=seqlab.__version__, docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    install_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    if api_key:
        app.add_middleware(BearerAuth, api_key=api_key)  # added last: runs first, before the body is read
    app.include_router(routes(models))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def routes(models: dict[str, ServedModel]) -> APIRouter:
    router = APIRouter()

    @router.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "models": {name: {"active_slots": m.worker.active_slots,
                                                  "queue_depth": m.worker.queue_depth,
                                                  "max_step_rows": m.worker.max_step_rows}
                                           for name, m in models.items()}}

    @router.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return ModelList(data=[_card(m) for m in models.values()]).model_dump()

    @router.get("/v1/models/{model_id}")
    async def one_model(model_id: str) -> dict[str, Any]:
        return _card(_served(models, model_id, param=None)).model_dump()

    @router.post("/v1/completions")
    async def completions(request: Request) -> Response:
        body = await parse(request, CompletionRequest)
        served = _served(models, body.model)
        plan = completion_plan(served, body)
        return await answer(request, served, CompletionReplies(served, plan), body)

    @router.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        body = await parse(request, ChatCompletionRequest)
        served = _served(models, body.model)
        plan = chat_plan(served, body)
        return await answer(request, served, ChatReplies(served, plan), body)

    @router.get("/")
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    return router


async def parse(request: Request, kind: type[Body]) -> Body:
    """The body as a `kind` request; JSON whatever the Content-Type says (`curl -d` sends form's)."""
    try:
        return kind.model_validate_json(await request.body())
    except ValidationError as e:
        raise validation_error(e.errors(include_url=False)) from None


async def answer(request: Request, served: ServedModel, replies: Replies, body: SamplingFields) -> Response:
    """Queue the request, wait for its first event, then stream it or collect it whole."""
    try:
        submission = served.worker.submit(replies.plan.request)
    except QueueFull:
        raise APIError(429, f"model {served.id!r} is busy: its queue is full; try again shortly", code="queue_full",
                       headers={"Retry-After": "1"}) from None
    streaming = False
    try:
        first = await next_event(submission, request)
        if first.error is not None:
            raise event_error(first.error)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            streaming = True  # from here the response cancels the submission when it ends
            return EventStreamResponse(stream_body(first, submission, replies, include_usage), submission.cancel)
        event: Event | None = first
        while event is not None:
            if event.error is not None:
                raise event_error(event.error)
            replies.add(event)
            event = await next_event(submission, request)
        return JSONResponse(replies.response())
    except ClientGone:
        return Response(status_code=499)  # nobody reads it
    finally:
        if not streaming:
            submission.cancel()


async def next_event(submission: Submission, request: Request) -> Event | None:
    """The submission's next event (None after the last), checking meanwhile that the client is still there."""
    while True:
        try:
            return await asyncio.wait_for(anext(submission, None), DISCONNECT_POLL_SECONDS)
        except TimeoutError:
            if await request.is_disconnected():
                raise ClientGone from None


async def stream_body(first: Event, submission: Submission, replies: Replies, include_usage: bool
                      ) -> AsyncIterator[bytes]:
    """The SSE events of a streamed reply: its chunks, the usage chunk when asked for, then [DONE] in any case."""
    for chunk in replies.opening():
        yield sse_event(chunk)
    try:
        event: Event | None = first
        while event is not None:
            if event.error is not None:
                yield sse_event(event_error(event.error).body())
                break
            for chunk in replies.add(event):
                yield sse_event(chunk)
            event = await anext(submission, None)
        else:
            if include_usage:
                yield sse_event(replies.usage_chunk())
    except Exception as error:  # a bug in seqlab: the client still gets an error event and [DONE]
        yield sse_event(server_error(error).body())
    yield DONE


def event_error(error: BaseException) -> APIError:
    return option_error(error) if isinstance(error, SeqlabError) else server_error(error)


def _served(models: dict[str, ServedModel], name: str, param: str | None = "model") -> ServedModel:
    if name not in models:
        known = ", ".join(sorted(models))
        raise APIError(404, f"the model {name!r} does not exist; this server has {known}", param=param,
                       code="model_not_found")
    return models[name]


def _card(served: ServedModel) -> ModelCard:
    return ModelCard(id=served.id, created=served.created, kind=served.kind)
