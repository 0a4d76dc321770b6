"""SeqGAN's Table 1 as one run: seeds × methods in one directory, then the table and the learning curve.

    OUT/protocol.json            preset, every protocol field, the oracle's source (a resumed run must match)
    OUT/seed<S>/<method>/        one resumable experiment per seed and method (see seqlab.train.seqgan)
    OUT/table.json               {"methods": {method: {"nll_oracle", "std", "per_seed", "wall_s"}}, "paper": {...}, ...}
    OUT/learning_curve.png       NLL-oracle vs epoch (seed 0), a vertical line where adversarial training starts
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from seqlab.config import INT_LIMIT, parse_value
from seqlab.errors import ConfigError
from seqlab.io import read_json, write_json
from seqlab.models.oracle import build_oracle
from seqlab.train.progress import RichReporter
from seqlab.train.seqgan import METHODS, PAPER_TABLE, PRESETS, OracleExperiment, OracleProtocol

# fields that change speed, not results: a run may be resumed with other values
_SPEED_ONLY = ("compile", "checkpoint_every_s")


def resolve_protocol(preset: str, overrides: list[str], **options: Any) -> OracleProtocol:
    """The preset, then `--set field=value` overrides, then the named options that are not None."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    fields = {f.name: f for f in dataclasses.fields(OracleProtocol)}
    changes: dict[str, Any] = {}
    for pair in overrides:
        key, sep, value = pair.partition("=")
        if not sep or key.strip() not in fields:
            raise ConfigError(f"--set expects FIELD=VALUE with FIELD one of {', '.join(fields)}; got {pair!r}")
        key = key.strip()
        changes[key] = _typed(key, parse_value(value, f"--set {key}"), type(getattr(PRESETS[preset], key)))
    changes |= {k: v for k, v in options.items() if v is not None}
    return PRESETS[preset].replace(**changes)


def _typed(key: str, value: Any, kind: type) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"--set {key}: expected {kind.__name__}, got {value!r}")
    if kind is float and not math.isfinite(value):
        raise ConfigError(f"--set {key}: must be a finite number, got {value}")
    if kind is int and abs(value) >= INT_LIMIT:
        raise ConfigError(f"--set {key}: {value} does not fit in 64 bits (must be < 2^63); give a realistic size")
    return value


def run_oracle_table(protocol: OracleProtocol, preset: str, out: Path, seeds: int, methods: list[str],
                     oracle_path: Path | None, device: torch.device, show_progress: bool = False,
                     ) -> tuple[dict[int, dict[str, dict]], str, float]:
    """Run (or resume) every method of seeds 0..seeds-1; results[seed][method], the oracle's source, seconds."""
    oracle, source = build_oracle(oracle_path)
    _check_run_dir(out, preset, protocol, source)
    start = time.perf_counter()
    results: dict[int, dict[str, dict]] = {}
    with RichReporter(enabled=show_progress) as reporter:
        for seed in range(seeds):
            experiment = OracleExperiment(protocol, oracle, seed, out / f"seed{seed}", device, reporter)
            results[seed] = {m: experiment.run(m) for m in methods}
    return results, source, time.perf_counter() - start


def _check_run_dir(out: Path, preset: str, protocol: OracleProtocol, source: str) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a file, not a run directory")
    record = {"preset": preset, "oracle": source,
              "protocol": {k: v for k, v in dataclasses.asdict(protocol).items() if k not in _SPEED_ONLY}}
    path = out / "protocol.json"
    if path.is_file():
        old = read_json(path)
        if old != record:
            diff = sorted(k for k in record["protocol"] if old.get("protocol", {}).get(k) != record["protocol"][k])
            what = ", ".join(diff) or ("oracle" if old.get("oracle") != source else "preset")
            raise ConfigError(f"{out} holds a run with a different protocol ({what}); use a new --out to start afresh")
    else:
        write_json(path, record)


def build_table(results: dict[int, dict[str, dict]], preset: str, protocol: OracleProtocol, oracle_source: str,
                device: str, seconds: float) -> dict[str, Any]:
    """The table.json object: per method mean ± std across seeds, beside the paper's numbers."""
    methods: dict[str, dict[str, Any]] = {}
    for method in METHODS:
        runs = [results[s][method] for s in sorted(results) if method in results[s]]
        if not runs:
            continue
        values = [r["nll_oracle"] for r in runs]
        methods[method] = {
            "nll_oracle": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "per_seed": values,
            "wall_s": statistics.fmean(r["timings"]["total_s"] for r in runs),
            "timings": runs[0]["timings"],
        }
    return {"methods": methods, "paper": dict(PAPER_TABLE), "preset": preset, "seeds": sorted(results),
            "oracle": oracle_source, "device": device, "wall_s": seconds,
            "protocol": dataclasses.asdict(protocol)}


def plot_curves(results: dict[int, dict[str, dict]], protocol: OracleProtocol, path: Path) -> Path:
    """NLL-oracle vs epoch for seed 0 (adversarial rounds continue the epoch axis), line at pre-training's end."""
    from seqlab.eval.plots import plot_learning_curves

    first = results[min(results)]
    curves = {name: [tuple(p) for p in first[name]["curve"]] for name in METHODS if name in first}
    if "seqgan" in first:  # SeqGAN's line: its MLE pre-training, then the adversarial rounds
        mle = [tuple(p) for p in first["mle"]["curve"]] if "mle" in first else []
        curves["seqgan"] = [p for p in mle if p[0] < protocol.pretrain_epochs] + curves["seqgan"]
    return plot_learning_curves(curves, path, vline=protocol.pretrain_epochs, xlabel="epoch (MLE) / round (adversarial)",
                                ylabel="NLL-oracle (nats/token)", title="SeqGAN synthetic oracle",
                                vline_label="adversarial training starts")
