"""Checkpoints without pickle: tensors in safetensors, everything else in JSON.

`save_state(path, obj)` stores any nest of dicts / lists / tuples / scalars / strings / tensors
(an optimizer's `state_dict()`, RNG states, a data position) as `path.safetensors` + `path.json`;
`load_state(path)` rebuilds it. Both files are written atomically, and the JSON (written second)
names a token stored in the tensors file's metadata, so a crash between the two renames is detected
instead of mixing two checkpoints.

Reading is validated: a damaged file (empty, truncated, random bytes, a broken header, a JSON that
is not a state) is a one-line `SeqlabError` naming the file and what to do, never safetensors' own
exception; weights that cannot be the model's (an integer tensor where the model has floating point
weights, any NaN or infinity) are refused too.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from seqlab.errors import SeqlabError
from seqlab.io import atomic_path, write_json

DAMAGED_HINT = "restore it from a copy or train again"


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


def load_weights(model: torch.nn.Module, path: str | Path, strict: bool = True, hint: str = DAMAGED_HINT) -> None:
    """Copy the weights at `path` into `model` (on any device); a tied weight may be stored under any
    one of its names (files written by safetensors' `save_model` keep whichever it chose).

    A damaged file, or weights that cannot be the model's (see `check_weights`), is a `SeqlabError`
    ending in `hint` (what the user can do instead)."""
    path = Path(path)
    if not path.is_file():
        raise SeqlabError(f"no weights at {path}")
    module = _unwrap(model)
    stored, metadata = read_tensors(path, hint)
    expected = module.state_dict()
    from seqlab.compress.quantize import RECORD_KEY

    if RECORD_KEY in metadata and not any(t.dtype == torch.int8 for t in expected.values()):
        raise SeqlabError(f"{path} holds int8 weights (seqlab quantize), which a float model cannot load or train; "
                          "use the run they were quantized from")
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
    check_weights(str(path), stored, expected, hint)
    module.load_state_dict({k: v for k, v in stored.items() if k in expected}, strict=False)


def check_weights(source: str, stored: dict[str, torch.Tensor], expected: dict[str, torch.Tensor],
                  hint: str = DAMAGED_HINT) -> None:
    """Refuse weights that would load silently but wrongly: `load_state_dict` casts an int64 tensor into
    a float weight (and a float into an integer buffer), and copies NaN / infinity as they are.

    `source` names where `stored` came from.
    """
    for name in sorted(stored.keys() & expected.keys()):
        got, want = stored[name], expected[name]
        if got.is_floating_point() != want.is_floating_point():
            raise SeqlabError(f"{source}: tensor {name!r} is {_dtype(got)} but the model's is {_dtype(want)} "
                              f"(not this model's weights, or damaged); {hint}")
        if got.is_floating_point() and not _all_finite(got):
            raise SeqlabError(f"{source}: tensor {name!r} holds NaN or infinite values (training diverged, or "
                              f"the file is damaged); {hint}")


def _all_finite(t: torch.Tensor) -> bool:
    """Whether every element is finite. NaN and infinity propagate through a sum, so a finite sum proves it
    in one pass without a mask the size of `t`; a non-finite sum is NaN/inf or an overflow (fp16 sums
    past 65504), which the exact check tells apart."""
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


class _Damage(Exception):
    """Why a file cannot be read (a reason, completed into a `SeqlabError` by the caller)."""


def read_tensors(path: str | Path, hint: str = DAMAGED_HINT) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors file; a damaged file is a `SeqlabError` naming it and ending in `hint`."""
    path = Path(path)
    try:
        header = _valid_header(path, hint)
        tensors = load_file(str(path))
    except SafetensorError as e:  # what the header check above cannot see (a tensor's size against its dtype)
        raise SeqlabError(f"{path} is damaged ({_first_line(e)}); {hint}") from e
    except OSError as e:
        raise SeqlabError(f"cannot read {path}: {e.strerror or e}") from e
    return tensors, header.get("__metadata__") or {}


def _valid_header(path: Path, hint: str = "") -> dict[str, Any]:
    """`_header(path)`; a damaged file is a `SeqlabError` naming it (ending in `hint`, if any)."""
    try:
        return _header(path)
    except _Damage as e:
        raise SeqlabError(f"{path} is damaged: {e}" + (f"; {hint}" if hint else "")) from e


def _header(path: Path) -> dict[str, Any]:
    """The header of a safetensors file (8-byte little-endian length, then JSON), checked against the
    file's size without reading any tensor: the tensors' data offsets must cover the rest exactly."""
    size = path.stat().st_size
    if size < 8:
        raise _Damage("it is empty" if size == 0 else f"it holds only {size} bytes")
    with path.open("rb") as f:
        length = int.from_bytes(f.read(8), "little")
        if length > size - 8:
            raise _Damage(f"its header length ({length} bytes) exceeds the file's {size} bytes "
                          "(truncated, or not a safetensors file)")
        raw = f.read(length)
    try:
        header = json.loads(raw)
    except ValueError:  # JSONDecodeError or UnicodeDecodeError
        raise _Damage("its header is not valid JSON (not a safetensors file?)") from None
    if not isinstance(header, dict):
        raise _Damage("its header is not a JSON object")
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict):
                raise _Damage("its header's __metadata__ is not a JSON object")
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            raise _Damage(f"its header entry for tensor {name!r} is malformed")
        end = max(end, offsets[1])
    data = size - 8 - length
    if end > data:
        raise _Damage(f"it is truncated: its tensors need {end} bytes of data, the file holds {data}")
    if end < data:
        raise _Damage(f"{data - end} stray bytes follow its last tensor")
    return header


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


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


def load_state(path: str | Path, hint: str = DAMAGED_HINT) -> Any:
    """Rebuild what `save_state(path, ...)` stored; a damaged or mismatched pair is a `SeqlabError`."""
    path = Path(path)
    jpath, tpath = path.with_suffix(".json"), path.with_suffix(".safetensors")
    if not jpath.is_file() or not tpath.is_file():
        raise SeqlabError(f"no checkpoint state at {path} (expected {jpath.name} and {tpath.name})")
    meta = _state_json(jpath, hint)
    tensors, metadata = read_tensors(tpath, hint)
    _check_token(metadata, meta, tpath, jpath, hint)
    try:
        return _unflatten(meta["tree"], tensors)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise SeqlabError(f"{jpath} does not describe the tensors in {tpath.name} ({type(e).__name__}: "
                          f"{_first_line(e)}); {hint}") from e


def verify_state(path: str | Path, tensors_file: str | Path | None = None) -> None:
    """Check, without loading a tensor, that `path.json` is a complete state whose token is in the header
    of a complete `tensors_file` (default `path.safetensors`); a `SeqlabError` says what is wrong."""
    path = Path(path)
    jpath = path.with_suffix(".json")
    tpath = Path(tensors_file) if tensors_file is not None else path.with_suffix(".safetensors")
    for p in (jpath, tpath):
        if not p.is_file():
            raise SeqlabError(f"{p} is missing")
    meta = _state_json(jpath)
    header = _valid_header(tpath)
    _check_token(header.get("__metadata__") or {}, meta, tpath, jpath)


def commit_state(path: str | Path, obj: Any) -> None:
    """`save_state` to `<path>_next.*`, then move it into place: a kill at any moment leaves the old or
    the new state whole (the pending JSON, written last, marks it complete; `finish_commit` finishes an
    interrupted move)."""
    path = Path(path)
    save_state(pending_path(path), obj)
    finish_commit(path)


def pending_path(path: str | Path) -> Path:
    """Where `commit_state(path, ...)` writes before moving into place: `<path>_next`."""
    path = Path(path)
    return path.with_name(path.name + "_next")


def pending_problem(path: str | Path) -> str | None:
    """Why the pending state of `path` cannot be promoted (None: it can). After a kill between the two
    moves its tensors are already in place, so the pending JSON is checked against those."""
    path = Path(path)
    pending = pending_path(path)
    if not pending.with_suffix(".json").is_file():
        return f"no {pending.name}.json"
    tensors = pending.with_suffix(".safetensors")
    if not tensors.is_file():
        tensors = path.with_suffix(".safetensors")
    try:
        verify_state(pending, tensors)
    except SeqlabError as e:
        return str(e)
    return None


def finish_commit(path: str | Path) -> None:
    """Move a completely written pending state of `path` into place; drop an incomplete one, and a
    damaged one with a one-line warning (the last good state is kept)."""
    path = Path(path)
    pending = pending_path(path)
    if not pending.with_suffix(".json").is_file():  # killed before its JSON, written last, was in place
        pending.with_suffix(".safetensors").unlink(missing_ok=True)
        return
    problem = pending_problem(path)
    if problem is not None:
        print(f"seqlab: warning: discarding the damaged pending checkpoint {pending}.* ({problem}); "
              f"using the last good one, {path.name}.*", file=sys.stderr)
        pending.with_suffix(".safetensors").unlink(missing_ok=True)
        pending.with_suffix(".json").unlink(missing_ok=True)
        return
    if pending.with_suffix(".safetensors").is_file():
        os.replace(pending.with_suffix(".safetensors"), path.with_suffix(".safetensors"))
    os.replace(pending.with_suffix(".json"), path.with_suffix(".json"))


def _state_json(jpath: Path, hint: str = "") -> dict[str, Any]:
    """The JSON half of a state: an object with a token and a tree."""
    then = f"; {hint}" if hint else ""
    try:
        meta = json.loads(jpath.read_bytes())
    except ValueError as e:  # JSONDecodeError or UnicodeDecodeError
        reason = "it is empty" if jpath.stat().st_size == 0 else f"not valid JSON: {_first_line(e)}"
        raise SeqlabError(f"{jpath} is damaged ({reason}){then}") from e
    if not isinstance(meta, dict) or not isinstance(meta.get("token"), str) or "tree" not in meta:
        raise SeqlabError(f"{jpath} is damaged (not a checkpoint state: it needs a 'token' and a 'tree'){then}")
    return meta


def _check_token(metadata: dict[str, str], meta: dict[str, Any], tpath: Path, jpath: Path, hint: str = "") -> None:
    if metadata.get("token") != meta["token"]:
        raise SeqlabError(f"{tpath} and {jpath.name} come from different checkpoints (interrupted save?)"
                          + (f"; {hint}" if hint else ""))


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
