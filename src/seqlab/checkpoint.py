"""Checkpoints without pickle: tensors in safetensors, everything else in JSON.

`save_state(path, obj)` stores any nest of dicts / lists / tuples / scalars / strings / tensors
(an optimizer's `state_dict()`, RNG states, a data position) as `path.safetensors` + `path.json`;
`load_state(path)` rebuilds it. Both files are written atomically, and the JSON (written second)
names a token stored in the tensors file's metadata, so a crash between the two renames is detected
instead of mixing two checkpoints.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from seqlab.errors import SeqlabError
from seqlab.io import atomic_path, write_json


def save_weights(model: torch.nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Save a module's parameters and buffers atomically; a tied weight (one tensor under several names)
    is stored once, under its first name.

    Weights that are views into one shared buffer (cuDNN flattens an LSTM's or GRU's weights on a GPU)
    are stored as tensors of their own: safetensors' `save_model` refuses them.
    """
    tensors: dict[str, torch.Tensor] = {}
    stored: set[tuple] = set()
    for name, t in _unwrap(model).state_dict().items():
        key = _identity(t)
        if key in stored:
            continue
        stored.add(key)
        tensors[name] = _own(t)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_weights(model: torch.nn.Module, path: str | Path, strict: bool = True) -> None:
    """Copy the weights at `path` into `model` (on any device); a tied weight may be stored under any
    one of its names (files written by safetensors' `save_model` keep whichever it chose)."""
    path = Path(path)
    if not path.is_file():
        raise SeqlabError(f"no weights at {path}")
    module = _unwrap(model)
    stored = load_file(str(path))
    expected = module.state_dict()
    ties: dict[tuple, list[str]] = {}
    for name, t in expected.items():
        ties.setdefault(_identity(t), []).append(name)
    for names in ties.values():
        source = next((n for n in names if n in stored), None)
        if source is not None:
            for n in names:
                stored.setdefault(n, stored[source])
    missing, unexpected = sorted(set(expected) - set(stored)), sorted(set(stored) - set(expected))
    if strict and (missing or unexpected):
        raise SeqlabError(f"{path} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for name in sorted(set(expected) & set(stored)):
        if stored[name].shape != expected[name].shape:
            raise SeqlabError(f"{path} does not match the model: {name} has shape {tuple(stored[name].shape)}, "
                              f"the model {tuple(expected[name].shape)}")
    module.load_state_dict({k: v for k, v in stored.items() if k in expected}, strict=False)


def _own(t: torch.Tensor) -> torch.Tensor:
    """A contiguous CPU copy: safetensors stores no two tensors that share memory."""
    return t.detach().to("cpu", copy=True).contiguous()


def _identity(t: torch.Tensor) -> tuple:
    """Equal for two names of one tied tensor (same memory, shape and layout); unique for an empty one."""
    if t.numel() == 0:
        return (id(t),)
    return (t.device, t.data_ptr(), t.dtype, tuple(t.shape), t.stride())


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module under DDP / torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def save_state(path: str | Path, obj: Any) -> None:
    """Store a nest of containers, scalars and tensors as `path.safetensors` + `path.json`."""
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    tree = _flatten(obj, tensors)
    token = uuid.uuid4().hex
    with atomic_path(path.with_suffix(".safetensors")) as tmp:
        save_file({k: _own(v) for k, v in tensors.items()}, str(tmp), metadata={"token": token})
    write_json(path.with_suffix(".json"), {"token": token, "tree": tree}, indent=None)


def load_state(path: str | Path) -> Any:
    path = Path(path)
    jpath, tpath = path.with_suffix(".json"), path.with_suffix(".safetensors")
    if not jpath.is_file() or not tpath.is_file():
        raise SeqlabError(f"no checkpoint state at {path} (expected {jpath.name} and {tpath.name})")
    meta = json.loads(jpath.read_text(encoding="utf-8"))
    with safe_open(str(tpath), framework="pt") as f:
        if (f.metadata() or {}).get("token") != meta["token"]:
            raise SeqlabError(f"{tpath} and {jpath.name} come from different checkpoints (interrupted save?)")
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return _unflatten(meta["tree"], tensors)


def _flatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {"__dict__": [[_flatten(k, tensors), _flatten(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_flatten(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_flatten(v, tensors) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint")


def _unflatten(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(tree, dict):
        if "__tensor__" in tree:
            return tensors[tree["__tensor__"]]
        if "__tuple__" in tree:
            return tuple(_unflatten(v, tensors) for v in tree["__tuple__"])
        return {_unflatten(k, tensors): _unflatten(v, tensors) for k, v in tree["__dict__"]}
    if isinstance(tree, list):
        return [_unflatten(v, tensors) for v in tree]
    return tree
