"""Decoding with onnxruntime: an exported ONNX folder as a `seqlab.decode.state.DecoderModel`.

    model = load_onnx_model("runs/shakespeare/onnx")        # or .../onnx/int8
    out = seqlab.decode.generate(model, input_ids, max_new_tokens=50, num_beams=4)

The adapter runs the folder's prefill and step graphs (seqlab.interop.onnx) in onnxruntime sessions on the
CPU and hands torch tensors back, so greedy search, beam search, sampling, the processors and streaming are
seqlab's one decoding engine, unchanged; only the model's arithmetic is onnxruntime's. States:

    transformer_lm   OnnxKVState: key_valid (B, P) bool, position (B,), keys / values per layer (B, nh, P, hs);
                     P grows by one per step (each step's graph appends to the cache it is given)
    rnn_lm           the hidden state (L, B, H), or (h, c) for the LSTM, as the eager model's

Arrays pass between torch and onnxruntime without copies (numpy views of contiguous CPU tensors).
`load_onnx_run(run, folder)` is what `seqlab generate --engine onnxruntime` calls: it checks that the folder
is whole (each graph's sha256) and was exported from this run's weights and tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from seqlab.errors import SeqlabError
from seqlab.interop.onnx import FORMAT, FORMAT_VERSION, GRAPHS, KV, MANIFEST, TOKENIZER, require
from seqlab.io import sha256_file


@dataclass
class OnnxKVState:
    """A Transformer's decoding state between onnxruntime calls: every tensor's first axis is the batch."""

    key_valid: Tensor  # (B, P) bool: the cached position holds a real (non-padding) token
    position: Tensor  # (B,) int64: position id of the next token
    cache: list[Tensor]  # 2 * L tensors (B, nh, P, hs): layer 0's keys, its values, layer 1's keys, ...


class OnnxLM:
    """The prefill and step graphs of an ONNX folder behind the decoding protocol (seqlab.decode.state)."""

    is_encoder_decoder = False
    capturable_step = False  # onnxruntime runs the step; there is nothing for a CUDA graph to record

    def __init__(self, folder: Path, manifest: dict[str, Any], threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: stderr is for seqlab's messages
        self.folder, self.manifest = folder, manifest
        self._device_marker = torch.empty(0)
        self.sessions = {}
        for name in GRAPHS:
            path = folder / manifest["graphs"][name]["file"]
            try:
                self.sessions[name] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types for bad files
                raise SeqlabError(f"onnxruntime cannot load {path}: {str(e).strip().splitlines()[0]}; "
                                  "export the run again (seqlab export-onnx)") from None
        self.outputs = {name: [o.name for o in s.get_outputs()] for name, s in self.sessions.items()}
        shape = manifest["model"]
        self.arch, self.vocab_size, self.max_length = shape["arch"], shape["vocab_size"], shape["max_length"]
        self.int8 = bool(manifest.get("int8"))

    training = False

    def parameters(self) -> Iterator[Tensor]:
        """One empty CPU tensor, no weights: the decoding engine and the evaluators take the device of a model's
        first parameter for their tensors, and onnxruntime runs on the CPU."""
        return iter((self._device_marker,))

    def eval(self) -> OnnxLM:
        return self

    def __call__(self, idx: Tensor) -> Tensor:
        """Teacher-forced logits (B, T, V) for token ids (B, T), as `model(idx)` gives them: for perplexity
        (seqlab.eval). The folder has no full-sequence graph, so position t's logits come from the step graph
        after tokens 0..t (prefill of the first token, then one step per token): exact, but T graph calls."""
        logits, state = self.prefill(idx[:, :1], None, 0)  # (B, V)
        out = [logits]
        for t in range(1, idx.shape[1]):
            logits, state = self.step(idx[:, t], state)
            out.append(logits)
        return torch.stack(out, dim=1)  # (B, T, V)

    def _run(self, graph: str, feed: dict[str, Tensor]) -> list[Tensor]:
        arrays = {name: t.contiguous().numpy() for name, t in feed.items()}
        return [torch.from_numpy(a) for a in self.sessions[graph].run(self.outputs[graph], arrays)]

    # ------------------------------------------------------------------ the decoding protocol

    def prefill(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                max_new_tokens: int = 0) -> tuple[Tensor, Any]:
        """The prompt (B, T), left-padded where attention_mask is 0 -> logits (B, V) for the next token, state."""
        if self.max_length is not None and input_ids.shape[1] + max_new_tokens > self.max_length:
            raise SeqlabError(f"prompt of {input_ids.shape[1]} tokens + {max_new_tokens} new tokens exceeds the "
                              f"model's context length {self.max_length}")
        if self.arch == "transformer_lm":
            mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.long()
            logits, key_valid, position, *cache = self._run("prefill", {"input_ids": input_ids,
                                                                       "attention_mask": mask})
            return logits, OnnxKVState(key_valid, position, cache)
        if attention_mask is None or bool(attention_mask.all()):
            logits, *hidden = self._run("prefill", {"input_ids": input_ids})
            return logits, _rnn_state(hidden)
        return self._prefill_rnn_padded(input_ids, attention_mask.bool())

    def _prefill_rnn_padded(self, input_ids: Tensor, real: Tensor) -> tuple[Tensor, Any]:
        """Left-padded prompts of a recurrent LM: the rows of each prompt length together, without their padding
        (a recurrent state must never see a padding token; the eager model packs the sequences instead)."""
        lengths = real.sum(1)  # (B,)
        if bool((lengths == 0).any()):
            raise SeqlabError("every prompt needs at least one token (an attention_mask row is all zeros)")
        logits, hidden = None, None
        for length in lengths.unique().tolist():
            rows = (lengths == length).nonzero()[:, 0]  # (b,)
            part_logits, *part_hidden = self._run("prefill", {"input_ids": input_ids[rows, -length:]})
            if logits is None:
                logits = part_logits.new_empty(len(lengths), part_logits.shape[1])  # (B, V)
                hidden = [h.new_empty(h.shape[0], len(lengths), h.shape[2]) for h in part_hidden]  # (L, B, H)
            logits[rows] = part_logits
            for whole, part in zip(hidden, part_hidden, strict=True):
                whole[:, rows] = part
        return logits, _rnn_state(hidden)

    def step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        """Feed tokens (B,) -> logits (B, V) and the next state (a new object; the given one is left as it was)."""
        if self.arch == "transformer_lm":
            feed = {"tokens": tokens, "past.key_valid": state.key_valid, "past.position": state.position}
            feed |= {f"past.{i // 2}.{KV[i % 2]}": t for i, t in enumerate(state.cache)}
            logits, key_valid, position, *cache = self._run("step", feed)
            if self.max_length is not None and key_valid.shape[1] > self.max_length:
                raise SeqlabError(f"the sequence is longer than the model's context length {self.max_length}")
            return logits, OnnxKVState(key_valid, position, cache)
        hidden = list(state) if isinstance(state, tuple) else [state]
        names = ["past.hidden", "past.cell"][:len(hidden)]
        logits, *hidden = self._run("step", {"tokens": tokens, **dict(zip(names, hidden, strict=True))})
        return logits, _rnn_state(hidden)

    def reorder_state(self, state: Any, index: Tensor) -> Any:
        """Rows `index` (B',) of the batch (beam search's back-pointers, or expanding each input into beams)."""
        if isinstance(state, OnnxKVState):
            return OnnxKVState(state.key_valid.index_select(0, index), state.position.index_select(0, index),
                               [t.index_select(0, index) for t in state.cache])
        if isinstance(state, tuple):
            return tuple(s.index_select(1, index) for s in state)
        return state.index_select(1, index)

    def merge_states(self, a: Any, b: Any) -> Any:
        """Rows of `a`, then rows of `b` (continuous batching). The Transformer's caches are aligned at their
        ends: the shorter one gets invalid positions in front (positions are per row, so nothing changes)."""
        if isinstance(a, OnnxKVState):
            P = max(a.key_valid.shape[1], b.key_valid.shape[1])
            return OnnxKVState(torch.cat([_left_pad(a.key_valid, P, 1), _left_pad(b.key_valid, P, 1)]),
                               torch.cat([a.position, b.position]),
                               [torch.cat([_left_pad(x, P, 2), _left_pad(y, P, 2)]) for x, y in
                                zip(a.cache, b.cache, strict=True)])
        if isinstance(a, tuple):
            return tuple(torch.cat([x, y], dim=1) for x, y in zip(a, b, strict=True))
        return torch.cat([a, b], dim=1)


def _rnn_state(hidden: list[Tensor]) -> Tensor | tuple[Tensor, Tensor]:
    return tuple(hidden) if len(hidden) == 2 else hidden[0]


def _left_pad(t: Tensor, length: int, dim: int) -> Tensor:
    """t with zeros (False) in front along `dim` up to `length`."""
    missing = length - t.shape[dim]
    if missing == 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim=dim)


# ---------------------------------------------------------------- loading and checking a folder


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The folder's manifest, after checking it is a seqlab ONNX folder whose graphs and weights are whole."""
    import json

    folder = Path(folder)
    if not folder.is_dir():
        raise SeqlabError(f"{folder} is not a directory; export the run first: seqlab export-onnx RUN --out {folder}")
    path = folder / MANIFEST
    if not path.is_file():
        raise SeqlabError(f"{folder} is not an ONNX folder from seqlab export-onnx (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        ok = (manifest.get("format") == FORMAT and all(g in manifest["graphs"] for g in GRAPHS)
              and "file" in manifest["weights"])
    except (ValueError, UnicodeDecodeError, AttributeError, KeyError, TypeError):
        ok = False
    if not ok:
        raise SeqlabError(f"{path} is damaged or not written by seqlab export-onnx; export the run again")
    if manifest.get("version") != FORMAT_VERSION:
        raise SeqlabError(f"{folder} is in ONNX folder format version {manifest.get('version')}; this seqlab reads "
                          f"version {FORMAT_VERSION}: export the run again")
    for entry in [manifest["graphs"][name] for name in GRAPHS] + [manifest["weights"]]:
        path = folder / entry["file"]
        if not path.is_file() or sha256_file(path) != entry["sha256"]:
            state = "missing" if not path.is_file() else "damaged (its sha256 is not the manifest's)"
            raise SeqlabError(f"{path} is {state}; export the run again (seqlab export-onnx)")
    return manifest


def load_onnx_model(folder: str | Path, manifest: dict[str, Any] | None = None, threads: int | None = None) -> OnnxLM:
    """The folder's graphs as a DecoderModel (see the module docstring); `threads`: onnxruntime's intra-op
    threads (default: torch's)."""
    require("decoding with onnxruntime", ("onnxruntime",))
    folder = Path(folder)
    return OnnxLM(folder, manifest if manifest is not None else read_manifest(folder), threads)


def load_onnx_run(run_dir: str | Path, folder: str | Path | None = None) -> tuple[OnnxLM, Any, Any]:
    """(adapter, tokenizer, config) for the run's ONNX folder (default RUN/onnx), like load_model_from_run."""
    from seqlab.data.tokenizers import load_tokenizer
    from seqlab.runs import open_run

    require("--engine onnxruntime", ("onnxruntime",))
    run = open_run(run_dir)
    if folder is None:
        folder = run.path / "onnx"
        if not folder.is_dir():
            raise SeqlabError(f"{run_dir} has no ONNX export ({folder}): run `seqlab export-onnx {run_dir}` first, "
                              "or pass --onnx DIR")
    manifest = read_manifest(folder)
    source = manifest.get("source", {})
    weights = run.path / source.get("weights", "model.safetensors")
    if (not weights.is_file() or sha256_file(weights) != source.get("weights_sha256")
            or sha256_file(run.tokenizer) != source.get("tokenizer_sha256")):
        raise SeqlabError(f"{folder} was not exported from {run_dir}'s current weights and tokenizer (another run, "
                          f"or the run was trained since): seqlab export-onnx {run_dir} --out NEW_DIR")
    config = run.read_config()
    tokenizer = load_tokenizer(Path(folder) / TOKENIZER)
    return load_onnx_model(folder, manifest), tokenizer, config
