"""`seqlab eval RUN`: perplexity on held-out references, then generation scored with BLEU, ROUGE, distinct-n."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import asdict
from typing import Any

import torch
import typer

from seqlab.cli.decode_options import DECODING, decode_options
from seqlab.cli.options import DeviceOpt, JsonOpt, SeedOpt, print_json
from seqlab.errors import SeqlabError

SPLITS = ("test", "val", "all")
SHOWN_EXAMPLES = 3


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)


@decode_options("max_new_tokens", "do_sample", "num_beams", "temperature", "top_k", "top_p", "repetition_penalty",
                "no_repeat_ngram_size", defaults={"do_sample": False, "num_beams": 1},
                notes={"max_new_tokens": "Default here: data.max_target_len for pairs, 64 for language models "
                                         "(eval ignores decode.max_new_tokens)."})
def evaluate(
    run: str = typer.Argument(..., help="A run directory (from `seqlab train`)."),
    data: str = typer.Option(None, "--data", help="Another corpus (built-in name or file) to evaluate on, "
                             "tokenized with the run's tokenizer (default: the run's own corpus)."),
    split: str = typer.Option(None, "--split", help="test | val | all (default: test when the run's data has one, "
                              "else val; all with --data)."),
    limit: int = typer.Option(None, "--limit", help="Evaluate the first N examples (language models: N prompts and "
                              "the first N context windows)."),
    decoding: dict = DECODING,
    lang: str = typer.Option(None, "--lang", help="en | zh for BLEU/ROUGE tokens (default: the run's data.lang, "
                             "or detected from the references)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Examples per forward pass."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="Weights to load: best | last."),
    as_json: bool = JsonOpt,
    device: str = DeviceOpt,
    seed: int = SeedOpt,
) -> None:
    """Evaluate a trained run: perplexity of the references (teacher-forced), then greedy generations (or as
    the decoding flags say) scored against them. JSON keys: perplexity, bleu, rouge1, rouge2, rougeL,
    distinct1, distinct2, self_bleu, avg_len, examples."""
    from seqlab.device import resolve_device, seed_everything
    from seqlab.models.loading import load_model_from_run

    if split is not None and split not in SPLITS:
        raise SeqlabError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if limit is not None and limit < 1:
        raise SeqlabError(f"--limit must be >= 1, got {limit}")
    if batch_size < 1:
        raise SeqlabError(f"--batch-size must be >= 1, got {batch_size}")
    if lang is not None and lang not in ("en", "zh"):
        raise SeqlabError(f"--lang must be en or zh, got {lang!r}")
    seed_everything(seed)
    model, tokenizer, config = load_model_from_run(run, resolve_device(device), which=checkpoint)
    if data is None:
        _check_run_corpus(run, config)
    max_new_tokens = decoding.pop("max_new_tokens")
    flags = decoding | {"seed": seed}
    metrics, examples, hyps = evaluate_run(model, tokenizer, config, data, split, limit, max_new_tokens, flags, lang,
                                           batch_size)
    if as_json:
        print_json(metrics)
        return
    typer.echo(format_metrics(metrics))
    for prompt, hyp, ref in list(zip(examples.prompt_texts, hyps, examples.references, strict=True))[:SHOWN_EXAMPLES]:
        typer.echo(f"\n  prompt:    {_one_line(prompt)}\n  generated: {_one_line(hyp)}\n  reference: {_one_line(ref)}")


def _check_run_corpus(run: str, config: Any) -> None:
    """The run's own corpus file must still be there (older runs stored it relative to where they trained);
    one changed since training gets a note (from the run's fingerprint.json)."""
    from pathlib import Path

    from seqlab.runs import RunDir
    from seqlab.train.fingerprint import changed_since_start, corpus_path

    path = corpus_path(config.data.corpus)
    if path is None:
        return
    where = f"data.corpus in {Path(run) / 'config.yaml'}"
    if not path.is_file():
        how = "is gone" if path.is_absolute() else "is not found from here (a path relative to where the run trained)"
        raise SeqlabError(f"the run's corpus {config.data.corpus!r} ({where}) {how}; evaluate on a copy of it with "
                          "--data PATH (add --split val or --split test to score the split held out in training)")
    if changed_since_start(RunDir(Path(run)), path):
        typer.echo(f"note: {path} changed since the run was trained (its sha256 differs from the run's "
                   "fingerprint.json); its held-out split is not the one held out in training", err=True)


def evaluate_run(model: Any, tokenizer: Any, config: Any, data: str | None, split: str | None, limit: int | None,
                 max_new_tokens: int | None, flags: dict[str, Any], lang: str | None,
                 batch_size: int = 32) -> tuple[dict[str, Any], Any, list[str]]:
    """Prepare the split with the run's tokenizer, then `evaluate_model` (also used by `seqlab demo`)."""
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
    options = {k: v for k, v in asdict(options).items() if v is not None}
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


def format_metrics(metrics: dict[str, Any]) -> str:
    """One line per metric, as `seqlab eval` prints them."""
    rows = []
    for key, value in metrics.items():
        shown = "n/a" if value is None else f"{value:,}" if isinstance(value, int) else f"{value:.4f}"
        rows.append(f"{key:11s} {shown}")
    return "\n".join(rows)


def _one_line(text: str, width: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"
