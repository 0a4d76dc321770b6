"""SeqGAN benchmark: the synthetic-oracle protocol's phases timed, plus the two hot loops on their own.

    python bench/seqgan.py --preset small --device cpu          # the 2-core CPU preset
    python bench/seqgan.py --preset paper --device cuda          # the paper's protocol on a GPU
    python bench/seqgan.py --micro-only                          # just the D step and rollout timings

Prints one JSON object (wall time per phase, per adversarial round, rollouts/s, D step ms, final
NLL-oracle per method) and a one-line summary on stderr. Runs resume from --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from seqlab.device import resolve_device
from seqlab.gan.rewards import discriminator_score, rollout_rewards
from seqlab.models.discriminator import Discriminator
from seqlab.models.oracle import build_oracle
from seqlab.models.seqgan_generator import build_generator
from seqlab.train.seqgan import METHODS, compile_discriminator, d_optimizer, train_discriminator
from seqlab.train.seqgan_table import build_table, resolve_protocol, run_oracle_table


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def micro(device: torch.device, batch: int, rollouts: int, d_steps: int, compile_d: bool) -> dict[str, float]:
    """D training step (batch 64, no host sync inside) and one batched rollout + scoring, timed."""
    oracle, _ = build_oracle()
    V, T = oracle.vocab_size, oracle.seq_len
    torch.manual_seed(0)
    d = Discriminator(V, T).to(device)
    d_run = compile_discriminator(d, device) if compile_d else d
    opt = d_optimizer(d, 1e-4, device)
    real = torch.randint(0, V, (d_steps * batch // 2, T), device=device)
    fake = torch.randint(0, V, (d_steps * batch // 2, T), device=device)
    train_discriminator(d_run, opt, real[: 4 * batch], fake[: 4 * batch], 1, batch)  # warm-up
    _sync(device)
    start = time.perf_counter()
    train_discriminator(d_run, opt, real, fake, 1, batch)
    _sync(device)
    d_step = (time.perf_counter() - start) / d_steps
    g = build_generator("lstm", V, T).to(device)
    seqs = g.sample(batch)
    score = discriminator_score(d_run)
    rollout_rewards(g, score, seqs, rollouts)  # warm-up
    _sync(device)
    start = time.perf_counter()
    rollout_rewards(g, score, seqs, rollouts)
    _sync(device)
    rollout_s = time.perf_counter() - start
    return {"d_step_ms": 1000 * d_step, "rollout_batch_s": rollout_s,
            "rollouts_per_s": batch * (T - 1) * rollouts / rollout_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--set", action="append", default=[], help="protocol override FIELD=VALUE")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="run directory (default: a temporary one)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--micro-only", action="store_true")
    ap.add_argument("--micro-d-steps", type=int, default=50)
    args = ap.parse_args()
    device = resolve_device(args.device)
    protocol = resolve_protocol(args.preset, args.set, compile=args.compile or None)
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()}",
              "preset": args.preset, "date": time.strftime("%Y-%m-%d"),
              "micro": micro(device, protocol.batch_size, protocol.num_rollouts, args.micro_d_steps, args.compile)}
    if not args.micro_only:
        with tempfile.TemporaryDirectory() as tmp:
            out = args.out or Path(tmp) / "run"
            results, source, seconds = run_oracle_table(protocol, args.preset, out, args.seeds,
                                                        args.methods.split(","), None, device)
            table = build_table(results, args.preset, protocol, source, str(device), seconds)
        seqgan = table["methods"].get("seqgan", {}).get("timings", {})
        rounds = protocol.adv_rounds
        report |= {
            "wall_s": seconds,
            "nll_oracle": {m: row["nll_oracle"] for m, row in table["methods"].items()},
            "method_wall_s": {m: row["wall_s"] for m, row in table["methods"].items()},
            "seqgan_phases_s": {k: v for k, v in seqgan.items() if k.endswith("_s")},
            "seqgan_pg_rollouts_per_s": (rounds * protocol.batch_size * 19 * protocol.num_rollouts
                                      / seqgan["pg_step_s"]) if seqgan.get("pg_step_s") else None,
            "oracle": source,
        }
    print(json.dumps(report, indent=2))
    summary = f"seqgan bench ({report['device']}): D step {report['micro']['d_step_ms']:.2f} ms, " \
              f"{report['micro']['rollouts_per_s']:,.0f} rollouts/s"
    if "nll_oracle" in report:
        summary += ", NLL-oracle " + " ".join(f"{m}={v:.3f}" for m, v in report["nll_oracle"].items())
        summary += f", {report['wall_s']:.0f} s"
    print(summary, file=sys.stderr)


if __name__ == "__main__":
    main()
