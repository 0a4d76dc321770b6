"""From an OpenAI request to what the worker decodes: the prompt, one `GenerationOptions` per choice, checks.

Every check that can fail is made here, before the request is queued: a model that does not answer
the route, a prompt that does not fit the model's context, an option `GenerationOptions` rejects, a
feature that is not supported yet. Each is a 400 naming the field (seqlab.serve.errors).

    temperature 0       -> greedy (do_sample false); any other -> sampling at that temperature
    max_tokens          -> max_new_tokens (default: the run's reply cap)
    stop                -> stop_strings (the text is cut before them: seqlab.serve.stops)
    seed, n             -> choice i gets seed + i (no seed: a random one per choice, drawn here)
    logprobs (completions: k), logprobs + top_logprobs k (chat) -> token ids and log-probs, k alternatives
    top_p, top_k, min_p, repetition_penalty, num_beams -> the options of the same names
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

from seqlab.errors import SeqlabError
from seqlab.serve.errors import APIError, option_error
from seqlab.serve.generation import GenerationRequest
from seqlab.serve.protocol import ChatCompletionRequest, CompletionRequest, SamplingFields
from seqlab.serve.registry import ServedModel

SEEDS = 2**63  # a seed is in [0, 2^63), as everywhere in seqlab
LINE_END = "\n"  # an LM's chat reply is one line (as in `seqlab chat`)


@dataclass
class Plan:
    request: GenerationRequest
    prompt_tokens: int
    chat: bool


def completion_plan(served: ServedModel, body: CompletionRequest) -> Plan:
    if served.kind == "chatbot":
        raise APIError(400, f"model {served.id!r} is a seq2seq chatbot: it answers /v1/chat/completions only",
                       param="model", code="model_not_supported")
    return _plan(served, body, body.prompt, "prompt", body.max_tokens, token_ids=body.logprobs is not None,
                 top_logprobs=(body.logprobs or 0, "logprobs"), chat=False)


def chat_plan(served: ServedModel, body: ChatCompletionRequest) -> Plan:
    if body.messages[-1].role != "user":
        raise APIError(400, f"the last message must be the user's, got role {body.messages[-1].role!r}",
                       param="messages", code="invalid_value")
    if body.top_logprobs is not None and not body.logprobs:
        raise APIError(400, "top_logprobs needs logprobs: true", param="top_logprobs", code="invalid_value")
    if body.max_tokens is not None and body.max_completion_tokens is not None:
        raise APIError(400, "give max_tokens or max_completion_tokens, not both", param="max_completion_tokens",
                       code="invalid_value")
    # turns as `seqlab chat` keeps them: whitespace runs made one space; instructions are not part of the format
    turns = [" ".join(m.content.split()) for m in body.messages if m.role in ("user", "assistant")]
    return _plan(served, body, served.chat_prompt(turns), "messages", body.max_completion_tokens or body.max_tokens,
                 token_ids=body.logprobs, top_logprobs=(body.top_logprobs or 0, "top_logprobs"), chat=True)


def _plan(served: ServedModel, body: SamplingFields, prompt: str, prompt_param: str, max_tokens: int | None,
          token_ids: bool, top_logprobs: tuple[int, str], chat: bool) -> Plan:
    """The plan; `top_logprobs`: (alternatives per token, the field that asked for them)."""
    if body.stream_options is not None and not body.stream:
        raise APIError(400, "stream_options is only allowed with stream: true", param="stream_options",
                       code="invalid_value")
    if body.stream and (body.num_beams or 1) > 1:
        raise APIError(400, "num_beams > 1 needs stream: false (beam search knows its best reply only at the end)",
                       param="num_beams", code="invalid_value")
    ids = served.prompt_ids(prompt)
    if not served.fits(ids):
        room = served.context if served.kind == "chatbot" else served.context - 1
        raise APIError(400, f"the {prompt_param} is {len(ids)} tokens; model {served.id!r} takes at most {room} "
                       f"(its context is {served.context} tokens)", param=prompt_param,
                       code="context_length_exceeded")
    stops = body.stop_list() + ([LINE_END] if chat and served.kind == "lm" else [])
    try:
        options = served.options(max_new_tokens=max_tokens, stop_strings=stops or None, top_p=body.top_p,
                                 top_k=body.top_k, min_p=body.min_p, repetition_penalty=body.repetition_penalty,
                                 num_beams=body.num_beams, **_temperature(body.temperature))
    except SeqlabError as e:
        raise option_error(e) from None
    alternatives, alternatives_param = top_logprobs
    if alternatives and options.num_beams > 1:
        raise APIError(400, f"{alternatives_param} > 0 (the likeliest tokens of each step) is not given with beam "
                       "search: ask for num_beams 1, or for each token's own log-prob only", param=alternatives_param,
                       code="not_supported")
    seeds = [(body.seed + i) % SEEDS if body.seed is not None else random.randrange(SEEDS) for i in range(body.n)]
    choices = [dataclasses.replace(options, seed=seed) for seed in seeds]
    return Plan(GenerationRequest(prompt, choices, token_ids, alternatives), len(ids), chat)


def _temperature(temperature: float | None) -> dict[str, object]:
    if temperature is None:
        return {}
    return {"do_sample": False} if temperature == 0 else {"do_sample": True, "temperature": temperature}
