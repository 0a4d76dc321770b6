"""Decoding speed: seqlab's engine against Hugging Face generate() on the same GPT-2 weights.

    python bench/decode.py                      # the issue's shape: 6 layers x 384, 6 heads, vocab 65, context 256
    python bench/decode.py --device cuda
    python bench/decode.py --n-layer 1 --n-embd 32 --n-head 2 --new-tokens 8 --rnn-hidden 32   # a smoke run

Prompt of 16 random tokens, 200 new tokens forced (min_new_tokens = max_new_tokens, so EOS never ends a
sequence early). Columns: greedy b1, sample b1 (top-k 50, top-p 0.9), beam 4, sample b64. Tokens/s =
batch x new tokens / wall seconds (beam search: the best sequence's tokens), best of `--repeats` rounds
after one warm-up; each round runs every engine once in turn, and `*_round_median` is the median of the
rounds' own HF/seqlab time ratios (robust to a host whose load drifts). `--compile` adds seqlab with the Inductor-compiled step (CPU): its one-time compile
seconds, whether its tokens equal the eager ones, and its tokens/s after compiling. Prints one JSON
line per model and column, then a one-line summary; an LSTM (2 x 512) row is measured for seqlab only.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from seqlab.decode import generate
from seqlab.decode.compiled import can_compile
from seqlab.interop import from_hf_gpt2
from seqlab.models.rnn_lm import RNNLanguageModel

COLUMNS = {
    "greedy_b1": dict(batch=1, do_sample=False),
    "sample_b1": dict(batch=1, do_sample=True, top_k=50, top_p=0.9),
    "beam4": dict(batch=1, do_sample=False, num_beams=4),
    "sample_b64": dict(batch=64, do_sample=True, top_k=50, top_p=0.9),
}
EOS = 0  # forced away by min_new_tokens; set so that HF's min_new_tokens processor is active too


def timed(fns: dict[str, Callable[[], torch.Tensor]], device: torch.device, repeats: int) -> dict[str, list[float]]:
    """Wall times of `repeats` rounds, each calling every fn once in turn (after one warm-up call each).

    Interleaving puts the engines under the same machine load in every round: on a VM whose host is
    busy the load drifts over minutes, and timing one engine's repeats after the other's would fold
    that drift into the ratio.
    """
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    return times


def options(column: dict, new_tokens: int) -> dict:
    kw = {k: v for k, v in column.items() if k != "batch"}
    return dict(kw, max_new_tokens=new_tokens, min_new_tokens=new_tokens, eos_token_id=EOS, pad_token_id=EOS)


def bench_column(name: str, args: argparse.Namespace, device: torch.device, ours: torch.nn.Module,
                 hf: GPT2LMHeadModel | None, vocab: int) -> dict:
    column = COLUMNS[name]
    prompt = torch.randint(1, vocab, (column["batch"], args.prompt_len), device=device)
    kw = options(column, args.new_tokens)
    tokens = column["batch"] * args.new_tokens
    row = {"bench": "decode", "model": type(ours).__name__, "column": name, "device": str(device),
           "new_tokens": args.new_tokens, "batch": column["batch"]}

    def run_ours() -> torch.Tensor:
        out = generate(ours, prompt, seed=0, **kw).sequences
        assert out.shape[1] == args.prompt_len + args.new_tokens
        return out

    fns = {"seqlab": run_ours}
    if args.compile and can_compile(ours):
        def run_compiled() -> torch.Tensor:
            return generate(ours, prompt, seed=0, compile_step=True, **kw).sequences

        begin = time.perf_counter()
        first = run_compiled()  # compiles (once per model and batch size)
        row["compile_s"] = round(time.perf_counter() - begin, 1)
        row["compiled_same_tokens"] = bool(torch.equal(first, run_ours()))
        fns["seqlab_compiled"] = run_compiled
    if hf is not None:
        mask = torch.ones_like(prompt)

        def run_hf() -> torch.Tensor:
            with torch.inference_mode():
                out = hf.generate(prompt, attention_mask=mask, **kw)
            assert out.shape[1] == args.prompt_len + args.new_tokens
            return out

        fns["hf"] = run_hf
    times = timed(fns, device, args.repeats)
    for name, ts in times.items():
        row[f"{name}_tok_s"] = round(tokens / min(ts), 1)
    if hf is not None:
        for name, key in (("seqlab", "ratio"), ("seqlab_compiled", "compiled_ratio")):
            if name in times:  # best vs best, and the median of the rounds' own ratios
                row[key] = round(row[f"{name}_tok_s"] / row["hf_tok_s"], 2)
                row[f"{key}_round_median"] = round(statistics.median(
                    h / o for h, o in zip(times["hf"], times[name], strict=True)), 2)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-layer", type=int, default=6)
    p.add_argument("--n-head", type=int, default=6)
    p.add_argument("--n-embd", type=int, default=384)
    p.add_argument("--vocab", type=int, default=65)
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=200)
    p.add_argument("--rnn-layers", type=int, default=2)
    p.add_argument("--rnn-hidden", type=int, default=512)
    p.add_argument("--columns", default=",".join(COLUMNS), help="comma-separated subset of " + ", ".join(COLUMNS))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--compile", action="store_true",
                   help="also time generate(compile_step=True): the Inductor-compiled step (CPU, Transformer)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=args.vocab, n_positions=args.context, n_embd=args.n_embd, n_layer=args.n_layer,
                        n_head=args.n_head, bos_token_id=None, eos_token_id=None)
    hf = GPT2LMHeadModel(config).to(device).eval()
    ours = from_hf_gpt2(hf).to(device).eval()
    rnn = RNNLanguageModel(args.vocab, cell="lstm", n_layer=args.rnn_layers, n_embd=args.rnn_hidden,
                           hidden_size=args.rnn_hidden).to(device).eval()
    machine = {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads(),
               "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}
    rows = []
    for name in args.columns.split(","):
        rows.append(bench_column(name, args, device, ours, hf, args.vocab))
        rows.append(bench_column(name, args, device, rnn, None, args.vocab))
    for row in rows:
        print(json.dumps(row | machine))
    summary = ", ".join(f"{r['column']} {r['seqlab_tok_s']:.0f} vs HF {r['hf_tok_s']:.0f} tok/s ({r['ratio']:.2f}x"
                        + (f"; compiled {r['seqlab_compiled_tok_s']:.0f}, {r['compiled_ratio']:.2f}x)"
                           if "compiled_ratio" in r else ")")
                        for r in rows if "ratio" in r)
    lstm = ", ".join(f"{r['column']} {r['seqlab_tok_s']:.0f}" for r in rows if "ratio" not in r)
    print(f"decode on {device}: {summary}; LSTM {args.rnn_layers}x{args.rnn_hidden}: {lstm} tok/s")


if __name__ == "__main__":
    main()
