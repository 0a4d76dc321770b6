"""A trained run scored on a split of its data (or of another corpus): what `seqlab eval`, `seqlab demo`
and the benchmarks call.

    model, tok, cfg = load_model_from_run("runs/chatbot")
    metrics, examples, hyps = evaluate_run(model, tok, cfg, data=None, split="val", limit=20,
                                           max_new_tokens=None, flags={"num_beams": 4}, lang=None)

The split is prepared with (a copy of) the run's tokenizer, then scored by `seqlab.eval.evaluate`.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch

from seqlab.errors import SeqlabError


def evaluate_run(model: Any, tokenizer: Any, config: Any, data: str | None, split: str | None, limit: int | None,
                 max_new_tokens: int | None, flags: dict[str, Any], lang: str | None,
                 batch_size: int = 32) -> tuple[dict[str, Any], Any, list[str]]:
    """Prepare the split with the run's tokenizer, then `evaluate_model`: (metrics, examples, generations).
    `flags` are decoding options over the run's `decode` config (None values are ignored)."""
    from seqlab.data.tokenizers.word import detect_lang
    from seqlab.decode import GenerationOptions
    from seqlab.eval.evaluate import CONTINUATION_TOKENS, evaluate_model, examples_from_split

    task = config.data.task
    if max_new_tokens is None:
        max_new_tokens = config.data.max_target_len if task == "pairs" else CONTINUATION_TOKENS
    options = GenerationOptions.from_config(config.decode, tokenizer, max_new_tokens=max_new_tokens, min_new_tokens=0,
                                            **{k: v for k, v in flags.items() if v is not None})
    chosen = _split_data(tokenizer, config, data, split)
    max_length = getattr(model, "max_length", None)
    examples = examples_from_split(task, chosen, tokenizer, max_length, limit, max_new_tokens)
    if lang is None:
        lang = config.data.lang if config.data.lang != "auto" else detect_lang(examples.references)
    device = next(model.parameters()).device
    options = {k: v for k, v in dataclasses.asdict(options).items() if v is not None}
    with torch.inference_mode():
        metrics, hyps = evaluate_model(model, tokenizer, examples, options, lang=lang,
                                       context_length=config.model.context_length, batch_size=batch_size,
                                       device=device)
    return metrics, examples, hyps


def _split_data(tokenizer: Any, config: Any, data: str | None, split: str | None) -> Any:
    """The chosen split of the run's data, or all of `data`, tokenized with (a copy of) the run's tokenizer."""
    from seqlab.data.prepare import prepare_data

    split = split or ("all" if data is not None else None)
    cfg = config.data if data is None else dataclasses.replace(config.data, corpus=data)
    own = copy.deepcopy(tokenizer)  # preparing adds the corpus's label tokens to the tokenizer it is given
    if data is not None and split == "all":
        chosen = _whole_corpus(cfg, own)
    else:
        prepared = prepare_data(cfg, config.seed, tokenizer=own)
        split = split or ("test" if "test" in prepared.splits else "val")
        if split != "all" and split not in prepared.splits:
            raise SeqlabError(f"the run's data has no {split} split (data.test_fraction is {cfg.test_fraction}); "
                              "use --split val or --split all")
        chosen = _concat(list(prepared.splits.values())) if split == "all" else prepared.splits[split]
    if own.vocab_size != tokenizer.vocab_size:
        raise SeqlabError(f"{cfg.corpus!r} has labels this run was not trained on; it knows "
                          f"{', '.join(t for t in own.specials if t.startswith('<label:')) or 'no labels'}")
    return chosen


def _whole_corpus(cfg: Any, tokenizer: Any) -> Any:
    """Every example of a corpus, encoded as `prepare_data` encodes a split (`--data X --split all`)."""
    from seqlab.data.corpora import load_corpus
    from seqlab.data.prepare import SplitData, label_token

    corpus = load_corpus(cfg.corpus, encoding=cfg.encoding, history_turns=cfg.history_turns)
    wanted = {"lm": "text", "pairs": "pairs", "labelled": "labelled"}[cfg.task]
    if corpus.kind != wanted and not (cfg.task == "lm" and corpus.kind == "labelled"):
        raise SeqlabError(f"this run was trained on {wanted} data (data.task {cfg.task}); {corpus.name!r} is "
                          f"{corpus.kind}")
    if cfg.task == "pairs":
        pairs = [(tokenizer.encode(p.source)[-cfg.max_source_len:], tokenizer.encode(p.target)[:cfg.max_target_len])
                 for p in corpus.examples]
        return SplitData("all", pairs=pairs, texts=[(p.source, p.target) for p in corpus.examples])
    if cfg.task == "labelled":
        tokenizer.add_special_tokens(sorted({label_token(e.label) for e in corpus.examples}))
        labelled = [(e.label, tokenizer.encode(e.text)) for e in corpus.examples]
        stream = [i for label, ids in labelled
                  for i in (tokenizer.token_to_id(label_token(label)), *ids, tokenizer.eos_id)]
        return SplitData("all", ids=torch.tensor(stream), labelled=labelled)
    texts = [d.text for d in corpus.documents] or [e.text for e in corpus.examples]
    ids = tokenizer.encode(texts[0]) if len(texts) == 1 else \
        [i for text in texts for i in tokenizer.encode(text, add_eos=True)]
    return SplitData("all", ids=torch.tensor(ids, dtype=torch.long))


def _concat(splits: list[Any]) -> Any:
    """All splits as one (train, then val, then test)."""
    from seqlab.data.prepare import SplitData

    def joined(name: str) -> Any:
        parts = [getattr(s, name) for s in splits]
        if any(p is None for p in parts):
            return None
        return torch.cat(parts) if name == "ids" else [x for p in parts for x in p]

    return SplitData("all", ids=joined("ids"), pairs=joined("pairs"), texts=joined("texts"),
                     labelled=joined("labelled"))
