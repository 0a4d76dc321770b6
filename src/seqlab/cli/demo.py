"""`seqlab demo` (what `make demo` runs): corpus statistics, two small models trained, evaluated, sampled, chat.

1. the built-in corpora: examples, characters, distinct characters;
2. trains a chatbot (GRU encoder-decoder + Luong attention, word-level, on chatterbot/english) and a
   character-level Transformer LM on `shakespeare` (the complete works), 1,200 and 800 steps (about
   2.5 and 1 minutes on a 2-core CPU, leaving room under 5 minutes for a busier machine), into OUT/demo-chatbot and
   OUT/demo-shakespeare-char;
3. one evaluation table (perplexity, BLEU, ROUGE-L, distinct-2, self-BLEU on the held-out split, greedy);
4. samples: the chatbot's replies under greedy, beam search and sampling, with what each is for; the
   LM's sampled continuations (temperature 0.8, top-p 0.9), and one line of greedy's loop;
5. where to go next, then `seqlab chat` on the chatbot when stdin and stdout are a terminal.

Re-running retrains and replaces the two runs (each is trained in a temporary sibling, then renamed);
`--reuse` keeps a run whose config is the demo's and that has weights.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from seqlab.cli.options import DeviceOpt, JsonOpt, SeedOpt, print_json
from seqlab.errors import SeqlabError

CORPORA = ["tinyshakespeare", "shakespeare", "shakespeare-dialogue", "chatterbot/english", "chatterbot/chinese",
           "chatterbot-categories/english", "tang300", "song100", "tang-song"]
CHAT_PROMPTS = ["Hello", "How are you?", "Who are you?", "Tell me a joke", "What is your name?"]
UNSEEN = {"What is your name?": "no such question in its 2,306 conversations"}  # checked against the corpus
LM_PROMPTS = ["ROMEO.\n", "To be, or not to be"]
GREEDY = {"do_sample": False, "num_beams": 1}
SAMPLE = {"do_sample": True, "temperature": 0.8, "top_p": 0.9}
STRATEGIES = {"greedy": GREEDY, "beam 5": {"do_sample": False, "num_beams": 5}, "sample": SAMPLE}  # the chatbot's
LM_STRATEGIES = {"sample": SAMPLE, "greedy": GREEDY}  # the char LM: sampling shown, greedy's loop in one line
STRATEGY_NOTES = {
    "greedy": "the likeliest word at each step: deterministic, good for short answers",
    "beam 5": "keeps the 5 likeliest partial replies: the most likely whole reply",
    "sample": "draws each word (temperature 0.8, top-p 0.9): variety, where the model is unsure"}
LM_CHARS = {"full": 300, "quick": 8}  # characters sampled after each LM prompt

# (preset, overrides): full demo, then --quick (seconds, for the test)
CHATBOT = ("chatbot-gru-luong", {
    "full": ["data.min_freq=2", "model.n_layer=1", "model.n_embd=128", "model.hidden_size=256", "model.dropout=0.3",
             "train.batch_size=32", "train.max_steps=1200", "train.eval_interval=300", "train.warmup_steps=30",
             "train.lr=3e-3", "train.log_interval=50", "train.samples=1"],
    "quick": ["model.n_layer=1", "model.n_embd=16", "model.hidden_size=16", "model.dropout=0.0",
              "train.batch_size=16", "train.max_steps=4", "train.eval_interval=4", "train.warmup_steps=1",
              "train.log_interval=2", "train.samples=0", "data.max_source_len=16", "data.max_target_len=16"]})
CHAR_LM = ("shakespeare-char-transformer-cpu", {
    "full": ["data.corpus=shakespeare", "train.max_steps=800", "train.eval_interval=400", "train.eval_batches=20",
             "train.log_interval=50"],
    "quick": ["data.corpus=shakespeare", "model.n_layer=1", "model.n_embd=16", "model.n_head=2",
              "model.context_length=16", "train.batch_size=8", "train.max_steps=4", "train.eval_interval=4",
              "train.eval_batches=2", "train.warmup_steps=1", "train.log_interval=2", "train.samples=0"]})
EVAL_LIMIT = {"full": (None, 100), "quick": (8, 4)}  # (chatbot pairs, LM prompts and windows)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    out_dir: Path = typer.Option(Path("runs"), "--out-dir", help="Where the two runs are written."),
    reuse: bool = typer.Option(False, "--reuse", help="Keep existing demo runs (same config, with weights) "
                               "instead of retraining them."),
    quick: bool = typer.Option(False, "--quick", help="Tiny models and a few steps (seconds): checks the pipeline."),
    chat: bool = typer.Option(True, "--chat/--no-chat", help="Open `seqlab chat` on the chatbot at the end "
                              "(only when stdin and stdout are a terminal)."),
    as_json: bool = JsonOpt,
    device: str = DeviceOpt,
    seed: int = SeedOpt,
) -> None:
    """The main job: print the built-in corpora's statistics, train a small chatbot (GRU + Luong attention on
    chatterbot/english) and a character-level LM (Transformer on shakespeare), print one evaluation table and
    sample outputs (greedy, beam, sampling), save the runs under OUT_DIR, then chat with the chatbot when run
    in a terminal. About 4 minutes on an idle 2-core CPU; re-running retrains (or --reuse)."""
    from seqlab.device import resolve_device

    started = time.perf_counter()
    if out_dir.exists() and not out_dir.is_dir():
        raise SeqlabError(f"--out-dir {str(out_dir)!r} is a file; the demo writes its runs into a directory")
    mode = "quick" if quick else "full"
    say = (lambda *a: None) if as_json else typer.echo
    say(f"seqlab demo: train, evaluate, sample{', chat' if chat else ''} — offline, on {resolve_device(device)}\n")
    corpora = corpus_table()
    say(format_corpora(corpora) + "\n")
    report: dict[str, Any] = {"corpora": corpora, "runs": {}, "samples": {}}
    limits = dict(zip(("chatbot", "shakespeare-char"), EVAL_LIMIT[mode], strict=True))
    for step, (name, (preset, overrides), threads, title) in enumerate((
            ("chatbot", CHATBOT, 1, "chatbot: GRU encoder-decoder + Luong attention, word-level, chatterbot/english"),
            ("shakespeare-char", CHAR_LM, 1, "char LM: Transformer, character-level, shakespeare (complete works)")),
            start=1):
        run_dir = out_dir / f"demo-{name}"
        say(f"[{step}/2] {title} -> {run_dir}")
        with torch_threads(threads):
            train = train_or_reuse(preset, overrides[mode], run_dir, reuse, device, seed)
            say(f"      {_train_line(train)}")
            metrics, report["samples"][name] = evaluate_and_sample(str(run_dir), limits[name], device, seed, quick)
        report["runs"][name] = {"run": str(run_dir), "train": train, "eval": metrics}
    report["wall_s"] = round(time.perf_counter() - started, 1)
    if as_json:
        print_json(report)
        return
    say("\nEvaluation (held-out split, greedy decoding)\n" + format_eval(report["runs"]))
    say("\nSamples\n" + format_samples(report["samples"]))
    say(f"\ndemo finished in {report['wall_s']:.0f} s; runs in {out_dir}/\n\n" + where_next(out_dir))
    if chat and sys.stdin.isatty() and sys.stdout.isatty():
        from seqlab.cli.chat import chat_loop, open_session

        chat_loop(open_session(str(out_dir / "demo-chatbot"), {}, None, device=device, seed=seed), "the demo chatbot")


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with `n` intra-op threads (None: unchanged). The demo trains on one thread: with its small
    matrices, two threads on a 2-core CPU that is also busy with other work spin against each other
    and run several times slower per step."""
    import torch

    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def corpus_table() -> list[dict[str, Any]]:
    """Examples, characters and distinct characters of each demo corpus (or why it is not available)."""
    from seqlab.data.corpora import load_corpus

    rows = []
    for name in CORPORA:
        if name == "tinyshakespeare" and not _tinyshakespeare_is_local():
            rows.append({"name": name, "error": "not in $SEQLAB_DATA nor in the user cache (the demo does not "
                         "download it)"})
            continue
        try:
            corpus = load_corpus(name)
        except SeqlabError as e:
            rows.append({"name": name, "error": str(e)})
            continue
        texts = corpus.texts()
        row = {"name": name, "kind": corpus.kind, "examples": len(corpus), "characters": sum(map(len, texts)),
               "distinct_characters": len(set().union(*map(set, texts)))}
        if corpus.kind == "labelled":
            row["labels"] = len({e.label for e in corpus.examples})
        rows.append(row)
    return rows


def _tinyshakespeare_is_local() -> bool:
    from seqlab.data.corpora.tinyshakespeare import FILENAME, cache_dir

    folders = [Path(d) for d in os.environ.get("SEQLAB_DATA", "").split(os.pathsep) if d] + [cache_dir() / "data"]
    return any((folder / FILENAME).is_file() for folder in folders)


def format_corpora(rows: list[dict[str, Any]]) -> str:
    from seqlab.data.corpora.chatterbot import languages

    lines = ["Built-in corpora", f"  {'name':30s} {'kind':9s} {'examples':>9s} {'characters':>11s} {'distinct':>9s}"]
    for r in rows:
        if "error" in r:
            lines.append(f"  {r['name']:30s} not available: {r['error']}")
            continue
        kind = r["kind"] + (f" ({r['labels']})" if "labels" in r else "")
        lines.append(f"  {r['name']:30s} {kind:9s} {r['examples']:>9,} {r['characters']:>11,} "
                     f"{r['distinct_characters']:>9,}")
    try:
        lines.append(f"  (chatterbot ships {len(languages())} languages: `seqlab data list` names them all)")
    except SeqlabError:
        pass
    return "\n".join(lines)


def train_or_reuse(preset: str, overrides: list[str], run_dir: Path, reuse: bool, device: str,
                   seed: int) -> dict[str, Any]:
    """Train `preset` + `overrides` into `run_dir` (replacing it), or keep it with `reuse` when it matches."""
    import dataclasses

    from seqlab.config import load_config
    from seqlab.runs import MetricsLog, open_run

    cfg = dataclasses.replace(load_config(preset, overrides), seed=seed)
    if reuse and (run_dir / "config.yaml").is_file():
        run = open_run(run_dir)
        if run.read_config() == cfg and (run.best.is_file() or run.model.is_file()):
            ends = [r for r in MetricsLog(run.metrics).read() if "best_val_loss" in r and "wall_s" in r]
            return {"reused": True, **(ends[-1] if ends else {}), "run": str(run_dir)}
    if cfg.model.arch.startswith("seq2seq"):
        from seqlab.train.seq2seq import train_seq2seq as recipe
    else:
        from seqlab.train.lm import train_lm as recipe
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.", suffix=".tmp", dir=run_dir.parent))
    try:
        summary = recipe(cfg, tmp, device)
        _replace_dir(tmp, run_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {**summary, "run": str(run_dir), "reused": False}


def _replace_dir(new: Path, target: Path) -> None:
    """Put directory `new` at `target`, removing what was there only once `new` is in place."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
        target.rename(old / target.name)
    new.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _train_line(summary: dict[str, Any]) -> str:
    if summary.get("reused") and "step" not in summary:
        return "reused the existing run"
    verb = "reused: trained" if summary.get("reused") else "trained"
    return (f"{verb} {summary['step']} steps in {summary['wall_s']:.0f} s "
            f"({summary['tokens_per_s']:,.0f} tokens/s), best val loss {summary['best_val_loss']:.3f}")


def evaluate_and_sample(run: str, limit: int | None, device: str, seed: int,
                        quick: bool) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """`seqlab eval` on the run's val split (greedy), then each sample prompt under each strategy."""
    from seqlab.decode import GenerationOptions, build_prompt_ids
    from seqlab.decode.reply_length import run_max_new_tokens
    from seqlab.device import resolve_device, seed_everything
    from seqlab.eval.evaluate import generate_texts
    from seqlab.eval.run_eval import evaluate_run
    from seqlab.models.loading import load_model_from_run

    seed_everything(seed)
    model, tok, cfg = load_model_from_run(run, resolve_device(device))
    metrics, _, _ = evaluate_run(model, tok, cfg, None, "val", limit, None,
                                 {"do_sample": False, "num_beams": 1, "seed": seed}, None)
    if model.is_encoder_decoder:
        prompts, strategies = CHAT_PROMPTS, STRATEGIES
        max_new = 8 if quick else run_max_new_tokens(cfg, run)
    else:
        prompts, strategies = LM_PROMPTS, LM_STRATEGIES
        max_new = LM_CHARS["quick" if quick else "full"]
    ids = [build_prompt_ids(tok, p) for p in prompts]
    samples: dict[str, dict[str, str]] = {p: {} for p in prompts}
    for strategy, overrides in strategies.items():
        opts = GenerationOptions.from_config(cfg.decode, tok, **{**overrides, "max_new_tokens": max_new, "seed": seed})
        options = {k: v for k, v in vars(opts).items() if v is not None}
        if model.is_encoder_decoder:
            texts = generate_texts(model, tok, ids, options)
        else:  # greedy loops within a context; a sample goes on for LM_CHARS, a window at a time, its own seed
            texts = [continue_text(model, tok, i, {**options, "seed": seed + 1000 * k}, whole=strategy != "greedy")
                     for k, i in enumerate(ids)]
        for p, text in zip(prompts, texts, strict=True):
            samples[p][strategy] = text
    return metrics, samples


def continue_text(model: Any, tok: Any, ids: list[int], options: dict[str, Any], whole: bool) -> str:
    """The LM's continuation of `ids`: `max_new_tokens` of it when `whole`, generated a piece at a time (each
    piece of a quarter context sees the text's last three quarters: the demo LM's context is 64 characters),
    else what fits after the prompt. The caller gives each prompt its own seed: with the same random draws,
    two prompts' samples ran into the same text and stayed on it; each piece adds its index to it."""
    import torch

    from seqlab.decode import generate

    window, limit = model.max_length * 3 // 4, options["max_new_tokens"]
    out, piece = list(ids), 0
    while len(out) - len(ids) < limit:
        context = out[-window:]
        n = min(limit - (len(out) - len(ids)), model.max_length - len(context))
        opts = {**options, "max_new_tokens": n, "seed": options.get("seed", 0) + piece,
                "eos_token_id": tok.eos_id, "pad_token_id": tok.pad_id}
        new = generate(model, torch.tensor([context]), tokenizer=tok, **opts).sequences[0, len(context):].tolist()
        stop = tok.eos_id in new
        out += new[:new.index(tok.eos_id)] if stop else new
        piece += 1
        if stop or not whole:
            break
    return tok.decode(out[len(ids):])


def format_eval(runs: dict[str, dict[str, Any]]) -> str:
    head = f"  {'run':18s} {'perplexity':>10s} {'BLEU':>6s} {'ROUGE-L':>8s} {'distinct-2':>10s} {'self-BLEU':>9s} " \
           f"{'avg_len':>7s} {'examples':>8s}"
    lines = [head]
    for name, entry in runs.items():
        m = entry["eval"]
        self_bleu = "n/a" if m["self_bleu"] is None else f"{m['self_bleu']:.1f}"
        lines.append(f"  {name:18s} {m['perplexity']:>10.2f} {m['bleu']:>6.2f} {m['rougeL']:>8.3f} "
                     f"{m['distinct2']:>10.3f} {self_bleu:>9s} {m['avg_len']:>7.1f} {m['examples']:>8d}")
    lines.append("  (chatbot: word-level perplexity, greedy replies to the val sources; char LM: per-character "
                 "perplexity, greedy continuations of val-text prompts, each half a context long)")
    return "\n".join(lines)


def format_samples(samples: dict[str, dict[str, dict[str, str]]]) -> str:
    lines = []
    for name, by_prompt in samples.items():
        if name == "shakespeare-char":
            lines.append(f"  {name}: sampled, temperature {SAMPLE['temperature']}, top-p {SAMPLE['top_p']} "
                         "(the prompt, then the model's text)")
            for prompt, outputs in by_prompt.items():
                text = (prompt + outputs["sample"]).rstrip()
                lines += [f"      | {line}".rstrip() for line in text.splitlines()[:14]] + ["      |"]
            first = next(iter(by_prompt))
            lines.append(f"      greedy instead (the likeliest character every time) loops: {_flat(first)} "
                         f"-> {_flat(by_prompt[first]['greedy'], 60)}")
            continue
        lines.append(f"  {name}: what each decoding strategy is for")
        lines += [f"      {strategy:7s} {note}" for strategy, note in STRATEGY_NOTES.items()]
        for prompt, outputs in by_prompt.items():
            note = f"   ({UNSEEN[prompt]})" if prompt in UNSEEN else ""
            lines.append(f"  {name} > {_flat(prompt)}{note}")
            lines += [f"      {strategy:7s} {_flat(text)}" for strategy, text in outputs.items()]
    return "\n".join(lines)


def where_next(out_dir: Path) -> str:
    rows = [("talk to the chatbot", f"seqlab chat {out_dir / 'demo-chatbot'}   "
             "(then /strategy greedy|sample|beam 5, /set temperature 0.7)"),
            ("more Shakespeare", f"seqlab generate {out_dir / 'demo-shakespeare-char'} -p 'JULIET.' --do-sample "
             "--top-p 0.9"),
            ("score a run", f"seqlab eval {out_dir / 'demo-chatbot'}   (--help: splits, decoding)"),
            ("serve a run over HTTP", f"seqlab serve {out_dir / 'demo-chatbot'} {out_dir / 'demo-shakespeare-char'}"
             "   (API and chat page: http://127.0.0.1:8000/)"),
            ("read", "docs/demo.md, docs/seq2seq-and-chat.md, docs/decoding.md, docs/serve.md, docs/safety.md")]
    return "\n".join(["Where next"] + [f"  {what + ':':23s}{how}" for what, how in rows])


def _flat(text: str, width: int = 140) -> str:
    text = " / ".join(line.strip() for line in text.strip().splitlines() if line.strip())
    return text if len(text) <= width else text[:width - 1] + "…"
