"""Compression: size, quality and CPU decoding speed of seqlab's fp32, int8, pruned, distilled and ONNX models,
side by side with CTranslate2 on the same weights.

    SEQLAB_DATA=../shared/data python bench/compress.py                    # speed: the issue's protocol, 1 and 2 threads
    SEQLAB_DATA=../shared/data python bench/compress.py --threads 2 --columns beam4 --repeats 5
    SEQLAB_DATA=../shared/data python bench/compress.py --part quality --train-steps 500
    SEQLAB_DATA=../shared/data python bench/compress.py --part quality --chatbot-run runs/chatbot
    SEQLAB_DATA=../shared/data python bench/compress.py --quick            # a smoke run: tiny model, 8 tokens, eager

The model (`--part speed`): a GPT-2-shaped seqlab run, 6 layers x 384, 6 heads, context 256, learned
positions, gelu_new, biases, tied embeddings, on char tinyshakespeare (65 characters + seqlab's 5
special tokens = 70 ids), made by `seqlab train` with one step at lr 1e-9 (its weights are the
initialisation: random, as in bench/decode.py), then `seqlab export-hf`, then CTranslate2's
`TransformersConverter` to a float32 and an int8 (`quantization="int8"`) model. A char run has no
Hugging Face tokenizer, so the bench writes a word-level one over the run's own 70 symbols into the
export (CTranslate2 takes its vocabulary from there; ids are unchanged).

Engines (a row is measured when its command exists in this checkout, else a JSON note says why not):
    seqlab              seqlab's generate() with the Inductor-compiled step (`compile_step=True`), fp32
    ct2-fp32, ct2-int8  ctranslate2.Generator(intra_threads=T, inter_threads=1).generate_batch
    seqlab-int8-dynamic, seqlab-int8-weight-only
                        `seqlab quantize RUN --method M`, decoded as an ordinary run (`compile_step=True`)
    onnx-fp32, onnx-int8
                        `seqlab export-onnx RUN [--int8]`, decoded by seqlab's engine through the onnxruntime
                        adapter (seqlab.interop.onnx_runtime.load_onnx_model, T intra-op threads)

Columns (bench/decode.py's): greedy b1, sample b1 (top-k 50, top-p 0.9, temperature 1), beam 4, sample
b64; a prompt of 16 random characters (the same for every engine; 64 prompts at b64), 200 new tokens
forced: seqlab min_new_tokens = max_new_tokens with EOS = `<eos>`, CTranslate2 min_length = max_length
with its end token `<eos>` (both mask EOS on every step, so both do the same work), beam search
returning the best hypothesis. Every engine's output is checked to hold batch x 200 new tokens; in the
greedy and beam columns `E_same_tokens` says whether engine E chose seqlab's fp32 tokens (int8 engines
may differ where two tokens' scores are close).

Protocol: for each T of `--threads`, a process of its own (Inductor writes the thread count into the
compiled step's C++ kernels when it compiles them; each process has its own Inductor cache) with
torch.set_num_threads(T), CTranslate2 intra_threads = T and onnxruntime intra_op_num_threads = T;
in it, for each column: one warm-up call per engine (it compiles
seqlab's step once per batch size and lets CTranslate2's oneDNN kernels be generated for every
length), then `--repeats` rounds, each calling every engine once in a new order, so that the
engines share the load of a busy machine alike.

Output, JSON lines: one per (threads, column) with, per engine E, `E_tok_s` (batch x new tokens / the
best round's wall seconds) and `E_tok_s_median`; `ratio` = seqlab / ct2-fp32 and `int8_ratio_M` =
seqlab-int8-M / ct2-int8 (best vs best), each with `_round_median` (the median of the rounds' own
ratios); `load_before` / `load_after` (1, 5, 15-minute load averages); then one `skipped` line per
engine that could not be measured; the machine and date on every line. A one-line summary goes to
stderr.

`--part quality`: one trained fp32 run (`--run RUN`, or `seqlab train` of the same shape for
`--train-steps` steps), then each variant its command can make: int8 (each method), pruned 30% and 50%
(`seqlab prune --amount A`), a distilled half-width student (`seqlab distill --student CONFIG`, 6 x 192)
next to the same student trained without distillation for the distillation's wall time (`seqlab train`,
then `--resume` with more steps when the distillation took longer), ONNX fp32 / int8. Per variant one
JSON line: `bytes` (its weight files), `val_ppl` (`seqlab eval RUN --split val`: teacher-forced
perplexity on nanoGPT's last 10% of tinyshakespeare), `ppl_vs_fp32` (relative change), the command's
wall seconds; with `--chatbot-run RUN`, the same variants of that run with `bleu` from `seqlab eval`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

BIN = Path(sys.executable).parent  # the venv's seqlab command
COLUMNS = {
    "greedy_b1": dict(batch=1, do_sample=False),
    "sample_b1": dict(batch=1, do_sample=True, top_k=50, top_p=0.9),
    "beam4": dict(batch=1, num_beams=4),
    "sample_b64": dict(batch=64, do_sample=True, top_k=50, top_p=0.9),
}
QUANTIZE_METHODS = ("dynamic", "weight-only")
SPECIALS = 5  # seqlab's char tokenizer: <pad> <unk> <bos> <eos> <sep>, then the characters


# ---------------------------------------------------------------- the model and its conversions

def seqlab(*cmd: Any, threads: int | None = None) -> tuple[str, float]:
    """Run a seqlab command; its stdout and wall seconds (SystemExit with its stderr if it fails)."""
    env = dict(os.environ)
    if threads:
        env |= {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    done = subprocess.run([str(BIN / "seqlab"), *map(str, cmd)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"seqlab {' '.join(map(str, cmd[:2]))} failed ({done.returncode}):\n{done.stderr.strip()}")
    return done.stdout, time.perf_counter() - start


def has_command(name: str) -> bool:
    """Whether this checkout's `seqlab` has the command (issue 19's commands are added one by one)."""
    done = subprocess.run([str(BIN / "seqlab"), name, "--help"], capture_output=True, text=True)
    return done.returncode == 0


def shape_keys(args: argparse.Namespace) -> dict[str, Any]:
    """`--set` keys of a GPT-2-shaped char model that export-hf (and so CTranslate2) accepts."""
    return {"data.corpus": "tinyshakespeare", "data.tokenizer": "char", "model.arch": "transformer_lm",
            "model.n_layer": args.n_layer, "model.n_head": args.n_head, "model.n_embd": args.n_embd,
            "model.context_length": args.context, "model.positions": "learned", "model.activation": "gelu_new",
            "model.bias": "true", "model.tie_embeddings": "true", "train.samples": 0}


def sets(keys: dict[str, Any]) -> list[str]:
    return [a for key, value in keys.items() for a in ("--set", f"{key}={value}")]


def train_run(out: Path, args: argparse.Namespace, steps: int, extra: dict | None = None) -> float:
    """`seqlab train` of the bench's shape; steps 0: one step at lr 1e-9 (the weights stay random). Wall seconds."""
    keys = shape_keys(args) | (extra or {})
    if steps == 0:
        keys |= {"train.max_steps": 1, "train.lr": 1e-9, "train.min_lr": 0, "train.warmup_steps": 1,
                 "train.batch_size": 2, "train.eval_batches": 1}
    else:
        keys |= {"train.max_steps": steps, "train.eval_interval": max(1, steps // 4)}
    _, wall = seqlab("train", "shakespeare-char-transformer-cpu", *sets(keys), "--out", out)
    return wall


def export_for_ctranslate2(run: Path, work: Path) -> dict[str, Path]:
    """export-hf, a word-level HF tokenizer over the run's symbols, then CTranslate2 fp32 and int8 models."""
    import ctranslate2
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    folder = work / "hf"
    seqlab("export-hf", run, "--out", folder)
    symbols = json.loads((run / "tokenizer.json").read_text())["tokens"]
    word_level = Tokenizer(WordLevel({s: i for i, s in enumerate(symbols)}, unk_token="<unk>"))
    PreTrainedTokenizerFast(tokenizer_object=word_level, bos_token="<bos>", eos_token="<eos>", unk_token="<unk>",
                            pad_token="<pad>").save_pretrained(folder)
    models = {}
    for name, quantization in (("ct2-fp32", None), ("ct2-int8", "int8")):
        with contextlib.redirect_stderr(open(os.devnull, "w")):  # transformers' loading bar
            ctranslate2.converters.TransformersConverter(str(folder)).convert(
                str(work / name), quantization=quantization, force=True)
        models[name] = work / name
    return models


# ---------------------------------------------------------------- engines

class SeqlabEngine:
    """seqlab's generate() on a model made per thread count by `load(threads)`."""

    def __init__(self, name: str, load: Callable[[int], Any], compile_step: bool):
        self.name, self.load, self.compile_step = name, load, compile_step
        self.model: Any = None

    def prepare(self, threads: int) -> None:
        torch.set_num_threads(threads)
        self.model = self.load(threads)

    def __call__(self, prompt: torch.Tensor, column: dict, new: int, eos: int) -> list[list[int]]:
        from seqlab.decode import generate

        kw = {k: v for k, v in column.items() if k != "batch"}
        out = generate(self.model, prompt, seed=0, compile_step=self.compile_step, max_new_tokens=new,
                       min_new_tokens=new, eos_token_id=eos, pad_token_id=eos, **kw)
        return out.sequences[:, prompt.shape[1]:].tolist()


class CTranslate2Engine:
    """ctranslate2.Generator on a converted model; prompts go in as the vocabulary's token strings."""

    def __init__(self, name: str, path: Path):
        self.name, self.path = name, path
        self.vocabulary = json.loads((path / "vocabulary.json").read_text())
        self.generator: Any = None

    def prepare(self, threads: int) -> None:
        import ctranslate2

        self.generator = ctranslate2.Generator(str(self.path), device="cpu", intra_threads=threads, inter_threads=1)
        ctranslate2.set_random_seed(0)

    def __call__(self, prompt: torch.Tensor, column: dict, new: int, eos: int) -> list[list[int]]:
        kw: dict[str, Any] = {"beam_size": column.get("num_beams", 1)}
        if column.get("do_sample"):
            kw |= {"sampling_topk": column["top_k"], "sampling_topp": column["top_p"], "sampling_temperature": 1.0}
        tokens = [[self.vocabulary[i] for i in row] for row in prompt.tolist()]
        results = self.generator.generate_batch(tokens, max_length=new, min_length=new, include_prompt_in_result=False,
                                                end_token=self.vocabulary[eos], **kw)
        return [r.sequences_ids[0] for r in results]


def seqlab_engines(run: Path, work: Path, compile_step: bool, wanted: Callable[[str], bool]) -> tuple[list, list[dict]]:
    """seqlab's fp32 engine, and the `wanted` int8 and ONNX engines where this checkout has their commands."""
    from seqlab.models.loading import load_model_from_run

    def from_run(path: Path) -> Callable[[int], Any]:
        loaded: dict[str, Any] = {}

        def load(threads: int) -> Any:  # the same model object for every thread count: compiled once per batch size
            if "model" not in loaded:
                loaded["model"] = load_model_from_run(path, "cpu", "best")[0].eval()
            return loaded["model"]
        return load

    engines: list = [SeqlabEngine("seqlab", from_run(run), compile_step)]
    skipped = []
    methods = [m for m in QUANTIZE_METHODS if wanted(f"seqlab-int8-{m}")]
    if methods and has_command("quantize"):
        for method in methods:
            out = work / f"run-int8-{method}"
            try:
                if not out.is_dir():
                    seqlab("quantize", run, "--out", out, "--method", method)
                engines.append(SeqlabEngine(f"seqlab-int8-{method}", from_run(out), compile_step))
            except SystemExit as e:
                skipped.append({"engine": f"seqlab-int8-{method}", "skipped": str(e).splitlines()[0]})
    else:
        skipped += [{"engine": f"seqlab-int8-{m}", "skipped": "no `seqlab quantize` in this checkout"} for m in methods]
    onnx = [n for n in ("onnx-fp32", "onnx-int8") if wanted(n)]
    if onnx and has_command("export-onnx"):
        try:
            from seqlab.interop.onnx_runtime import load_onnx_model

            folder = work / "onnx"
            if not folder.is_dir():
                seqlab("export-onnx", run, "--out", folder, "--int8")
            for name in onnx:  # export-onnx --int8 writes onnxruntime's int8 copy into FOLDER/int8
                path = folder / "int8" if name == "onnx-int8" else folder
                engines.append(SeqlabEngine(name, lambda threads, path=path: load_onnx_model(path, threads=threads),
                                            compile_step=False))
        except (SystemExit, ImportError) as e:
            skipped += [{"engine": n, "skipped": str(e).splitlines()[0]} for n in onnx]
    else:
        skipped += [{"engine": n, "skipped": "no `seqlab export-onnx` in this checkout"} for n in onnx]
    return engines, skipped


# ---------------------------------------------------------------- timing

def measure_column(engines: list, name: str, args: argparse.Namespace, vocab: int, eos: int) -> dict:
    """One column at the current thread count: a warm-up per engine, then interleaved rounds."""
    column = COLUMNS[name]
    rng = random.Random(0)
    prompt = torch.tensor([[rng.randrange(SPECIALS, vocab) for _ in range(args.prompt_len)]
                           for _ in range(column["batch"])])
    tokens = column["batch"] * args.new_tokens
    load_before = os.getloadavg()
    outputs = {}
    for engine in engines:
        outputs[engine.name] = out = engine(prompt, column, args.new_tokens, eos)
        lengths = {len(row) for row in out}
        if len(out) != column["batch"] or lengths != {args.new_tokens}:
            raise RuntimeError(f"{engine.name} {name}: {len(out)} rows of {lengths} tokens, "
                               f"expected {column['batch']} of {args.new_tokens}")
    times: dict[str, list[float]] = {e.name: [] for e in engines}
    for round_ in range(args.repeats):
        turn = round_ % len(engines)
        for engine in engines[turn:] + engines[:turn]:
            start = time.perf_counter()
            engine(prompt, column, args.new_tokens, eos)
            times[engine.name].append(time.perf_counter() - start)
    row: dict[str, Any] = {"bench": "compress", "part": "speed", "column": name, "threads": torch.get_num_threads(),
                           "batch": column["batch"], "prompt": args.prompt_len, "new_tokens": args.new_tokens,
                           "repeats": args.repeats}
    for engine, ts in times.items():
        row[f"{engine}_tok_s"] = round(tokens / min(ts), 1)
        row[f"{engine}_tok_s_median"] = round(tokens / statistics.median(ts), 1)
        if not column.get("do_sample") and "seqlab" in outputs and engine != "seqlab":
            row[f"{engine}_same_tokens"] = outputs[engine] == outputs["seqlab"]  # deterministic columns only
    pairs = [("ratio", "seqlab", "ct2-fp32")]
    pairs += [(f"int8_ratio_{m}", f"seqlab-int8-{m}", "ct2-int8") for m in QUANTIZE_METHODS]
    pairs += [("onnx_int8_ratio", "onnx-int8", "ct2-int8")]
    for key, ours, peer in pairs:
        if ours in times and peer in times:
            row[key] = round(row[f"{ours}_tok_s"] / row[f"{peer}_tok_s"], 2)
            row[f"{key}_round_median"] = round(statistics.median(
                p / o for p, o in zip(times[peer], times[ours], strict=True)), 2)
    return row | {"load_before": loads(load_before), "load_after": loads(os.getloadavg())}


def speed(args: argparse.Namespace, work: Path) -> list[dict]:
    run = work / "run"
    if (work / "ct2-int8" / "model.bin").is_file():  # a --work folder of an earlier run of the same shape
        ct2 = {name: work / name for name in ("ct2-fp32", "ct2-int8")}
    else:
        train_run(run, args, steps=0)
        ct2 = export_for_ctranslate2(run, work)
    if len(args.threads) > 1:  # one process per thread count, each reusing this run and its conversions
        for threads in args.threads:
            env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(work / f"inductor-{threads}"))
            done = subprocess.run([sys.executable, __file__, *args.argv, "--threads", str(threads), "--work", str(work)],
                                  env=env)
            if done.returncode != 0:
                raise SystemExit(f"the {threads}-thread run failed ({done.returncode})")
        return []
    names = set(args.engines.split(",")) if args.engines else None

    def wanted(name: str) -> bool:
        return names is None or name in names

    engines, skipped = seqlab_engines(run, work, not args.no_compile, wanted)
    engines += [CTranslate2Engine(name, path) for name, path in ct2.items()]
    engines = [e for e in engines if wanted(e.name)]
    vocab = len(json.loads((run / "tokenizer.json").read_text())["tokens"])
    eos = json.loads((run / "tokenizer.json").read_text())["tokens"].index("<eos>")
    rows = []
    for threads in args.threads:
        for engine in engines:
            engine.prepare(threads)
        for name in args.columns:
            rows.append(measure_column(engines, name, args, vocab, eos))
            print(json.dumps(rows[-1] | machine(args)), flush=True)
    for line in skipped:
        print(json.dumps({"bench": "compress", "part": "speed"} | line | machine(args)), flush=True)
    return rows


# ---------------------------------------------------------------- quality

def weight_bytes(path: Path) -> int:
    """The bytes of a run's weights (best.safetensors, else model.safetensors) or of an ONNX folder's graphs
    and their external weights."""
    if (path / "best.safetensors").is_file():
        return (path / "best.safetensors").stat().st_size
    if (path / "model.safetensors").is_file():
        return (path / "model.safetensors").stat().st_size
    return sum(f.stat().st_size for pattern in ("*.onnx", "*.bin") for f in path.glob(pattern))  # graphs + weights.bin


def evaluate(run: Path, extra: tuple = ()) -> dict:
    out, _ = seqlab("eval", run, "--json", "--max-new-tokens", 8, *extra)
    return json.loads(out)


def quality(args: argparse.Namespace, work: Path) -> list[dict]:
    """Size and val perplexity of every variant this checkout's commands can make; see the module docstring."""
    rows: list[dict] = []
    fp32 = args.run or work / "fp32"
    wall = None
    if args.run is None:
        wall = train_run(fp32, args, steps=args.train_steps)
    variants: list[tuple[str, Path | None, float | None, str | None]] = [("fp32", fp32, wall, None)]
    variants += make_variants(fp32, work, args)
    base = None
    for name, path, seconds, note in variants:
        row: dict[str, Any] = {"bench": "compress", "part": "quality", "variant": name, "seconds": rounded(seconds, 1)}
        if path is None:
            rows.append(row | {"skipped": note})
        else:
            metrics = evaluate(path, ("--split", "val")) if not name.startswith("onnx") else onnx_metrics(fp32, path)
            ppl = metrics.get("perplexity")
            base = ppl if name == "fp32" else base
            rows.append(row | {"bytes": weight_bytes(path), "val_ppl": rounded(ppl, 4),
                               "ppl_vs_fp32": rounded(ppl / base - 1, 4) if ppl and base else None}
                        | ({"note": note} if note else {}))
        print(json.dumps(rows[-1] | machine(args)), flush=True)
    if args.chatbot_run:
        for name, path, _seconds, note in [("fp32", args.chatbot_run, None, None),
                                          *make_variants(args.chatbot_run, work / "chatbot", args, lm=False)]:
            row = {"bench": "compress", "part": "quality", "run": "chatbot", "variant": name}
            if path is None:
                rows.append(row | {"skipped": note})
            else:
                metrics = evaluate(path)
                rows.append(row | {"bytes": weight_bytes(path), "bleu": metrics.get("bleu"),
                                   "perplexity": rounded(metrics.get("perplexity"), 4)})
            print(json.dumps(rows[-1] | machine(args) | {"model": f"chatbot run {args.chatbot_run}"}), flush=True)
    return rows


def onnx_metrics(run: Path, folder: Path) -> dict:
    """`seqlab eval`'s metrics for an ONNX folder: the run's own evaluation (seqlab.eval.run_eval) on the
    onnxruntime adapter, in-process (the eval command has no engine flag)."""
    from seqlab.eval.run_eval import evaluate_run
    from seqlab.interop.onnx_runtime import load_onnx_model
    from seqlab.models.loading import load_model_from_run

    _, tokenizer, config = load_model_from_run(run, "cpu", "best")
    metrics, _, _ = evaluate_run(load_onnx_model(folder), tokenizer, config, None, "val", None, 8, {}, None)
    return metrics


def make_variants(run: Path, work: Path, args: argparse.Namespace, lm: bool = True) -> list[tuple]:
    """(name, path or None, seconds, note) for every compressed variant of `run`."""
    work.mkdir(parents=True, exist_ok=True)
    out: list[tuple] = []

    def attempt(name: str, command: str, *cmd: Any, path: Path) -> None:
        if not has_command(command):
            out.append((name, None, None, f"no `seqlab {command}` in this checkout"))
            return
        try:
            _, seconds = seqlab(command, *cmd)
            out.append((name, path, seconds, None))
        except SystemExit as e:
            out.append((name, None, None, str(e).splitlines()[0]))

    for method in QUANTIZE_METHODS:
        path = work / f"int8-{method}"
        attempt(f"int8-{method}", "quantize", run, "--out", path, "--method", method, path=path)
    for amount in (0.3, 0.5):
        path = work / f"pruned-{int(amount * 100)}"
        attempt(f"pruned-{int(amount * 100)}", "prune", run, "--out", path, "--amount", amount, path=path)
    if lm:
        out += distilled(run, work, args)
        if has_command("export-onnx"):
            folder = work / "onnx"
            try:
                _, seconds = seqlab("export-onnx", run, "--out", folder, "--int8")
                out += [("onnx-fp32", folder, seconds, None), ("onnx-int8", folder / "int8", None, None)]
            except SystemExit as e:
                out += [(n, None, None, str(e).splitlines()[0]) for n in ("onnx-fp32", "onnx-int8")]
        else:
            out += [(n, None, None, "no `seqlab export-onnx` in this checkout") for n in ("onnx-fp32", "onnx-int8")]
    return out


def distilled(teacher: Path, work: Path, args: argparse.Namespace) -> list[tuple]:
    """The half-width student by `seqlab distill`, and the same student by `seqlab train` in the same wall time."""
    if not has_command("distill"):
        return [("distilled-half", None, None, "no `seqlab distill` in this checkout")]
    import yaml

    from seqlab.config import load_config

    half = {"model.n_embd": args.n_embd // 2}
    student = work / "student.yaml"
    config = load_config("shakespeare-char-transformer-cpu", [f"{k}={v}" for k, v in (shape_keys(args) | half).items()])
    student.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    steps = {"train.max_steps": args.train_steps}
    try:
        _, kd_wall = seqlab("distill", teacher, "--student", student, "--out", work / "distilled-half", *sets(steps))
    except SystemExit as e:
        return [("distilled-half", None, None, str(e).splitlines()[0])]
    plain = work / "student-no-kd"
    wall = train_run(plain, args, args.train_steps, half)
    if kd_wall > wall:  # give the plain student the distillation's wall time
        more = round(args.train_steps * kd_wall / wall)
        _, extra = seqlab("train", "--resume", plain, "--set", f"train.max_steps={more}")
        wall += extra
    return [("distilled-half", work / "distilled-half", kd_wall, None),
            ("student-half-no-kd", plain, wall, "the same student without distillation, about the same wall time")]


# ---------------------------------------------------------------- reporting

def rounded(x: float | None, digits: int) -> float | None:
    return None if x is None else round(x, digits)


def loads(average: tuple[float, float, float]) -> list[float]:
    return [round(x, 2) for x in average]


def machine(args: argparse.Namespace) -> dict:
    import ctranslate2

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    commit = subprocess.run(["git", "-C", Path(__file__).parent, "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip()
    return {"date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%MZ"), "cpu": cpu, "cores": os.cpu_count(),
            "torch": torch.__version__, "ctranslate2": ctranslate2.__version__, "seqlab_commit": commit or None,
            "model": f"gpt2 {args.n_layer}x{args.n_embd}, {args.n_head} heads, char tinyshakespeare"}


def summary(rows: list[dict]) -> str:
    parts = []
    for r in rows:
        line = f"{r['column']}@{r['threads']}t seqlab {r.get('seqlab_tok_s', 0):.0f}"
        for peer in ("ct2-fp32", "ct2-int8"):
            if f"{peer}_tok_s" in r:
                line += f" / {peer} {r[f'{peer}_tok_s']:.0f}"
        if "ratio" in r:
            line += f" ({r['ratio']:.2f}x)"
        parts.append(line)
    return "compress speed, tok/s: " + "; ".join(parts)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("speed", "quality"), default="speed")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 layer x 32, 8 new tokens, 1 round, 1 thread unless --threads, eager seqlab")
    p.add_argument("--threads", default=None, help="comma-separated thread counts (default 1,2; --quick: 1)")
    p.add_argument("--columns", default=",".join(COLUMNS), help="comma-separated subset of " + ", ".join(COLUMNS))
    p.add_argument("--engines", default=None, help="comma-separated subset of the engines (default: all available)")
    p.add_argument("--repeats", type=int, default=3, help="rounds after the warm-up; each runs every engine once")
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=200)
    p.add_argument("--n-layer", type=int, default=6)
    p.add_argument("--n-head", type=int, default=6)
    p.add_argument("--n-embd", type=int, default=384)
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--no-compile", action="store_true", help="time seqlab's eager step instead of the compiled one")
    p.add_argument("--run", type=Path, default=None, help="quality: a trained fp32 run of the bench's shape to use")
    p.add_argument("--train-steps", type=int, default=500,
                   help="quality: steps of the fp32 run and of each student (batch 24 x context 256: at 6 x 384 about "
                        "1,300 tokens/s on a 2-core CPU, so ~40 min for the fp32 run; smaller --n-layer/--n-embd/"
                        "--context train faster)")
    p.add_argument("--chatbot-run", type=Path, default=None, help="quality: also a chatbot run's variants, scored by BLEU")
    p.add_argument("--work", type=Path, default=None,
                   help="a directory for the runs and models (default: temporary); speed: reused when it holds them")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.quick:
        args.n_layer, args.n_head, args.n_embd, args.context = 1, 2, 32, 64
        args.new_tokens, args.repeats, args.no_compile = 8, 1, True
        args.train_steps = min(args.train_steps, 2)
    args.threads = [int(t) for t in (args.threads or ("1" if args.quick else "1,2")).split(",")]
    args.columns = args.columns.split(",")
    unknown = sorted(set(args.columns) - set(COLUMNS))
    if unknown:
        p.error(f"unknown columns {unknown}; choose from {', '.join(COLUMNS)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-compress-")))
        work.mkdir(parents=True, exist_ok=True)
        if args.part == "speed":
            rows = speed(args, work)
            if rows:
                print(summary(rows), file=sys.stderr)
        else:
            rows = quality(args, work)
            print("compress quality: " + "; ".join(f"{r['variant']} {r.get('val_ppl', r.get('bleu'))}" for r in rows),
                  file=sys.stderr)
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
