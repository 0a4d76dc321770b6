"""Damage a safetensors file the ways a disk, a kill or a wrong copy does (for the bad-input tests)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

# what no reader may accept silently: the bytes are broken, or the tensors cannot be a model's weights
BYTES = ("truncated", "zero-byte", "random-bytes", "bad-header", "stray-bytes")
VALUES = ("int64", "all-nan")


def damage(path: Path, kind: str) -> None:
    data = path.read_bytes()
    length = int.from_bytes(data[:8], "little")
    if kind == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif kind == "zero-byte":
        path.write_bytes(b"")
    elif kind == "random-bytes":
        noise = torch.randint(256, (len(data),), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
        path.write_bytes(noise.numpy().tobytes())
    elif kind == "bad-header":
        path.write_bytes(data[:8] + b"{" * length + data[8 + length:])
    elif kind == "stray-bytes":
        path.write_bytes(data + b"\0" * 16)
    elif kind in VALUES:  # a well-formed file (same metadata) whose floating tensors are int64 or NaN
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata()
        tensors = load_file(str(path))
        for name, t in tensors.items():
            if t.is_floating_point():
                tensors[name] = t.to(torch.int64) if kind == "int64" else torch.full_like(t, float("nan"))
        save_file(tensors, str(path), metadata=metadata)
    else:
        raise ValueError(kind)
