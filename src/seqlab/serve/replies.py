"""From a request's events to OpenAI's objects: the whole completion, or the chunks of its stream.

    replies = ChatReplies(served, plan)
    for event in events: chunks = replies.add(event)      # stream: the chunks to send now
    replies.response()                                    # not streamed: the whole object, with usage

`usage` is exact: `prompt_tokens` is the prompt's length as the engine took it (chat: the rendered
conversation, cut to the last k turns), `completion_tokens` the tokens generated over all choices,
EOS included. A chat reply loses its leading whitespace (a word tokenizer's joining space), as in
`seqlab chat`. Log-probs: a chunk carries those of the tokens its event brought
(seqlab.serve.generation), the whole response those of every event, so a stream's tokens, joined, are the
response's.
"""

from __future__ import annotations

import itertools
import time
import uuid
from abc import ABC, abstractmethod
from typing import Any

from seqlab.serve.generation import Event
from seqlab.serve.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChoiceLogprobs,
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    TokenLogprob,
    TopLogprob,
    Usage,
)
from seqlab.serve.registry import ServedModel
from seqlab.serve.requests import Plan


class Replies(ABC):
    """The choices of one request as their events arrive (subclasses give the objects' shapes)."""

    prefix = "cmpl"

    def __init__(self, served: ServedModel, plan: Plan):
        self.served, self.plan = served, plan
        self.id = f"{self.prefix}-{uuid.uuid4().hex}"
        self.created = int(time.time())
        n = len(plan.request.choices)
        self.texts: list[list[str]] = [[] for _ in range(n)]
        self.token_ids: list[list[int]] = [[] for _ in range(n)]  # with log-probs: every token sent so far
        self.token_logprobs: list[list[float]] = [[] for _ in range(n)]
        self.top_logprobs: list[list[list[tuple[int, float]]]] = [[] for _ in range(n)]  # with alternatives
        self.ends: dict[int, Event] = {}

    def add(self, event: Event) -> list[dict[str, Any]]:
        """Take one (non-error) event; the stream chunks it makes."""
        text = self._text(event)
        if text:
            self.texts[event.index].append(text)
        if event.final:
            self.ends[event.index] = event
        if not text and not event.final and not event.token_ids:
            return []
        chunk = self.chunk(event.index, text, event)
        self.token_ids[event.index] += event.token_ids or []
        self.token_logprobs[event.index] += event.token_logprobs or []
        self.top_logprobs[event.index] += event.top_logprobs or []
        return [chunk]

    def opening(self) -> list[dict[str, Any]]:
        """The chunks a stream starts with."""
        return []

    def usage(self) -> Usage:
        completion = sum(e.completion_tokens for e in self.ends.values())
        return Usage(prompt_tokens=self.plan.prompt_tokens, completion_tokens=completion,
                     total_tokens=self.plan.prompt_tokens + completion)

    def text(self, index: int) -> str:
        return "".join(self.texts[index])

    def _text(self, event: Event) -> str:
        return event.text

    def token_strings(self, token_ids: list[int]) -> list[str]:
        return [self.served.tokenizer.decode([i], skip_special=False) for i in token_ids]

    def whole(self, index: int) -> Event:
        """Choice `index`'s end, with every token the choice sent (for the whole response)."""
        end = self.ends[index]
        if end.token_ids is None:
            return end
        top = self.top_logprobs[index] if end.top_logprobs is not None else None
        return Event(index, token_ids=self.token_ids[index], token_logprobs=self.token_logprobs[index],
                     top_logprobs=top)

    @abstractmethod
    def chunk(self, index: int, text: str, event: Event) -> dict[str, Any]:
        """One streamed chunk of choice `index`: `text` and the tokens of `event`."""

    @abstractmethod
    def usage_chunk(self) -> dict[str, Any]:
        """The usage chunk (`choices: []`) sent when stream_options.include_usage asks for it."""

    @abstractmethod
    def response(self) -> dict[str, Any]:
        """The whole (non-streamed) response."""


class CompletionReplies(Replies):
    prefix = "cmpl"

    def __init__(self, served: ServedModel, plan: Plan):
        super().__init__(served, plan)
        self.token_text = [0] * len(self.texts)  # per choice: the length of its streamed tokens' text

    def chunk(self, index: int, text: str, event: Event) -> dict[str, Any]:
        logprobs = self._logprobs(event, self.token_text[index])
        if logprobs is not None and logprobs.tokens:  # the next chunk's tokens start after these
            self.token_text[index] = logprobs.text_offset[-1] + len(logprobs.tokens[-1])
        choice = CompletionChoice(index=index, text=text, finish_reason=event.finish_reason, logprobs=logprobs)
        return self._object([choice]).model_dump()

    def usage_chunk(self) -> dict[str, Any]:
        return self._object([], usage=self.usage()).model_dump()

    def response(self) -> dict[str, Any]:
        choices = [CompletionChoice(index=i, text=self.text(i), finish_reason=end.finish_reason,
                                    logprobs=self._logprobs(self.whole(i))) for i, end in sorted(self.ends.items())]
        return self._object(choices, usage=self.usage()).model_dump()

    def _object(self, choices: list[CompletionChoice], usage: Usage | None = None) -> Completion:
        return Completion(id=self.id, created=self.created, model=self.served.id, choices=choices, usage=usage)

    def _logprobs(self, event: Event, start: int = 0) -> CompletionLogprobs | None:
        """The event's tokens; their text offsets count from `start` (the text of the tokens sent before)."""
        if event.token_ids is None:
            return None
        tokens = self.token_strings(event.token_ids)
        offsets = list(itertools.accumulate((len(t) for t in tokens), initial=start))[:len(tokens)]
        top = None if event.top_logprobs is None else [
            dict(zip(self.token_strings([i for i, _ in step]), [lp for _, lp in step], strict=True))
            for step in event.top_logprobs]
        return CompletionLogprobs(tokens=tokens, token_logprobs=event.token_logprobs or [], top_logprobs=top,
                                  text_offset=offsets)


class ChatReplies(Replies):
    prefix = "chatcmpl"

    def opening(self) -> list[dict[str, Any]]:
        choices = [ChatChunkChoice(index=i, delta={"role": "assistant", "content": ""}) for i in range(len(self.texts))]
        return [self._chunk(choices).model_dump()]

    def chunk(self, index: int, text: str, event: Event) -> dict[str, Any]:
        choice = ChatChunkChoice(index=index, delta={"content": text} if text else {},
                                 finish_reason=event.finish_reason, logprobs=self._logprobs(event))
        return self._chunk([choice]).model_dump()

    def usage_chunk(self) -> dict[str, Any]:
        return self._chunk([], usage=self.usage()).model_dump()

    def response(self) -> dict[str, Any]:
        choices = [ChatChoice(index=i, message=AssistantMessage(content=self.text(i)), finish_reason=end.finish_reason,
                              logprobs=self._logprobs(self.whole(i))) for i, end in sorted(self.ends.items())]
        return ChatCompletion(id=self.id, created=self.created, model=self.served.id, choices=choices,
                              usage=self.usage()).model_dump()

    def _chunk(self, choices: list[ChatChunkChoice], usage: Usage | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(id=self.id, created=self.created, model=self.served.id, choices=choices, usage=usage)

    def _text(self, event: Event) -> str:
        return event.text if self.texts[event.index] else event.text.lstrip()

    def _logprobs(self, event: Event) -> ChoiceLogprobs | None:
        if event.token_ids is None:
            return None
        tokens = self.token_strings(event.token_ids)
        tops = event.top_logprobs or [[] for _ in tokens]
        return ChoiceLogprobs(content=[TokenLogprob(token=t, logprob=p, bytes=list(t.encode("utf-8")),
                                                    top_logprobs=self._alternatives(top))
                                       for t, p, top in zip(tokens, event.token_logprobs or [], tops, strict=True)])

    def _alternatives(self, top: list[tuple[int, float]]) -> list[TopLogprob]:
        tokens = self.token_strings([i for i, _ in top])
        return [TopLogprob(token=t, logprob=lp, bytes=list(t.encode("utf-8")))
                for t, (_, lp) in zip(tokens, top, strict=True)]
