"""The SeqGAN recipe: the synthetic-oracle protocol of Yu et al. (2017) and its baselines, resumable per method.

    protocol = PRESETS["paper"]
    experiment = OracleExperiment(protocol, oracle, seed=0, out=Path("runs/seqgan/seed0"), device=device)
    experiment.run("seqgan")   # -> {"nll_oracle": ..., "curve": [[epoch, nll], ...], "timings": {...}}

Methods (the paper's Table 1):
- random: the untrained G;  mle: MLE for `mle_epochs`;  ss: scheduled sampling for `ss_epochs`;
- pg_bleu: policy gradient with reward BLEU-3 against the real data, after `pg_bleu_pretrain_epochs` of MLE;
- seqgan: `pretrain_epochs` of MLE, D pre-training, then adversarial rounds.
The MLE runs of mle, pg_bleu and seqgan are one trajectory (same seed, same data order): pg_bleu
and seqgan start from its snapshots at their pre-training epochs, so MLE is trained once.
The policy-gradient methods run the adversarial loop of seqlab.train.adversarial (shared with
`seqlab seqgan train`), which also holds the training steps.

Each method lives in `OUT/<method>/` with a checkpoint (`state.{safetensors,json}`: weights,
optimizers, RNG, position, curve, elapsed time) written at least every `checkpoint_every_s`
seconds and at the end of every phase, and `result.json` once finished. Running again resumes
exactly where it stopped, after a `kill -9` at any moment too (a checkpoint is written beside the old
one and then moved into place). The first Ctrl-C or SIGTERM saves a checkpoint at the end of the
current epoch / iteration / round and raises `Interrupted` (`seqlab` exits 130 / 143).
The inner loops never read a value back to the host except once per epoch or round (for the
progress bar), so GPU steps queue without syncs.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from seqlab.checkpoint import commit_state, load_weights, save_weights
from seqlab.errors import ConfigError
from seqlab.gan.oracle_corpus import oracle_sequences
from seqlab.gan.rewards import NgramBleu, ScoreFn
from seqlab.gan.scheduled_sampling import gold_probability, scheduled_sampling_logits
from seqlab.io import read_json, write_json
from seqlab.models.discriminator import Discriminator
from seqlab.models.oracle import OracleLSTM
from seqlab.models.seqgan_generator import SequenceGenerator, build_generator
from seqlab.train.adversarial import (
    AdversarialSchedule,
    AdversarialTrainer,
    SavePoints,
    g_optimizer,
    load_checkpoint_state,
    mle_epoch,
    new_discriminator,
    weights,
)
from seqlab.train.adversarial import (
    compile_discriminator as compile_discriminator,  # re-exported (bench, tests)
)
from seqlab.train.adversarial import d_optimizer as d_optimizer
from seqlab.train.adversarial import train_discriminator as train_discriminator
from seqlab.train.interrupt import InterruptFlag
from seqlab.train.progress import Reporter
from seqlab.train.state import rng_state, set_rng_state

METHODS = ("random", "mle", "ss", "pg_bleu", "seqgan")
PAPER_TABLE = {"random": 10.310, "mle": 9.038, "ss": 8.985, "pg_bleu": 8.946, "seqgan": 8.736}


@dataclass(frozen=True)
class OracleProtocol:
    """Sizes and schedule of the synthetic experiment; the defaults are the paper's (see seqgan-protocol.md)."""

    num_real: int = 10_000  # real sequences sampled from the oracle
    batch_size: int = 64
    g_lr: float = 0.01  # Adam, for MLE and for the policy gradient
    d_lr: float = 1e-4
    grad_clip: float = 5.0  # global norm, G only
    pretrain_epochs: int = 120  # SeqGAN's MLE pre-training
    mle_epochs: int = 350  # the MLE baseline
    ss_epochs: int = 300
    ss_decay: float = 0.002  # scheduled sampling: p(gold) = 1 − decay·epoch
    d_pretrain_iters: int = 50  # times {fresh negatives; d_epochs epochs}
    d_negatives: int = 10_000
    d_epochs: int = 3
    adv_rounds: int = 200
    d_iters_per_round: int = 5
    num_rollouts: int = 16
    rollout_rate: float = 0.0  # W_roll ← r·W_roll + (1−r)·W_G; 0 = current G (the authors' code), 0.8 = paper
    pg_bleu_pretrain_epochs: int = 200
    pg_bleu_rounds: int = 800
    pg_bleu_rollouts: int = 1
    eval_samples: int = 10_000  # samples behind each final NLL-oracle
    curve_samples: int = 10_000  # samples behind each learning-curve point
    curve_every_epochs: int = 5
    curve_every_rounds: int = 5
    generator: str = "lstm"  # or "transformer"
    compile: bool = False  # torch.compile the discriminator (CUDA graphs on GPU)
    checkpoint_every_s: float = 60.0

    def __post_init__(self) -> None:
        if self.num_rollouts < 1 or self.pg_bleu_rollouts < 1:
            raise ConfigError(f"the rollout count must be >= 1, got {min(self.num_rollouts, self.pg_bleu_rollouts)}")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise ConfigError(f"{f.name} must be >= 0, got {value}")
        for name in ("num_real", "batch_size", "d_negatives", "eval_samples", "curve_samples",
                     "curve_every_epochs", "curve_every_rounds"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size > self.num_real:
            raise ConfigError(f"batch_size ({self.batch_size}) is larger than num_real ({self.num_real})")
        if not 0.0 <= self.rollout_rate < 1.0:
            raise ConfigError(f"rollout_rate must be in [0, 1), got {self.rollout_rate}")

    def replace(self, **changes: Any) -> OracleProtocol:
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, OracleProtocol] = {
    "paper": OracleProtocol(),
    # the 2-core CPU in minutes: same oracle, model sizes, batch sizes and learning rates; less data,
    # fewer epochs / D steps / rounds / rollouts (every reduction is listed in the README)
    "small": OracleProtocol(num_real=5_000, pretrain_epochs=20, mle_epochs=30, ss_epochs=20, ss_decay=0.02,
                            d_pretrain_iters=3, d_negatives=500, d_epochs=1, adv_rounds=20, d_iters_per_round=1,
                            num_rollouts=4, pg_bleu_pretrain_epochs=25, pg_bleu_rounds=30,
                            eval_samples=5_000, curve_samples=2_000, curve_every_epochs=5, curve_every_rounds=4),
}


# ----------------------------------------------------------------------------- the experiment


class OracleExperiment:
    """One seed of the synthetic experiment, in directory `out` (see the module docstring)."""

    def __init__(self, protocol: OracleProtocol, oracle: OracleLSTM, seed: int, out: Path,
                 device: torch.device, reporter: Reporter | None = None,
                 on_checkpoint: Callable[[str], None] | None = None):
        self.p, self.seed, self.dir, self.device = protocol, seed, Path(out), device
        self.oracle = oracle.to(device)
        self.report = reporter or Reporter()
        self.on_checkpoint = on_checkpoint  # called after each checkpoint with the method name (tests)
        self._real: Tensor | None = None
        self.interrupt = InterruptFlag()  # installed (Ctrl-C, SIGTERM) while `run` trains a method

    # ---- shared pieces

    @property
    def real(self) -> Tensor:
        """The real data [num_real, T], sampled once per seed from the oracle."""
        if self._real is None:
            self._real = oracle_sequences(self.oracle, self.p.num_real, seed=self.seed)
        return self._real

    def new_generator(self) -> SequenceGenerator:
        """G at its seeded initialisation (the same for every method of this seed)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            generator = build_generator(self.p.generator, self.oracle.vocab_size, self.oracle.seq_len,
                                        self.oracle.start_token)
        return generator.to(self.device)

    def nll_oracle(self, generator: SequenceGenerator, num_samples: int) -> float:
        generator.eval()
        value = self.oracle.nll(generator.sample(num_samples))
        generator.train()
        return value

    def run(self, method: str) -> dict[str, Any]:
        """Run (or resume, or just read) one method; returns its result."""
        if method not in METHODS:
            raise ConfigError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
        path = self.dir / method / "result.json"
        if path.is_file():
            return read_json(path)
        with InterruptFlag() as self.interrupt:
            result = getattr(self, f"_run_{method}")()
        write_json(path, result)
        return result

    def _fresh_rng(self, method: str) -> None:
        torch.manual_seed(self.seed * len(METHODS) + METHODS.index(method) + 1)

    def _checkpoint(self, method: str, state: dict[str, Any]) -> None:
        commit_state(self.dir / method / "state", {**state, "rng": rng_state(self.device)})
        self._checkpointed(method)

    def _checkpointed(self, method: str) -> None:
        if self.on_checkpoint is not None:
            self.on_checkpoint(method)

    def _resume(self, method: str) -> dict[str, Any] | None:
        state = load_checkpoint_state(self.dir / method / "state")
        if state is not None:
            set_rng_state(state["rng"], self.device)
        return state

    def _save_points(self, method: str) -> SavePoints:
        return SavePoints(self.interrupt, self.p.checkpoint_every_s, f"interrupted: checkpoint saved in "
                          f"{self.dir / method}; run the same command again to continue")

    # ---- random

    def _run_random(self) -> dict[str, Any]:
        self._fresh_rng("random")
        start = time.perf_counter()
        nll = self.nll_oracle(self.new_generator(), self.p.eval_samples)
        return {"nll_oracle": nll, "curve": [[0, nll]], "timings": {"total_s": time.perf_counter() - start}}

    # ---- MLE (one trajectory, snapshots for pg_bleu and seqgan) and scheduled sampling

    def _run_mle(self) -> dict[str, Any]:
        state = self._mle_trajectory("mle", self.p.mle_epochs)
        generator = self._generator_from(state)
        nll = self.nll_oracle(generator, self.p.eval_samples)
        return {"nll_oracle": nll, "curve": state["curve"], "timings": {"total_s": state["elapsed"]}}

    def _run_ss(self) -> dict[str, Any]:
        state = self._mle_trajectory("ss", self.p.ss_epochs)
        nll = self.nll_oracle(self._generator_from(state), self.p.eval_samples)
        return {"nll_oracle": nll, "curve": state["curve"], "timings": {"total_s": state["elapsed"]}}

    def _generator_from(self, state: dict[str, Any]) -> SequenceGenerator:
        generator = self.new_generator()
        generator.load_state_dict(state["generator"])
        return generator

    def pretrained(self, epochs: int) -> tuple[SequenceGenerator, float, float]:
        """G after `epochs` of the MLE trajectory, its NLL-oracle (curve) and the MLE time to get there."""
        if epochs == 0:
            generator = self.new_generator()
            return generator, self.nll_oracle(generator, self.p.curve_samples), 0.0
        path = self.dir / "mle" / f"generator_epoch{epochs}.safetensors"
        if not path.is_file():
            self._mle_trajectory("mle", epochs)
        generator = self.new_generator()
        load_weights(generator, path)
        info = read_json(path.with_suffix(".json"))
        return generator, info["nll_oracle"], info["elapsed"]

    def _mle_trajectory(self, method: str, until: int) -> dict[str, Any]:
        """Train G by MLE (method 'mle') or scheduled sampling ('ss') up to epoch `until`; its final state."""
        generator = self.new_generator()
        optimizer = g_optimizer(generator, self.p.g_lr, self.device)
        state = self._resume(method)
        if state is None:
            self._fresh_rng(method)
            state = {"epoch": 0, "elapsed": 0.0, "curve": [[0, self.nll_oracle(generator, self.p.curve_samples)]]}
        else:
            generator.load_state_dict(state["generator"])
            optimizer.load_state_dict(state["optimizer"])
        epoch, elapsed, curve = state["epoch"], state["elapsed"], state["curve"]
        snapshots = {self.p.pretrain_epochs, self.p.pg_bleu_pretrain_epochs} if method == "mle" else set()
        self.report.phase(f"seed {self.seed} {method}", until, epoch)
        started, save_point = time.perf_counter() - elapsed, self._save_points(method)
        real = self.real

        def save() -> None:
            self._checkpoint(method, {"epoch": epoch, "elapsed": elapsed, "curve": curve,
                                      "generator": weights(generator), "optimizer": optimizer.state_dict()})

        while epoch < until:
            logits_fn = None
            if method == "ss":
                p_gold = gold_probability(epoch, 1.0, self.p.ss_decay)
                logits_fn = lambda batch, p=p_gold: scheduled_sampling_logits(generator, batch, p)  # noqa: E731
            loss = mle_epoch(generator, optimizer, real, self.p.batch_size, self.p.grad_clip, logits_fn)
            epoch += 1
            fields = {"loss": float(loss)}
            if epoch % self.p.curve_every_epochs == 0 or epoch in snapshots or epoch == until:
                curve.append([epoch, self.nll_oracle(generator, self.p.curve_samples)])
                fields["nll"] = curve[-1][1]
            elapsed = time.perf_counter() - started
            if epoch in snapshots:
                self._snapshot(generator, epoch, curve[-1][1], elapsed)
            self.report.update(epoch, **fields)
            save_point(save, force=epoch == until or epoch in snapshots)
        return {"epoch": epoch, "elapsed": elapsed, "curve": curve, "generator": weights(generator)}

    def _snapshot(self, generator: SequenceGenerator, epoch: int, nll: float, elapsed: float) -> None:
        path = self.dir / "mle" / f"generator_epoch{epoch}.safetensors"
        write_json(path.with_suffix(".json"), {"epoch": epoch, "nll_oracle": nll, "elapsed": elapsed})
        save_weights(generator, path)

    # ---- policy gradient: PG-BLEU and SeqGAN

    def _run_pg_bleu(self) -> dict[str, Any]:
        p = self.p
        generator, nll0, pretrain_s = self.pretrained(p.pg_bleu_pretrain_epochs)
        bleu = NgramBleu(self.real, self.oracle.vocab_size, max_n=3)
        return self._adversarial("pg_bleu", generator, nll0, pretrain_s, p.pg_bleu_pretrain_epochs, p.pg_bleu_rounds,
                                 p.pg_bleu_rollouts, discriminator=None, score=bleu)

    def _run_seqgan(self) -> dict[str, Any]:
        p = self.p
        generator, nll0, pretrain_s = self.pretrained(p.pretrain_epochs)
        discriminator = new_discriminator(self.oracle.vocab_size, self.oracle.seq_len, self.seed, self.device)
        return self._adversarial("seqgan", generator, nll0, pretrain_s, p.pretrain_epochs, p.adv_rounds,
                                 p.num_rollouts, discriminator=discriminator, score=None)

    def _adversarial(self, method: str, generator: SequenceGenerator, nll0: float, pretrain_s: float,
                     x0: int, rounds: int, num_rollouts: int, discriminator: Discriminator | None,
                     score: ScoreFn | None) -> dict[str, Any]:
        """D pre-training (when there is a D), then `rounds` of {PG step; D training}; resumable."""
        p = self.p
        schedule = AdversarialSchedule(
            batch_size=p.batch_size, g_lr=p.g_lr, d_lr=p.d_lr, grad_clip=p.grad_clip, rollout_rate=p.rollout_rate,
            num_rollouts=num_rollouts, d_pretrain_iters=p.d_pretrain_iters, d_negatives=p.d_negatives,
            d_epochs=p.d_epochs, rounds=rounds, d_iters_per_round=p.d_iters_per_round, compile=p.compile)
        state = {"d_iter": 0, "round": 0, "curve": [[x0, nll0]], "d_acc": [], "rewards": [],
                 "timings": {"mle_pretrain_s": pretrain_s, "d_pretrain_s": 0.0, "adversarial_s": 0.0,
                             "pg_step_s": 0.0, "eval_s": 0.0}}

        def after_round() -> dict[str, float]:  # a learning-curve point every `curve_every_rounds` rounds
            st = trainer.state
            if st["round"] % p.curve_every_rounds and st["round"] != rounds:
                return {}
            start = time.perf_counter()
            st["curve"].append([x0 + st["round"], self.nll_oracle(generator, p.curve_samples)])
            st["timings"]["eval_s"] += time.perf_counter() - start
            return {"nll": st["curve"][-1][1]}

        trainer = AdversarialTrainer(generator, discriminator, self.real, schedule, self.device,
                                     self.dir / method / "state", self.report, state,
                                     label=f"seed {self.seed} {method}: ", score=score, after_round=after_round,
                                     on_checkpoint=lambda: self._checkpointed(method))
        if not trainer.resume():
            self._fresh_rng(method)
        trainer.run(self._save_points(method))
        nll = self.nll_oracle(generator, p.eval_samples)
        return {"nll_oracle": nll, "curve": trainer.state["curve"], "d_acc": trainer.state["d_acc"],
                "timings": self._timings(trainer.state)}

    def _timings(self, state: dict[str, Any]) -> dict[str, float]:
        t = dict(state["timings"])
        t["total_s"] = t["mle_pretrain_s"] + t["d_pretrain_s"] + t["adversarial_s"] + t["eval_s"]
        rounds = max(state["round"], 1)
        t["round_s"] = t["adversarial_s"] / rounds
        return t
