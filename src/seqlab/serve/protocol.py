"""The OpenAI wire format: one pydantic model per request type, and the response objects.

Requests are strict: an unknown field, a string where a number belongs, or a value out of range is a
400 naming the field (seqlab.serve.errors). Fields keep OpenAI's names and ranges; seqlab's extra
decoding options keep Hugging Face's (`top_k`, `min_p`, `repetition_penalty`, `num_beams`). A field left
out takes the run's `decode` config value, as `seqlab generate` and `seqlab chat` do; `temperature` 0
is greedy decoding, any other value samples.

What differs from OpenAI, on purpose:
- `n` is at most 8, `stop` at most 4 strings; `seed` is in [0, 2^63) and choice i samples with seed
  `seed + i`. `finish_reason` "content_filter" means the model's safety policy refused the reply.
- `logprobs` (completions: 0 to 5; chat: true) gives each generated token's log-probability, EOS
  included, and completions' `logprobs` k > 0 or chat's `top_logprobs` k > 0 the k likeliest tokens of
  each step (log softmax of the model's raw logits, before temperature and the other processors); a
  streamed chunk carries those of the tokens whose text it completes (the last chunk the rest).
  Alternatives are not given with beam search (`num_beams` > 1).
- `num_beams` > 1 needs `stream: false`.
- chat messages with role system or developer are accepted and not shown to the model (a seqlab run
  has no instruction format); the others form the conversation, the last one the user's turn.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_CHOICES = 8
MAX_STOPS = 4


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class StreamOptions(Strict):
    include_usage: bool = False


class SamplingFields(Strict):
    """The fields completions and chat share."""

    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    n: int = Field(1, ge=1, le=MAX_CHOICES)
    stop: str | Annotated[list[str], Field(max_length=MAX_STOPS)] | None = None
    seed: int | None = Field(None, ge=0, lt=2**63)  # as everywhere in seqlab
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None  # accepted, as OpenAI's clients may send it; not used
    # seqlab's extras, with Hugging Face's names
    top_k: int | None = Field(None, ge=0)
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    repetition_penalty: float | None = Field(None, gt=0.0)
    num_beams: int | None = Field(None, ge=1, le=16)

    def stop_list(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class CompletionRequest(SamplingFields):
    prompt: str
    logprobs: int | None = Field(None, ge=0, le=5)


class ChatMessage(Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str
    name: str | None = None


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)  # OpenAI's newer name for max_tokens
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)


# ----------------------------------------------------------------------------- responses


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]] | None = None
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: Literal["stop", "length", "content_filter"] | None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob]


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: Literal["stop", "length", "content_filter"]


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ChatChunkChoice(BaseModel):
    index: int
    delta: dict[str, str]  # {"role": "assistant", "content": ""} first, then {"content": piece}; {} at the end
    logprobs: ChoiceLogprobs | None = None
    finish_reason: Literal["stop", "length", "content_filter"] | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "seqlab"
    kind: Literal["lm", "chatbot"]  # seqlab's: an LM serves completions and chat, a seq2seq chatbot chat only


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
