"""A run's language model as two ONNX graphs, prefill and step, with the decoding state as explicit tensors.

    export_onnx("runs/shakespeare", "runs/shakespeare/onnx", int8=True)   # what `seqlab export-onnx` does
    export_model(model, "/tmp/lm-onnx")                                    # a TransformerLM / RNNLanguageModel

The folder it writes (`seqlab.interop.onnx_runtime` decodes with it through seqlab's one decoding engine):

    DIR/
      seqlab-onnx.json    what the graphs take and give (names, dtypes, axes), the run's config, the sha256 of
                          the weights and tokenizer they come from and of each graph, the exporter, the check
      tokenizer.json      the run's tokenizer (export_onnx; export_model has no run)
      prefill.onnx        prompt -> logits of the token after it, and the first state
      step.onnx           one token per row and the state -> logits of the next token, and the new state
      weights.bin         the weights, stored once for both graphs (ONNX external data)
      int8/               (--int8) the same layout after onnxruntime.quantization.quantize_dynamic: MatMul and LSTM
                          weights int8, activations quantized to uint8 on the fly (per tensor, per call)

Graph signatures (B rows, T prompt tokens, P cached positions, nh heads of hs, L layers, H hidden units); a
step's inputs past.X come back as outputs present.X, the prefill's outputs are present.X too:

    transformer_lm  prefill(input_ids (B, T) int64, attention_mask (B, T) int64)
                      -> logits (B, V), present.key_valid (B, T) bool, present.position (B,) int64,
                         present.{i}.key, present.{i}.value (B, nh, T, hs)      for i < L
                    step(tokens (B,) int64, past.key_valid (B, P) bool, past.position (B,) int64,
                         past.{i}.key, past.{i}.value (B, nh, P, hs))
                      -> logits (B, V), present.key_valid (B, P + 1), present.position (B,),
                         present.{i}.key, present.{i}.value (B, nh, P + 1, hs)
    rnn_lm          prefill(input_ids (B, T) int64) -> logits (B, V), present.hidden (L, B, H) [, present.cell]
                    step(tokens (B,) int64, past.hidden [, past.cell]) -> logits (B, V), present.hidden [, present.cell]

The Transformer's state is the model's own (`TransformerState`: the key-valid mask over cached positions,
each row's next position id, the keys and values), except that the cache grows by one position per step
(Concat) instead of being written in place: ONNX has no in-place update, and attention then reads only the
positions written so far. Both graphs trace the model's own `prefill` (with no room for new tokens, its static
cache is exactly the prompt) and `step` (`_GrowingCache` stands in for the static cache), so left padding,
positions and masks are exactly eager decoding's. A recurrent prefill runs unpadded prompts: the runtime
adapter feeds left-padded rows in groups of equal length.

Exporter: `torch.onnx.export(dynamo=True)` (torch.export + onnxscript) with dynamic batch, prompt and cache
axes; if it fails, the TorchScript exporter (deprecated by torch) writes the graph instead, and the manifest
says which one did. Today that is the Elman RNN's prefill only: torch.export unrolls `rnn_tanh` over the
prompt (a static length), where the TorchScript exporter emits ONNX's RNN op; LSTM and GRU become ONNX's LSTM
and GRU ops either way, and the Transformer's step (in-place `index_fill_`) only exports with dynamo. The
dynamo graphs are then constant-folded without a size limit (`_fold_weights`). Every export is checked:
prefill and three steps of a left-padded batch through onnxruntime against eager, the largest logit
difference kept in the manifest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import inspect
import logging
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import seqlab
from seqlab.errors import SeqlabError
from seqlab.io import sha256_file, write_json
from seqlab.models.loading import load_model_from_run
from seqlab.runs import open_run

FORMAT = "seqlab-onnx"
FORMAT_VERSION = 1
MANIFEST = "seqlab-onnx.json"
TOKENIZER = "tokenizer.json"
GRAPHS = ("prefill", "step")
WEIGHTS = "weights.bin"  # the initializers both graphs share (ONNX external data)
INLINE_BYTES = 1024  # smaller initializers stay inside the graph files
PAGE = 4096
FOLD_LIMIT = 1 << 31  # elements: fold every constant expression of the weights, however large
KV = ("key", "value")  # the cache tensors of one Transformer layer, in this order
INT8_DIR = "int8"
EXPORTABLE = ("transformer_lm", "rnn_lm")
DEFAULT_OPSET = 18
INSTALL = "pip install 'seqlab[onnx]'"
CHECK_TOLERANCE = 1e-3  # fp32 graphs agree with eager to ~1e-6; more means the export went wrong


def require(what: str, modules: tuple[str, ...]) -> None:
    """Import `modules` or fail with one line naming the extra that installs them."""
    try:
        for name in modules:
            importlib.import_module(name)
    except ImportError:
        raise SeqlabError(f"{what} needs {' and '.join(modules)}: {INSTALL}") from None


def export_onnx(run_dir: str | Path, out: str | Path, *, int8: bool = False, opset: int | None = None,
                which: str = "best") -> dict[str, Any]:
    """Export the run's LM to the folder `out` (new or empty); returns the manifest plus the files' sizes."""
    require("seqlab export-onnx", ("onnxruntime", "onnxscript"))
    from seqlab.interop.gpt2_runs import _check_new_directory

    _check_new_directory(out)
    run = open_run(run_dir)
    config = run.read_config()
    if config.model.arch not in EXPORTABLE:
        raise SeqlabError(f"{run_dir} holds a {config.model.arch}; export-onnx handles {' and '.join(EXPORTABLE)} "
                          "runs (Seq2Seq models are not exported yet)")
    model, tokenizer, config = load_model_from_run(run_dir, "cpu", which)
    weights = run.best if which == "best" and run.best.is_file() else run.model
    about = {"source": {"run": str(run_dir), "weights": weights.name, "weights_sha256": sha256_file(weights),
                        "tokenizer_sha256": sha256_file(run.tokenizer)},
             "config": dataclasses.asdict(config),
             "special_tokens": {"bos_id": tokenizer.bos_id, "eos_id": tokenizer.eos_id, "pad_id": tokenizer.pad_id}}
    return export_model(model, out, int8=int8, opset=opset, about=about, tokenizer_file=run.tokenizer,
                        name=str(run_dir))


def export_model(model: nn.Module, out: str | Path, *, int8: bool = False, opset: int | None = None,
                 about: dict[str, Any] | None = None, tokenizer_file: Path | None = None,
                 name: str = "the model") -> dict[str, Any]:
    """Export an fp32 CPU TransformerLM or RNNLanguageModel to the folder `out` (new or empty): what export_onnx
    does once the run is loaded. `about` goes into the manifest (a run's source, config and special tokens),
    `tokenizer_file` is copied in. Without them (a benchmark's model) `load_onnx_model` reads the folder, but
    `generate --engine onnxruntime`, which checks the run it came from, does not. Returns `summary(out)`."""
    require("seqlab export-onnx", ("onnxruntime", "onnxscript"))
    from seqlab.interop.gpt2_runs import _check_new_directory, _new_directory
    from seqlab.models.rnn_lm import RNNLanguageModel
    from seqlab.models.transformer_lm import TransformerLM

    _check_new_directory(out)
    if opset is not None and not 14 <= opset <= 23:
        raise SeqlabError(f"--opset must be between 14 and 23 (onnxruntime's range for these graphs), got {opset}")
    if not isinstance(model, TransformerLM | RNNLanguageModel):
        raise SeqlabError(f"export-onnx handles seqlab's TransformerLM and RNNLanguageModel, not {type(model).__name__}")
    not_fp32 = sorted({str(t.dtype).removeprefix("torch.") for t in model.state_dict().values()} - {"float32"})
    if not_fp32:
        raise SeqlabError(f"{name} holds {' and '.join(not_fp32)} tensors (a `seqlab quantize` run?); export the "
                          "fp32 run it came from, with --int8 for onnxruntime's int8 graphs")
    if any(t.device.type != "cpu" for t in model.state_dict().values()):
        raise SeqlabError(f"export {name} from the CPU (model.cpu())")
    model = model.eval()
    with _new_directory(out) as tmp:
        manifest = _write_graphs(model, tmp, opset or DEFAULT_OPSET) | (about or {})
        if tokenizer_file is not None:
            shutil.copyfile(tokenizer_file, tmp / TOKENIZER)
        manifest["check"] = {"max_abs_logit_diff": check_graphs(model, tmp, manifest)}
        if manifest["check"]["max_abs_logit_diff"] > CHECK_TOLERANCE:
            raise SeqlabError(f"the exported graphs' logits differ from eager decoding by "
                              f"{manifest['check']['max_abs_logit_diff']:.2g} (> {CHECK_TOLERANCE}); please report it")
        write_json(tmp / MANIFEST, manifest)
        if int8:
            _write_int8(tmp, manifest, model)
    return summary(Path(out))


def _sizes(folder: Path, manifest: dict[str, Any]) -> dict[str, int]:
    files = {g: manifest["graphs"][g]["file"] for g in GRAPHS} | {"weights": manifest["weights"]["file"]}
    sizes = {name: (folder / file).stat().st_size for name, file in files.items()}
    return sizes | {"total": sum(sizes.values())}


def summary(folder: Path) -> dict[str, Any]:
    """The manifest of an ONNX folder with each graph file's size in bytes, and `int8_graphs`: the int8 copy's
    check and sizes."""
    from seqlab.io import read_json

    manifest = read_json(folder / MANIFEST)
    result = {"out": str(folder), **manifest, "bytes": _sizes(folder, manifest)}
    if (folder / INT8_DIR / MANIFEST).is_file():
        int8 = read_json(folder / INT8_DIR / MANIFEST)
        result["int8_graphs"] = {"out": str(folder / INT8_DIR), "check": int8["check"],
                                 "bytes": _sizes(folder / INT8_DIR, int8)}
    return result


# ---------------------------------------------------------------- the graphs: the model's own prefill and step


class _GrowingCache:
    """The KV cache of the step graph: layer i holds its past keys / values (B, nh, P, hs) and `write` appends
    the new ones (B, nh, T, hs) -> (B, nh, P + T, hs). Stands in for StaticKVCache inside the model's `step`,
    which calls only `write` (the graph returns `keys` / `values` as the new state)."""

    def __init__(self, keys: list[Tensor | None], values: list[Tensor | None]):
        self.keys, self.values = list(keys), list(values)

    def write(self, layer: int, k: Tensor, v: Tensor, slots: Tensor) -> tuple[Tensor, Tensor]:
        if self.keys[layer] is not None:
            k, v = torch.cat([self.keys[layer], k], dim=2), torch.cat([self.values[layer], v], dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v


class _TransformerPrefill(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, ...]:
        # no new tokens: the static cache has exactly the prompt's T positions, all written
        logits, state = self.model.prefill(input_ids, attention_mask, 0)  # (B, V)
        return (logits, state.key_valid, state.position, *_interleave(state.cache.keys, state.cache.values))


class _TransformerStep(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor, key_valid: Tensor, position: Tensor, *past: Tensor) -> tuple[Tensor, ...]:
        from seqlab.models.transformer_lm import TransformerState

        B, P = key_valid.shape
        # the step writes position P: the model's step marks it valid in the (B, P + 1) mask
        key_valid = torch.cat([key_valid, key_valid.new_zeros(B, 1)], dim=1)
        slot = torch.arange(P, P + 1, device=tokens.device)  # (1,)
        state = TransformerState(_GrowingCache(list(past[0::2]), list(past[1::2])), key_valid, slot, position.clone())
        logits, state = self.model.step(tokens, state)  # (B, V)
        return (logits, state.key_valid, state.position, *_interleave(state.cache.keys, state.cache.values))


class _RNNPrefill(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor) -> tuple[Tensor, ...]:
        logits, hidden = self.model.prefill(input_ids, None, 0)  # (B, V), (L, B, H) or (h, c)
        return (logits, *(hidden if isinstance(hidden, tuple) else (hidden,)))


class _RNNStep(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        logits, hidden = self.model.step(tokens, tuple(state) if len(state) == 2 else state[0])  # (B, V)
        return (logits, *(hidden if isinstance(hidden, tuple) else (hidden,)))


def _interleave(keys: list[Tensor], values: list[Tensor]) -> list[Tensor]:
    return [t for pair in zip(keys, values, strict=True) for t in pair]


@dataclasses.dataclass
class _Graph:
    module: nn.Module
    args: tuple[Tensor, ...]  # example inputs
    inputs: dict[str, dict[int, str]]  # name -> {axis: dynamic axis name}, in argument order
    outputs: dict[str, dict[int, str]]


def _graphs(model: nn.Module) -> dict[str, _Graph]:
    """The prefill and step graphs of `model` with example inputs and their named dynamic axes."""
    from seqlab.models.rnn_lm import RNNLanguageModel

    B, T, P = 2, 3, 4  # example sizes, distinct so that the tracer keeps the axes apart
    ids = torch.randint(0, model.vocab_size, (B, T))
    with torch.no_grad():
        logits, state = model.prefill(ids, None, P + 1 - T)
        for _ in range(P - T):
            logits, state = model.step(logits.argmax(-1), state)
    tokens = logits.argmax(-1)  # (B,)
    if isinstance(model, RNNLanguageModel):
        names = ["hidden", "cell"] if isinstance(state, tuple) else ["hidden"]
        hidden = list(state) if isinstance(state, tuple) else [state]
        past, present = ({f"{prefix}.{n}": {1: "batch"} for n in names} for prefix in ("past", "present"))
        return {"prefill": _Graph(_RNNPrefill(model), (ids,), {"input_ids": {0: "batch", 1: "prompt"}},
                                  {"logits": {0: "batch"}, **present}),
                "step": _Graph(_RNNStep(model), (tokens, *hidden), {"tokens": {0: "batch"}, **past},
                               {"logits": {0: "batch"}, **present})}
    cache = [t[:, :, :P] for t in _interleave(state.cache.keys, state.cache.values)]  # (B, nh, P, hs)
    prompt, batch = {0: "batch", 1: "prompt"}, {0: "batch"}

    def kv_state(prefix: str, length: str) -> dict[str, dict[int, str]]:
        layers = {f"{prefix}.{i}.{kind}": {0: "batch", 2: length} for i in range(model.n_layer) for kind in KV}
        return {f"{prefix}.key_valid": {0: "batch", 1: length}, f"{prefix}.position": batch, **layers}

    return {"prefill": _Graph(_TransformerPrefill(model), (ids, torch.ones(B, T, dtype=torch.long)),
                              {"input_ids": prompt, "attention_mask": prompt},
                              {"logits": batch, **kv_state("present", "prompt")}),
            "step": _Graph(_TransformerStep(model), (tokens, state.key_valid[:, :P], state.position, *cache),
                           {"tokens": batch, **kv_state("past", "past")},
                           {"logits": batch, **kv_state("present", "past_plus_1")})}


def _write_graphs(model: nn.Module, folder: Path, opset: int) -> dict[str, Any]:
    """Export prefill.onnx and step.onnx into `folder`; the manifest's description of them."""
    from seqlab.models.rnn_lm import RNNLanguageModel

    graphs = {}
    for name, graph in _graphs(model).items():
        path = folder / f"{name}.onnx"
        exporter = _export(graph, path, opset)
        graphs[name] = {"file": path.name, "exporter": exporter,
                        "inputs": _describe(graph.inputs, graph.args), "outputs": list(graph.outputs)}
    weights = _share_weights(folder, [g["file"] for g in graphs.values()])
    for g in graphs.values():
        g["sha256"] = sha256_file(folder / g["file"])
    if isinstance(model, RNNLanguageModel):
        shape = {"arch": "rnn_lm", "cell": model.cell, "n_layer": model.n_layer, "hidden_size": model.hidden_size,
                 "vocab_size": model.vocab_size, "max_length": None}
    else:
        shape = {"arch": "transformer_lm", "n_layer": model.n_layer, "vocab_size": model.vocab_size,
                 "max_length": model.max_length}
    return {"format": FORMAT, "version": FORMAT_VERSION, "model": shape, "graphs": graphs, "weights": weights,
            "opset": opset, "exporter": " and ".join(sorted({g["exporter"] for g in graphs.values()})),
            "int8": False, "seqlab": seqlab.__version__, "torch": torch.__version__}


def _share_weights(folder: Path, files: list[str]) -> dict[str, str]:
    """Move the graphs' large initializers into one file, WEIGHTS, each distinct tensor stored once: prefill and
    step hold the same weights, which would otherwise be in the folder twice. ONNX's external data: a tensor
    names the file, its offset (page-aligned, so onnxruntime can map it) and its length."""
    import onnx
    from onnx import numpy_helper

    stored: dict[bytes, tuple[int, int]] = {}  # sha256 of the bytes -> (offset, length)
    with open(folder / WEIGHTS, "wb") as out:
        for file in files:
            graph = onnx.load(str(folder / file))
            for tensor in graph.graph.initializer:
                raw = tensor.raw_data or numpy_helper.to_array(tensor).tobytes()
                if len(raw) < INLINE_BYTES:
                    continue
                key = hashlib.sha256(raw).digest()
                if key not in stored:
                    out.write(b"\0" * (-out.tell() % PAGE))
                    stored[key] = (out.tell(), len(raw))
                    out.write(raw)
                offset, length = stored[key]
                for field in ("raw_data", "float_data", "int32_data", "int64_data", "double_data"):
                    tensor.ClearField(field)
                tensor.data_location = onnx.TensorProto.EXTERNAL
                del tensor.external_data[:]
                for k, v in (("location", WEIGHTS), ("offset", str(offset)), ("length", str(length))):
                    tensor.external_data.add(key=k, value=v)
            onnx.save(graph, str(folder / file))
    return {"file": WEIGHTS, "sha256": sha256_file(folder / WEIGHTS)}


def _describe(inputs: dict[str, dict[int, str]], args: tuple[Tensor, ...]) -> list[dict[str, Any]]:
    return [{"name": name, "dtype": str(arg.dtype).removeprefix("torch."),
             "shape": [axes.get(i, size) for i, size in enumerate(arg.shape)]}
            for (name, axes), arg in zip(inputs.items(), args, strict=True)]


def _export(graph: _Graph, path: Path, opset: int) -> str:
    """Write one graph with torch's dynamo exporter, else the TorchScript one; returns which worked."""
    module = graph.module.eval()
    names = {"input_names": list(graph.inputs), "output_names": list(graph.outputs), "opset_version": opset}
    with _quiet_exporter(), torch.no_grad():
        try:
            program = torch.onnx.export(module, graph.args, dynamo=True, verbose=False, optimize=False,
                                        dynamic_shapes=_dynamic_shapes(graph), **names)
            _fold_weights(program.model)
            program.save(str(path))
            return "dynamo"
        except Exception as e:  # noqa: BLE001 - any failure of the new exporter: try the old one, then give up
            try:
                torch.onnx.export(module, graph.args, str(path), dynamo=False,
                                  dynamic_axes=graph.inputs | graph.outputs, **names)
            except Exception as old:  # noqa: BLE001
                raise SeqlabError(f"torch.onnx cannot export the {path.stem} graph: dynamo exporter: "
                                  f"{_first_line(e)}; TorchScript exporter: {_first_line(old)}") from None
            return "torchscript"


def _fold_weights(model: Any) -> None:
    """onnxscript's optimizer with no size limit on constant folding: what the exporter computes from the weights
    (a transposed Linear weight, the LSTM's gates reordered from PyTorch's i, f, g, o to ONNX's i, o, f, c) becomes
    an initializer, which quantize_dynamic can then quantize (onnxruntime would fold it at load anyway)."""
    import onnxscript.optimizer

    onnxscript.optimizer.optimize(model, input_size_limit=FOLD_LIMIT, output_size_limit=FOLD_LIMIT)


def _dynamic_shapes(graph: _Graph) -> tuple:
    """torch.export's dynamic_shapes for the graph's inputs: one entry per parameter of `forward`, the
    trailing *state / *past tensors as one tuple."""
    fixed = sum(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
                for p in inspect.signature(graph.module.forward).parameters.values())
    shapes = [{axis: torch.export.Dim.DYNAMIC for axis in axes} for axes in graph.inputs.values()]
    return (*shapes[:fixed], tuple(shapes[fixed:])) if len(shapes) > fixed else tuple(shapes)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """No progress lines, warnings or notes from torch.onnx or onnxruntime.quantization (which logs to the root
    logger): stderr is for seqlab's errors."""
    loggers = [logging.getLogger("torch.onnx"), logging.getLogger()]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


# ---------------------------------------------------------------- check, int8, hashes


@torch.no_grad()
def check_graphs(model: nn.Module, folder: Path, manifest: dict[str, Any] | None = None) -> float:
    """The largest |logit difference| between the folder's graphs (through the runtime adapter) and eager
    decoding: prefill of a left-padded batch of two prompts, then three greedy steps."""
    from seqlab.interop.onnx_runtime import load_onnx_model

    onnx_model = load_onnx_model(folder, manifest=manifest)
    generator = torch.Generator().manual_seed(0)
    T = min(6, model.max_length - 4) if model.max_length else 6
    ids = torch.randint(0, model.vocab_size, (2, T), generator=generator)
    mask = torch.ones(2, T, dtype=torch.long)
    mask[1, :2] = 0  # the second prompt is left-padded
    expected, state = model.prefill(ids, mask, 3)
    got, onnx_state = onnx_model.prefill(ids, mask, 3)
    worst = float((expected - got).abs().max())
    for _ in range(3):
        tokens = expected.argmax(-1)  # (2,)
        expected, state = model.step(tokens, state)
        got, onnx_state = onnx_model.step(tokens, onnx_state)
        worst = max(worst, float((expected - got).abs().max()))
    return worst


def _write_int8(folder: Path, manifest: dict[str, Any], model: nn.Module) -> None:
    """folder/int8/: the graphs with int8 weights (quantize_dynamic), the tokenizer and their manifest."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = folder / INT8_DIR
    target.mkdir()
    for name in GRAPHS:
        file = manifest["graphs"][name]["file"]
        with _quiet_exporter():
            quantize_dynamic(folder / file, target / file, weight_type=QuantType.QInt8)
    weights = _share_weights(target, [manifest["graphs"][name]["file"] for name in GRAPHS])
    graphs = {name: manifest["graphs"][name] | {"sha256": sha256_file(target / manifest["graphs"][name]["file"])}
              for name in GRAPHS}
    if (folder / TOKENIZER).is_file():
        shutil.copyfile(folder / TOKENIZER, target / TOKENIZER)
    int8 = manifest | {"graphs": graphs, "weights": weights, "int8": True}
    int8["check"] = {"max_abs_logit_diff": check_graphs(model, target, int8)}  # int8 rounding: ~1e-2, no limit
    write_json(target / MANIFEST, int8)

