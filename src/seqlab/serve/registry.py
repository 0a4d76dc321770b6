"""The models a server answers for: each RUN loaded once, with its defaults, its policy and its worker.

    models = load_models(["runs/shakespeare", "runs/chatbot"], device="cpu")
    models["chatbot"].chat_prompt(["hello", "hi there", "how are you"])   # as `seqlab chat` renders it

A model's id is its run directory's name. A language model answers /v1/completions and chat (the
conversation rendered as `seqlab chat` renders it for an LM: the last k turns, one a line); a seq2seq
chatbot answers chat only (the last k turns joined by <sep>, as its dialogue pairs were built).
k is the run's `data.history_turns`. Decoding options a request leaves out are the run's `decode`
config; a reply's length cap defaults to the run's (`seqlab.decode.reply_length`).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqlab.chat import ChatSession
from seqlab.decode import GenerationOptions, build_prompt_ids
from seqlab.errors import SeqlabError
from seqlab.serve.worker import BatchWorker, Worker


@dataclass
class ServedModel:
    id: str
    model: Any
    tokenizer: Any
    config: Any
    defaults: GenerationOptions  # the run's decode config, with its tokenizer's ids and reply cap
    worker: Worker
    created: int  # when it was loaded (unix seconds), for /v1/models

    @property
    def kind(self) -> str:
        return "chatbot" if self.model.is_encoder_decoder else "lm"

    @property
    def context(self) -> int | None:
        """The longest input the model takes, in tokens (None: recurrent, unbounded)."""
        return getattr(self.model, "max_length", None)

    def options(self, **overrides: Any) -> GenerationOptions:
        """The run's defaults with a request's `overrides` (None = keep); a bad value is a SeqlabError."""
        return dataclasses.replace(self.defaults, **{k: v for k, v in overrides.items() if v is not None})

    def prompt_ids(self, prompt: str) -> list[int]:
        return build_prompt_ids(self.tokenizer, prompt)

    def fits(self, prompt_ids: Sequence[int]) -> bool:
        """Whether the model can take the prompt and still generate (the engine's own check, made early)."""
        if self.context is None:
            return True
        return len(prompt_ids) <= self.context if self.model.is_encoder_decoder else len(prompt_ids) < self.context

    def chat_prompt(self, turns: list[str]) -> str:
        """The engine's input for a conversation (user, assistant, ..., user), as `seqlab chat` builds it."""
        session = ChatSession(self.model, self.tokenizer, self.defaults, self.config.data.history_turns)
        session.turns = turns[:-1]
        return session.prompt(turns[-1])


def model_ids(runs: Sequence[str | Path]) -> list[str]:
    """The model id of each run (its directory's name), once each run is known to be a run directory."""
    from seqlab.runs import open_run

    for run in runs:
        open_run(run)
    names = [Path(run).resolve().name for run in runs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SeqlabError(f"two runs share the name {duplicates[0]!r}, which is the model id; serve runs whose "
                          "directories have different names")
    return names


def load_models(runs: Sequence[str | Path], device: str = "cpu", checkpoint: str = "best", max_batch: int = 8,
                max_queue: int = 64, compile_step: bool = False) -> dict[str, ServedModel]:
    """{model id: ServedModel} for the run directories `runs`, each with its worker thread started."""
    from seqlab.decode.bucketed import row_counts
    from seqlab.decode.reply_length import run_max_new_tokens
    from seqlab.device import resolve_device
    from seqlab.models.loading import load_model_from_run
    from seqlab.safety.policy import ReplyPolicy

    models = {}
    for name, run in zip(model_ids(runs), runs, strict=True):  # every run is checked before any loads
        model, tokenizer, config = load_model_from_run(run, resolve_device(device), which=checkpoint)
        defaults = GenerationOptions.from_config(config.decode, tokenizer, num_return_sequences=1,
                                                 max_new_tokens=run_max_new_tokens(config, run))
        policy = ReplyPolicy.from_config(config)
        if compile_step:
            sizes = ", ".join(map(str, row_counts(max_batch)))
            print(f"seqlab serve: {name}: compiling the decode step for {sizes} rows (tens of seconds each)...",
                  file=sys.stderr, flush=True)
        worker = BatchWorker(model, tokenizer, policy, max_batch=max_batch, max_queue=max_queue,
                              compile_step=compile_step, name=name)
        worker.ready.wait()
        models[name] = ServedModel(name, model, tokenizer, config, defaults, worker, int(time.time()))
    return models
