"""A trained model scored on held-out data: the library half of `seqlab eval`.

    examples = examples_from_split(data.task, data.splits["test"], tokenizer, model.max_length)
    metrics, hyps = evaluate_model(model, tokenizer, examples, {"max_new_tokens": 40}, lang="en")

1. perplexity = exp(NLL) of the references, teacher-forced: the targets given their sources
   (`pairs_nll`), or the split's token stream for a language model (`lm_nll`);
2. generation: the model continues each prompt with `seqlab.decode.generate` (greedy unless the
   options say otherwise), each output cut at its first <eos>;
3. scores: `evaluate_generations(hyps, references)`: BLEU, ROUGE, distinct-n, self-BLEU, length.

What the prompts and references are, per task:
  pairs     the source -> the reference reply
  lm        `PROMPT_TOKENS` tokens at evenly spaced places of the stream -> the true next tokens
  labelled  the label token `<label:L>` -> a text with that label
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from seqlab.data.prepare import SplitData, label_token
from seqlab.decode import generate, left_pad
from seqlab.errors import SeqlabError
from seqlab.eval.generation import evaluate_generations
from seqlab.eval.perplexity import lm_nll, pairs_nll

PROMPT_TOKENS = 64
CONTINUATION_TOKENS = 64
LM_PROMPTS = 200


@dataclass
class EvalExamples:
    """Prompts (token ids) with their reference texts, and what perplexity is measured on."""

    prompts: list[list[int]]
    references: list[str]
    prompt_texts: list[str]
    pairs: list[tuple[list[int], list[int]]] | None = None  # encoder-decoders: (source, target) ids
    stream: torch.Tensor | None = None  # language models: (N,) token ids


def examples_from_split(task: str, split: SplitData, tokenizer: Any, max_length: int | None = None,
                        limit: int | None = None, continuation_tokens: int = CONTINUATION_TOKENS) -> EvalExamples:
    """The examples of one prepared split; `limit` keeps the first N (lm: N prompts, N context windows)."""
    if task == "pairs":
        return _pair_examples(split, tokenizer, max_length, limit)
    if task == "labelled":
        return _labelled_examples(split, tokenizer, limit)
    return _stream_examples(split.ids, tokenizer, max_length, limit, continuation_tokens)


def _pair_examples(split: SplitData, tokenizer: Any, max_length: int | None, limit: int | None) -> EvalExamples:
    pairs, texts = split.pairs[:limit], split.texts[:limit]
    if max_length is not None:  # a Transformer: sources and <bos> + target within its positions
        pairs = [(s[-max_length:], t[:max_length - 1]) for s, t in pairs]
    return EvalExamples([s or [tokenizer.pad_id] for s, _ in pairs], [t for _, t in texts], [s for s, _ in texts],
                        pairs=pairs)


def _labelled_examples(split: SplitData, tokenizer: Any, limit: int | None) -> EvalExamples:
    rows = split.labelled[:limit]
    prompts = [[tokenizer.token_to_id(label_token(label))] for label, _ in rows]
    stream = split.ids if limit is None else torch.cat([torch.tensor([p[0], *ids, tokenizer.eos_id])
                                                        for p, (_, ids) in zip(prompts, rows, strict=True)])
    return EvalExamples(prompts, [tokenizer.decode(ids) for _, ids in rows], [label_token(lb) for lb, _ in rows],
                        stream=stream)


def _stream_examples(stream: torch.Tensor, tokenizer: Any, max_length: int | None, limit: int | None,
                     continuation_tokens: int) -> EvalExamples:
    """Evenly spaced windows of the stream: a prompt of P tokens, then the reference's C true next tokens."""
    P = PROMPT_TOKENS if max_length is None else max(1, min(PROMPT_TOKENS, max_length // 2))
    C = continuation_tokens if max_length is None else max(1, min(continuation_tokens, max_length - P))
    room = stream.numel() - (P + C)
    if room < 0:
        raise SeqlabError(f"the split has {stream.numel()} tokens, fewer than one prompt + continuation ({P + C})")
    count = min(limit or LM_PROMPTS, room + 1)
    starts = [round(i * room / max(1, count - 1)) for i in range(count)] if count > 1 else [0]
    ids = stream.tolist()
    prompts, references = [], []
    for s in starts:
        prompts.append(ids[s:s + P])
        references.append(tokenizer.decode(_cut_at_eos(ids[s + P:s + P + C], [tokenizer.eos_id])))
    if limit is not None and max_length is not None:
        stream = stream[:limit * max_length + 1]
    return EvalExamples(prompts, references, [tokenizer.decode(p) for p in prompts], stream=stream)


def _cut_at_eos(ids: list[int], eos_ids: list[int]) -> list[int]:
    for i, t in enumerate(ids):
        if t in eos_ids:
            return ids[:i]
    return ids


def perplexity(model: Any, tokenizer: Any, examples: EvalExamples, context_length: int, batch_size: int = 32,
               device: str | torch.device = "cpu") -> float:
    """exp of the teacher-forced NLL per token of the references."""
    if examples.pairs is not None:
        nll = pairs_nll(model, examples.pairs, tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id, batch_size,
                        device)
    else:
        nll = lm_nll(model, examples.stream, context_length, batch_size, device)
    return math.exp(min(nll, 700.0))


def generate_texts(model: Any, tokenizer: Any, prompts: list[list[int]], options: dict[str, Any],
                   batch_size: int = 32) -> list[str]:
    """One generated text per prompt (left-padded batches), cut at the first <eos>, special tokens dropped."""
    if options.get("num_return_sequences", 1) != 1:
        raise SeqlabError("evaluation scores one generation per example: num_return_sequences must be 1")
    options = {"eos_token_id": tokenizer.eos_id, "pad_token_id": tokenizer.pad_id, **options}
    eos = [options["eos_token_id"]] if isinstance(options["eos_token_id"], int) else list(options["eos_token_id"])
    texts = []
    for start in range(0, len(prompts), batch_size):
        input_ids, attention_mask = left_pad(prompts[start:start + batch_size], tokenizer.pad_id)
        out = generate(model, input_ids, attention_mask, tokenizer=tokenizer, **options)
        first = 1 if model.is_encoder_decoder else input_ids.shape[1]  # the decoder start token / the prompt
        texts += [tokenizer.decode(_cut_at_eos(row[first:], eos)).strip() for row in out.sequences.tolist()]
    return texts


def evaluate_model(model: Any, tokenizer: Any, examples: EvalExamples, options: dict[str, Any], *,
                   lang: str = "en", context_length: int = 256, batch_size: int = 32,
                   device: str | torch.device = "cpu") -> tuple[dict[str, Any], list[str]]:
    """({perplexity, bleu, rouge1, rouge2, rougeL, distinct1, distinct2, self_bleu, avg_len, examples}, hyps)."""
    if not examples.prompts:
        raise SeqlabError("nothing to evaluate: the split has no examples")
    ppl = perplexity(model, tokenizer, examples, context_length, batch_size, device)
    hyps = generate_texts(model, tokenizer, examples.prompts, options, batch_size)
    return {"perplexity": ppl, **evaluate_generations(hyps, examples.references, lang)}, hyps
