"""int8 quantization of a trained model: int8 weights with one float scale per output channel.

Every weight matrix W (out, in) of a Linear, an Embedding and a recurrent layer (LSTM / GRU / RNN
W_ih, W_hh) is stored as

    q[o, i] = round(W[o, i] / s[o]) clamped to [-127, 127]   (int8)      s[o] = max_i |W[o, i]| / 127

(symmetric, per output channel: one row's outlier costs only that row its precision). Biases,
LayerNorms and activations stay fp32. A tied weight (an LM head tied to the token embedding) stays one
int8 tensor whose row scales serve both: a row of E is an output channel of the head.

Two methods compute with them (`METHODS`):

    dynamic       y = (q_x q^T) s_x s + b     x quantized at run time, int8 x int8 products with int32
                                              sums: up to 8 rows on seqlab's W8A8 kernel (x per row to
                                              int8, `seqlab.compress.gemv.int8_gemv_a8`), more on fbgemm's
                                              `quantized::linear_dynamic` (x per call to 7 bits), and
                                              torch's dynamic quantized LSTM / GRU for the recurrence
    weight-only   y = (x q^T) s + b           x stays float; products of up to 8 rows (decoding at batch 1,
                                              a beam of 4) run on seqlab's int8 kernel (`seqlab.compress.gemv`,
                                              x rounded per row to 16 bits), larger ones as fp32 on the
                                              dequantized weight

An Embedding row is dequantized on lookup (e[t] = q[t] s[t]) by both. Where the int8 kernels do not
exist (no fbgemm: a CUDA tensor, an ARM build) `dynamic` computes as `weight-only`; torch has no int8
Elman RNN, and `weight-only` recurrent layers dequantize their matrices once when first run, so for
those the int8 file saves disk, not time. Speed (docs/compress.md has the measurements): for a GPT-2
decoding a few rows, `dynamic`'s W8A8 kernel needs fewer instructions than `weight-only`'s, which shows
where the products are compute-bound (a beam of 4) more than at batch 1, where reading the weights bounds
both; at 64 rows fbgemm's `dynamic` is the faster; a 2 x 512 LSTM decodes 2.5-3.5x faster with `dynamic`
than fp32. The default (`default_method`) is weight-only for Transformer models, whose rows never depend on
one another (beyond 8 rows `dynamic` quantizes x with one scale for the whole batch, so a served request's
tokens would depend on the others'), dynamic for recurrent ones. Both stay within +0.2% of fp32's
perplexity.

The compiled decode step (`seqlab.decode.compiled`) keeps `dynamic`'s fbgemm product as one opaque op
(`int8_linear_dynamic`): Inductor can neither trace fbgemm's packed weight nor keep an int8 -> fp32
conversion (its freezing folds it into an fp32 constant, so compiled `weight-only` products of more than
8 rows run at fp32's speed); the kernels' ops `seqlab_cpu::int8_gemv` and `int8_gemv_a8` are called from
its C++ wrapper.

The saved weights file is ordinary safetensors (int8 `NAME` + fp32 `NAME_scale`); its metadata holds
the record `{"dtype": "int8", "method": ...}` under `RECORD_KEY`, which is how a loader knows to build
int8 modules (`quantize_model`) before loading the tensors.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import warnings
import weakref
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqlab.compress import gemv
from seqlab.errors import SeqlabError

METHODS = ("dynamic", "weight-only")
DTYPES = ("int8",)
# the faster method per architecture on a CPU (module docstring; docs/compress.md): seqlab's kernel for
# Transformers decoding a few rows, torch's int8 LSTM / GRU for recurrent models
DEFAULT_METHODS = {"transformer_lm": "weight-only", "seq2seq_transformer": "weight-only",
                   "rnn_lm": "dynamic", "seq2seq_rnn": "dynamic"}
RECORD_KEY = "seqlab.quantization"  # safetensors metadata: JSON {"dtype": "int8", "method": "dynamic"}


def default_method(arch: str) -> str:
    """The quantization method `seqlab quantize` uses for a model of architecture `arch` when none is named."""
    return DEFAULT_METHODS.get(arch, "dynamic")


def quantize_per_channel(w: Tensor) -> tuple[Tensor, Tensor]:
    """w (out, in) float -> q (out, in) int8, s (out,) fp32 with w ≈ q * s[:, None] (see the module docstring)."""
    w = w.detach().float()
    scale = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12)  # (out,); an all-zero row keeps a positive scale
    q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)  # (out, in)
    return q, scale


def _fbgemm_usable(x: Tensor) -> bool:
    return x.device.type == "cpu" and x.dtype == torch.float32 and "fbgemm" in torch.backends.quantized.supported_engines


def _version_key(*tensors: Tensor) -> tuple:
    """Changes when any tensor is replaced or written to (`load_state_dict` copies in place: the version moves)."""
    return tuple((t.device, t.data_ptr(), t._version) for t in tensors)


def _packed_weight(q: Tensor, scale: Tensor, bias: Tensor | None) -> Any:
    """fbgemm's prepacked int8 weight for q (out, in) with per-row scales (no zero points: symmetric)."""
    zero_points = torch.zeros(q.size(0), dtype=torch.long)
    with warnings.catch_warnings():  # torch marks its quantized tensors deprecated; fbgemm's kernels still need one
        warnings.simplefilter("ignore", UserWarning)
        qweight = torch._make_per_channel_quantized_tensor(q.cpu(), scale.cpu().double(), zero_points, 0)
        return torch.ops.quantized.linear_prepack(qweight, None if bias is None else bias.detach().cpu())


_PACKED: dict[int, tuple[weakref.ref, tuple, Any]] = {}  # id(weight) -> (weight, version key, packed weight)


@torch.library.custom_op("seqlab::int8_linear_dynamic", mutates_args=())
def int8_linear_dynamic(x: Tensor, weight: Tensor, scale: Tensor, bias: Tensor | None) -> Tensor:
    """`Int8Linear`'s dynamic product as one op Inductor calls as is (a compiled step cannot hold fbgemm's packed
    weight); the packed weight is cached per weight tensor (the compiled graph's frozen constants)."""
    key = _version_key(weight, scale, *(() if bias is None else (bias,)))
    entry = _PACKED.get(id(weight))
    if entry is None or entry[0]() is not weight or entry[1] != key:
        entry = (weakref.ref(weight, lambda _, i=id(weight): _PACKED.pop(i, None)), key,
                 _packed_weight(weight, scale, bias))
        _PACKED[id(weight)] = entry
    return torch.ops.quantized.linear_dynamic(x, entry[2], True)


@int8_linear_dynamic.register_fake
def _(x: Tensor, weight: Tensor, scale: Tensor, bias: Tensor | None) -> Tensor:
    return x.new_empty(*x.shape[:-1], weight.shape[0])


class Int8Linear(nn.Module):
    """y = x W^T + b with W int8 per output channel (see the module docstring for the two methods).

    Buffers `weight` (out, in) int8 and `weight_scale` (out,) fp32; `bias` (out,) fp32 or None, a frozen parameter.
    """

    def __init__(self, weight: Tensor, weight_scale: Tensor, bias: Tensor | None, method: str):
        super().__init__()
        if method not in METHODS:
            raise SeqlabError(f"unknown quantization method {method!r}; choose one of {', '.join(METHODS)}")
        self.out_features, self.in_features = weight.shape
        self.method = method
        self.register_buffer("weight", weight)
        self.register_buffer("weight_scale", weight_scale)
        # biases stay parameters (frozen): callers find a model's device from its first parameter
        self.bias = None if bias is None else nn.Parameter(bias.detach().float().clone(), requires_grad=False)
        self._packed: tuple[tuple, Any] | None = None  # (version key, fbgemm packed weight)
        if weight.device.type == "cpu":
            gemv.available()  # build seqlab's int8 kernels now, not while torch.compile traces the first step

    def forward(self, x: Tensor) -> Tensor:
        """x (..., in) -> (..., out)."""
        if self.method == "dynamic" and gemv.usable(x, self.in_features):  # a few rows: seqlab's W8A8 kernel
            return gemv.int8_gemv_a8(x, self.weight, self.weight_scale, self.bias)
        if self.method == "dynamic" and _fbgemm_usable(x):
            if torch.compiler.is_compiling():  # an opaque op in the compiled step, its packed weight cached
                return int8_linear_dynamic(x, self.weight, self.weight_scale, self.bias)
            # activations quantized per call (reduce_range: 7-bit, as torch's x86 dynamic quantization, so
            # CPUs without VNNI cannot saturate their 16-bit intermediate sums)
            return torch.ops.quantized.linear_dynamic(x, self._fbgemm_weight(), True)
        if self.method == "weight-only" and gemv.usable(x, self.in_features):  # a few rows: seqlab's kernel
            return gemv.int8_gemv(x, self.weight, self.weight_scale, self.bias)
        y = F.linear(x, self.weight.to(x.dtype)) * self.weight_scale.to(x.dtype)  # (..., out)
        return y if self.bias is None else y + self.bias.to(x.dtype)

    def forward_act(self, x: Tensor, activation: str) -> Tensor:
        """act(x W^T + b), act one of seqlab.modules.linear.FUSABLE (the fp32 Linear's fused form)."""
        from seqlab.modules.linear import FUSABLE

        return FUSABLE[activation][2](self(x))

    def _fbgemm_weight(self) -> Any:
        tensors = (self.weight, self.weight_scale) + (() if self.bias is None else (self.bias,))
        key = _version_key(*tensors)
        if self._packed is None or self._packed[0] != key:
            self._packed = (key, _packed_weight(self.weight, self.weight_scale, self.bias))
        return self._packed[1]

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8, method={self.method}"

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["_packed"] = None  # a cache of fbgemm objects, which cannot be deep-copied
        return state


class Int8Embedding(nn.Module):
    """e[t] = q[t] s[t]: an embedding table stored int8 per row, dequantized on lookup."""

    def __init__(self, weight: Tensor, weight_scale: Tensor):
        super().__init__()
        self.num_embeddings, self.embedding_dim = weight.shape
        self.register_buffer("weight", weight)
        self.register_buffer("weight_scale", weight_scale)

    def forward(self, idx: Tensor) -> Tensor:
        """idx (...) long -> (..., dim) fp32."""
        return F.embedding(idx, self.weight).float() * self.weight_scale[idx].unsqueeze(-1)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, int8"


class Int8RNN(nn.Module):
    """An nn.RNN / LSTM / GRU whose W_ih and W_hh matrices are stored int8 per row (biases fp32).

    Its state-dict names are the float module's (`weight_ih_l0`, `bias_hh_l1_reverse`, ...) plus a
    `_scale` per matrix. It runs through a module built from the int8 tensors when first called and
    rebuilt when they change: torch's dynamic quantized LSTM / GRU (fbgemm) for `dynamic` on a CPU, else
    the float module with the dequantized matrices. Calls and results are the float module's.
    """

    def __init__(self, rnn: nn.RNNBase, method: str):
        super().__init__()
        if method not in METHODS:
            raise SeqlabError(f"unknown quantization method {method!r}; choose one of {', '.join(METHODS)}")
        if getattr(rnn, "proj_size", 0):
            raise SeqlabError("int8 quantization does not support an LSTM with proj_size")
        self.method, self.mode = method, rnn.mode
        self.input_size, self.hidden_size, self.num_layers = rnn.input_size, rnn.hidden_size, rnn.num_layers
        self.bias, self.batch_first, self.bidirectional = rnn.bias, rnn.batch_first, rnn.bidirectional
        self.nonlinearity = getattr(rnn, "nonlinearity", "tanh")
        for name, p in rnn.named_parameters():
            if name.startswith("weight_"):
                q, scale = quantize_per_channel(p)
                self.register_buffer(name, q)
                self.register_buffer(f"{name}_scale", scale)
            else:  # a bias: a frozen parameter, as Int8Linear's
                self.register_parameter(name, nn.Parameter(p.detach().float().clone(), requires_grad=False))
        self._names = [name for name, _ in rnn.named_parameters()]
        self._runtime: tuple[tuple, nn.Module] | None = None

    def forward(self, x: Any, hidden: Any = None) -> tuple[Any, Any]:
        """Batch-first x (B, T, C) or a PackedSequence, as the float module takes them."""
        return self._module(x)(x, hidden)

    def _module(self, x: Any) -> nn.Module:
        data = x.data if isinstance(x, nn.utils.rnn.PackedSequence) else x
        int8_kernel = self.method == "dynamic" and self.mode in ("LSTM", "GRU") and _fbgemm_usable(data)
        key = (int8_kernel, *_version_key(*(getattr(self, n) for n in self._names)))
        if self._runtime is None or self._runtime[0] != key:
            self._runtime = (key, self._dynamic_module() if int8_kernel else self._float_module(data.device))
        return self._runtime[1]

    def _float_module(self, device: torch.device) -> nn.RNNBase:
        kind = {"LSTM": nn.LSTM, "GRU": nn.GRU}.get(self.mode)
        extra = {} if kind is not None else {"nonlinearity": self.nonlinearity}
        rnn = (kind or nn.RNN)(self.input_size, self.hidden_size, self.num_layers, bias=self.bias,
                               batch_first=self.batch_first, bidirectional=self.bidirectional, device=device, **extra)
        with torch.no_grad():
            for name in self._names:
                value = getattr(self, name)
                if name.startswith("weight_"):
                    value = value.float() * getattr(self, f"{name}_scale")[:, None]
                getattr(rnn, name).copy_(value)
        return rnn.eval()

    def _dynamic_module(self) -> nn.Module:
        from torch.ao.nn.quantized.dynamic import GRU, LSTM
        from torch.ao.nn.quantized.dynamic.modules.rnn import PackedParameter

        kind = LSTM if self.mode == "LSTM" else GRU
        with warnings.catch_warnings():  # its constructor makes (deprecated) quantized tensors, replaced below
            warnings.simplefilter("ignore", UserWarning)
            module = kind(self.input_size, self.hidden_size, self.num_layers, True, self.batch_first, 0.0,
                          self.bidirectional, torch.qint8)
        cells = []
        for layer in range(self.num_layers):
            for suffix in ("", "_reverse") if self.bidirectional else ("",):
                parts = {}
                for kind_ in ("ih", "hh"):
                    weight, bias = f"weight_{kind_}_l{layer}{suffix}", f"bias_{kind_}_l{layer}{suffix}"
                    b = getattr(self, bias) if self.bias else torch.zeros(getattr(self, weight).size(0))
                    parts[kind_] = (_packed_weight(getattr(self, weight), getattr(self, f"{weight}_scale"), b), b.cpu())
                cells.append(PackedParameter(torch.ops.quantized.make_quantized_cell_params_dynamic(
                    parts["ih"][0], parts["hh"][0], parts["ih"][1], parts["hh"][1], True)))
        module._all_weight_values = nn.ModuleList(cells)
        return module.eval()

    def extra_repr(self) -> str:
        return (f"{self.mode}({self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"bidirectional={self.bidirectional}), int8, method={self.method}")

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["_runtime"] = None
        return state


def quantize_model(model: nn.Module, method: str) -> dict[str, int]:
    """Replace, in place, every Linear, Embedding and RNN / LSTM / GRU of `model` with its int8 form
    (quantized from its current weights); returns how many of each kind were replaced.

    A tensor shared by two modules (tied embeddings) is quantized once and stays shared. Loading an int8
    run calls this on a freshly built model, then loads the stored int8 tensors over it.
    """
    if method not in METHODS:
        raise SeqlabError(f"unknown quantization method {method!r}; choose one of {', '.join(METHODS)}")
    shared: dict[int, tuple[Tensor, Tensor]] = {}  # id(float weight) -> (q, scale)

    def int8(w: Tensor) -> tuple[Tensor, Tensor]:
        if id(w) not in shared:
            shared[id(w)] = quantize_per_channel(w)
        return shared[id(w)]

    counts = {"linear": 0, "embedding": 0, "rnn": 0}
    for parent in list(model.modules()):
        for name, child in list(parent._modules.items()):  # not named_children(): it skips a module's second name
            if isinstance(child, nn.Linear):
                new: nn.Module = Int8Linear(*int8(child.weight), child.bias, method)
                counts["linear"] += 1
            elif isinstance(child, nn.Embedding):
                new = Int8Embedding(*int8(child.weight))
                counts["embedding"] += 1
            elif isinstance(child, nn.RNNBase):
                new = Int8RNN(child, method)
                counts["rnn"] += 1
            else:
                continue
            setattr(parent, name, new.to(_device_of(child)))
    return counts


def is_int8(model: nn.Module) -> bool:
    """Whether `model` holds int8 modules (it was quantized, or loaded from an int8 run)."""
    return any(isinstance(m, (Int8Linear, Int8Embedding, Int8RNN)) for m in model.modules())


def _device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def record_of(weights: str | Path) -> dict[str, str] | None:
    """The int8 record stored in a weights file's metadata, or None for float weights (or a file that cannot
    be read: loading it reports why)."""
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="pt") as f:
            raw = (f.metadata() or {}).get(RECORD_KEY)
    except Exception:  # a damaged file: `load_weights` names the damage
        return None
    if raw is None:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        raise SeqlabError(f"{weights}: its quantization record {raw!r} is not JSON; it is damaged") from None
    if not isinstance(record, dict) or record.get("dtype") not in DTYPES or record.get("method") not in METHODS:
        raise SeqlabError(f"{weights}: unknown quantization record {raw!r} (written by a newer seqlab?)")
    return record


def quantize_run(source: str | Path, out: str | Path, method: str | None = None, dtype: str = "int8",
                 checkpoint: str = "best") -> dict[str, Any]:
    """Write an int8 copy of the run `source` as the new run directory `out`; returns a summary (sizes, counts).

    `out` gets the source's config.yaml, tokenizer.json and fingerprint.json as they are, a new run.json
    (naming the source and the method) and model.safetensors with the int8 weights and their record. It is
    written under a temporary name and renamed into place, so `out` is either complete or absent. `method`
    None: `default_method` of the run's architecture.
    """
    from seqlab.checkpoint import save_weights
    from seqlab.models.loading import WHICH, load_model_from_run
    from seqlab.runs import RunDir, open_run

    start = time.perf_counter()
    if method is not None and method not in METHODS:
        raise SeqlabError(f"unknown --method {method!r}; choose one of {', '.join(METHODS)}")
    if dtype not in DTYPES:
        raise SeqlabError(f"unknown --dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if checkpoint not in WHICH:
        raise SeqlabError(f"unknown checkpoint {checkpoint!r}; choose one of {', '.join(WHICH)}")
    if (Path(source) / "config.json").is_file() and not (Path(source) / "config.yaml").is_file():
        raise SeqlabError(f"{str(source)!r} is a `seqlab seqgan train` run; its generator is the run "
                          f"{str(Path(source) / 'lm')!r}: quantize that")
    run = open_run(source)
    weights = run.best if checkpoint == "best" and run.best.is_file() else run.model
    if (done := record_of(weights)) is not None:
        raise SeqlabError(f"{run.path} is already an {done['dtype']} run (method {done['method']}); "
                          "quantize the float run it came from")
    target = Path(out)
    if target.exists() or target.is_symlink():
        raise SeqlabError(f"--out {str(target)!r} already exists; choose a new directory (or remove it first)")
    model, _, config = load_model_from_run(run.path, "cpu", checkpoint)
    method = method or default_method(config.model.arch)
    counts = quantize_model(model, method)
    record = {"dtype": dtype, "method": method}
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name[:64]}.", suffix=".tmp", dir=target.parent))
    try:
        new = RunDir(staging)
        for name in ("config.yaml", "tokenizer.json", "fingerprint.json"):
            if (run.path / name).is_file():
                _copy_file(run.path / name, staging / name)
        save_weights(model, new.model, metadata={RECORD_KEY: json.dumps(record)})
        new.write_info(config.seed, {"quantized_from": str(run.path.resolve()), "quantized_checkpoint": weights.name,
                                     "quantization": record})
        if target.exists() or target.is_symlink():  # appeared while we wrote: never replace it
            raise SeqlabError(f"--out {str(target)!r} appeared while quantizing; choose a new directory")
        staging.chmod(0o777 & ~_umask())  # mkdtemp's 0700 would hide the run from others
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    source_bytes, int8_bytes = weights.stat().st_size, RunDir(target).model.stat().st_size
    return {"run": str(target), "source": str(run.path), "checkpoint": weights.name, "arch": config.model.arch,
            "dtype": dtype, "method": method, "quantized": counts, "source_bytes": source_bytes,
            "int8_bytes": int8_bytes, "smaller": round(source_bytes / int8_bytes, 2),
            "seconds": round(time.perf_counter() - start, 2)}


def _copy_file(source: Path, target: Path) -> None:
    from seqlab.io import atomic_open

    with atomic_open(target, "wb") as f:
        f.write(source.read_bytes())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
