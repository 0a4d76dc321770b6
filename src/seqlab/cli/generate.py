"""`seqlab generate RUN --prompt TEXT`: greedy, sampling or beam search from a trained run."""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import typer

from seqlab.cli.decode_options import DECODING, BanWordsOpt, decode_options, early_stopping, with_ban_list
from seqlab.cli.options import DeviceOpt, JsonOpt, SeedOpt, print_json
from seqlab.cli.safety_options import (
    FallbackThresholdOpt,
    SafetyActionOpt,
    SafetyOpt,
    SafetyWordsOpt,
    reply_policy,
)
from seqlab.errors import SeqlabError

ENGINES = ("torch", "onnxruntime")


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)


@decode_options("max_new_tokens", "min_new_tokens", "do_sample", "num_beams", "num_return_sequences", "temperature",
                "top_k", "top_p", "min_p", "repetition_penalty", "no_repeat_ngram_size", "length_penalty",
                "early_stopping", "stop_strings", notes={"max_new_tokens": "Default: the run's decode.max_new_tokens."})
def generate(
    run: str = typer.Argument(..., help="Run directory (from `seqlab train` or `seqlab import-hf`)."),
    prompt: str = typer.Option(..., "--prompt", "-p", help="Prompt text; '-' reads one prompt per stdin line."),
    decoding: dict = DECODING,
    ban_words: str = BanWordsOpt,
    safety: str = SafetyOpt,
    safety_action: str = SafetyActionOpt,
    safety_words: str = SafetyWordsOpt,
    fallback_threshold: str = FallbackThresholdOpt,
    label: str = typer.Option(None, "--label", help="Condition on a label (runs trained with <label:L> tokens)."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="Weights to load: best | last."),
    stream: bool = typer.Option(False, "--stream", help="Print the text as it is generated."),
    compile_step: bool = typer.Option(False, "--compile", help="Transformer LM: decode with the "
                                      "Inductor-compiled step (15-35 s to compile, --json's compile_s; "
                                      "pays off for long or batched runs)."),
    engine: str = typer.Option("torch", "--engine", help="torch | onnxruntime: decode with the ONNX graphs of "
                               "`seqlab export-onnx` (CPU; same search, processors and streaming)."),
    onnx_dir: Path = typer.Option(None, "--onnx", metavar="DIR", help="The folder of `seqlab export-onnx` for "
                                  "--engine onnxruntime (default RUN/onnx; DIR/int8 for the int8 graphs). It holds "
                                  "the weights it was exported from: --checkpoint does not apply."),
    as_json: bool = JsonOpt,
    device: str = DeviceOpt,
    seed: int = SeedOpt,
) -> None:
    """Generate text from a trained run. Options default to the run's `decode` config section.
    With --json, each generation has a finish_reason: "stop" (EOS or --stop) or "length" (cut by the cap),
    and a confidence: the mean log-probability of its tokens (with beams, the beam score). Every generation
    goes through the run's reply policy (`safety`, `chat.fallback`; the --safety and --fallback flags override
    them); --json gives each one's action: none, masked, regenerated, refused or fallback."""
    from seqlab.decode import GenerationOptions
    from seqlab.decode.reply_length import run_max_new_tokens
    from seqlab.device import resolve_device, seed_everything
    from seqlab.runs import open_run

    if stream and as_json:
        raise SeqlabError("--stream prints text as it comes; it cannot be combined with --json")
    _check_engine(engine, onnx_dir, compile_step, device)
    config = open_run(run).read_config()
    flags = decoding | {"early_stopping": early_stopping(decoding["early_stopping"])}
    if flags["max_new_tokens"] is None:
        flags["max_new_tokens"] = run_max_new_tokens(config, run)
    flags = with_ban_list(flags, ban_words, config.decode)
    GenerationOptions.from_config(config.decode, **flags)  # bad options fail before the model loads
    policy = reply_policy(config, safety, safety_action, safety_words, fallback_threshold)
    prompts = _read_prompts(prompt)
    seed_everything(seed)
    if engine == "onnxruntime":
        from seqlab.interop.onnx_runtime import load_onnx_run

        model, tokenizer, config = load_onnx_run(run, onnx_dir)
    else:
        from seqlab.models.loading import load_model_from_run

        model, tokenizer, config = load_model_from_run(run, resolve_device(device), which=checkpoint)
    opts = GenerationOptions.from_config(config.decode, tokenizer, **flags, seed=seed)
    compile_step = compile_step and _can_compile(model)
    if stream:
        _stream(model, tokenizer, prompts, label, opts, compile_step, policy)
        return
    started = time.perf_counter()
    results, first_step = _generate(model, tokenizer, prompts, label, opts, compile_step)
    _apply_policy(policy, results, lambda p, banned: _retry(model, tokenizer, p, label, opts, banned))
    seconds = time.perf_counter() - started
    if as_json:
        print_json(_report(run, opts, results, seconds, first_step))
        return
    shown_prompt = not model.is_encoder_decoder
    for r in results:
        for g in r["generations"]:
            typer.echo((r["prompt"] if shown_prompt else "") + g["text"])
            if len(results) > 1 or len(r["generations"]) > 1:
                typer.echo("")


def _check_engine(engine: str, onnx_dir: Path | None, compile_step: bool, device: str) -> None:
    """--engine and the flags that go with only one engine."""
    if engine not in ENGINES:
        raise SeqlabError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "torch" and onnx_dir is not None:
        raise SeqlabError("--onnx DIR goes with --engine onnxruntime")
    if engine == "onnxruntime" and compile_step:
        raise SeqlabError("--compile applies to --engine torch; onnxruntime optimises its graphs itself")
    if engine == "onnxruntime" and device not in ("auto", "cpu"):
        raise SeqlabError(f"--engine onnxruntime decodes on the CPU; drop --device {device}")


def _can_compile(model: Any) -> bool:
    """Whether --compile applies to `model`; a note on stderr when it does not."""
    from seqlab.decode.compiled import can_compile

    if can_compile(model):
        return True
    typer.echo(f"note: --compile applies to fp32 Transformer LMs on CPU or CUDA, not this {type(model).__name__} "
               f"on {next(model.parameters()).device.type}; decoding without it", err=True)
    return False


def _report(run: str, opts: Any, results: list[dict], seconds: float, first_step: float | None) -> dict:
    """--json's object: the options, each prompt's generations, the time and the speed."""
    tokens = sum(g["tokens"] for r in results for g in r["generations"])
    report = {"run": run, "options": _public(opts), "results": results, "seconds": round(seconds, 4)}
    decoding = seconds
    if first_step is not None:  # --compile: the first step compiles; tokens/s is the speed after it
        report["compile_s"] = round(first_step, 4)
        decoding -= first_step
    return report | {"tokens_per_s": round(tokens / decoding, 1) if decoding > 0 else None}


def _generate(model: Any, tokenizer: Any, prompts: list[str], label: str | None, opts: Any,
              compile_step: bool = False) -> tuple[list[dict], float | None]:
    """One entry per prompt with its generations, and (compile_step) the first step's seconds, compiling included."""
    from seqlab.decode import build_prompt_ids, generate, left_pad
    from seqlab.decode.stopping import cut_at_stop

    input_ids, attention_mask = left_pad([build_prompt_ids(tokenizer, p, label) for p in prompts], tokenizer.pad_id)
    out = generate(model, input_ids, attention_mask, tokenizer=tokenizer, compile_step=compile_step, **asdict(opts))
    start = 1 if model.is_encoder_decoder else input_ids.shape[1]
    n = opts.num_return_sequences
    results = [{"prompt": p, "generations": []} for p in prompts]
    for i, row in enumerate(out.sequences.tolist()):
        generated = row[start:]
        ends = [j + 1 for j, t in enumerate(generated) if t in opts.eos_ids]
        generated = generated[:ends[0]] if ends else generated
        text, _ = cut_at_stop(tokenizer.decode(generated), opts.stop_list)
        entry = {"text": text, "tokens": len(generated), "finish_reason": out.finish_reasons[i],  # stop | length
                 "confidence": round(out.confidence[i], 6)}  # mean token log-prob (beams: the beam score)
        if out.sequences_scores is not None:
            entry["score"] = round(float(out.sequences_scores[i]), 6)
        results[i // n]["generations"].append(entry)
    return results, out.first_step_seconds


def _apply_policy(policy: Any, results: list[dict], retry: Any) -> None:
    """Each generation through the reply policy, in place: its text, finish_reason and action taken; after a
    regeneration, the tokens, confidence and tries of the last generation. `retry(prompt, banned_words)`
    generates again (regenerate) and returns the new entry."""
    from seqlab.safety import Generation

    for r in results:
        for g in r["generations"]:
            last = [g]

            def again(banned: list[str], prompt: str = r["prompt"], last: list = last) -> Generation:
                last.append(retry(prompt, banned))
                return Generation(last[-1]["text"], last[-1]["finish_reason"], last[-1]["confidence"])

            reply = policy.apply(Generation(g["text"], g["finish_reason"], g["confidence"]), again)
            g.update(text=reply.text, finish_reason=reply.finish_reason, action=reply.action_taken,
                     tokens=last[-1]["tokens"], confidence=last[-1]["confidence"])
            if "score" in last[-1]:
                g["score"] = last[-1]["score"]
            if reply.tries > 1:
                g["tries"] = reply.tries


def _retry(model: Any, tokenizer: Any, prompt: str, label: str | None, opts: Any, banned: list[str]) -> dict:
    """A new generation entry for `prompt` with `banned` added to the banned words (the policy's regenerate)."""
    opts = replace(opts, num_return_sequences=1, banned_words=[*(opts.banned_words or []), *banned])
    return _generate(model, tokenizer, [prompt], label, opts)[0][0]["generations"][0]


def _stream(model: Any, tokenizer: Any, prompts: list[str], label: str | None, opts: Any,
            compile_step: bool, policy: Any) -> None:
    from seqlab.decode import stream
    from seqlab.safety.policy import with_banned_words

    for k, p in enumerate(prompts):
        if k:
            sys.stdout.write("\n")
        if not model.is_encoder_decoder:
            sys.stdout.write(p)

        def start(banned: list[str], p: str = p) -> Any:  # a new stream for each of the policy's tries
            return stream(model, tokenizer, p, label=label, compile_step=compile_step,
                          **with_banned_words(asdict(opts), banned))

        for piece in policy.apply_stream(start, exact_retries=opts.num_beams == 1):  # sampling has a seed here
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
    sys.stdout.flush()


def _read_prompts(prompt: str) -> list[str]:
    from seqlab.data.corpus import split_lines
    from seqlab.io import read_stdin

    if prompt != "-":
        return [prompt]
    lines = split_lines(read_stdin())  # strict UTF-8; a prompt may hold U+2028 or a form feed
    if not lines:
        raise SeqlabError("--prompt - reads one prompt per line from stdin, but stdin was empty")
    return lines


def _public(opts: Any) -> dict:
    return {k: v for k, v in asdict(opts).items() if v is not None}
