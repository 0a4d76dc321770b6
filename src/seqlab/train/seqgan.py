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

from seqlab.checkpoint import commit_state, finish_commit, load_state, load_weights, save_weights
from seqlab.errors import ConfigError
from seqlab.gan.losses import mle_loss, policy_gradient_loss
from seqlab.gan.oracle_corpus import oracle_sequences
from seqlab.gan.rewards import NgramBleu, ScoreFn, discriminator_score, rollout_rewards
from seqlab.gan.rollout import RolloutPolicy
from seqlab.gan.scheduled_sampling import gold_probability, scheduled_sampling_logits
from seqlab.io import read_json, write_json
from seqlab.models.discriminator import Discriminator
from seqlab.models.oracle import OracleLSTM
from seqlab.models.seqgan_generator import SequenceGenerator, build_generator
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


# ----------------------------------------------------------------------------- training steps


def mle_epoch(generator: SequenceGenerator, optimizer: torch.optim.Optimizer, data: Tensor, batch_size: int,
              grad_clip: float, logits_fn: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """One epoch of teacher-forced MLE over data [N, T] (shuffled, last partial batch dropped, as the
    authors' loader); `logits_fn(batch)` replaces `generator(batch)` (scheduled sampling). Mean loss (device)."""
    order = torch.randperm(data.shape[0], device=data.device)
    total = torch.zeros((), device=data.device)
    steps = data.shape[0] // batch_size
    for i in range(steps):
        batch = data[order[i * batch_size:(i + 1) * batch_size]]  # (B, T)
        loss = mle_loss((logits_fn or generator)(batch), batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(generator.parameters(), grad_clip)
        optimizer.step()
        total += loss.detach()
    return total / max(steps, 1)


def train_discriminator(discriminator: Discriminator, optimizer: torch.optim.Optimizer, real: Tensor, fake: Tensor,
                        epochs: int, batch_size: int) -> Tensor:
    """`epochs` epochs over real (label 1) + fake (label 0), shuffled; training accuracy (device tensor)."""
    plain = _unwrap(discriminator)  # the module itself under torch.compile
    seqs = torch.cat([real, fake])  # (N, T)
    labels = torch.cat([real.new_ones(real.shape[0]), fake.new_zeros(fake.shape[0])])
    correct = torch.zeros((), device=seqs.device)
    steps = seqs.shape[0] // batch_size
    discriminator.train()
    for _ in range(epochs):
        order = torch.randperm(seqs.shape[0], device=seqs.device)
        for i in range(steps):
            idx = order[i * batch_size:(i + 1) * batch_size]
            logits = discriminator(seqs[idx])  # (B, 2)
            loss = torch.nn.functional.cross_entropy(logits, labels[idx]) + plain.l2_reg * plain.l2_penalty()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            correct += (logits.detach().argmax(1) == labels[idx]).sum()
    return correct / max(epochs * steps * batch_size, 1)


def policy_gradient_step(generator: SequenceGenerator, optimizer: torch.optim.Optimizer, rollout: RolloutPolicy,
                         score: ScoreFn, batch_size: int, num_rollouts: int, grad_clip: float) -> Tensor:
    """Sample a batch, estimate Q by batched rollouts, take one step on −Σ log G(y_t|y_<t)·Q(t); mean Q."""
    seqs = generator.sample(batch_size)  # (B, T)
    rewards = rollout_rewards(rollout.model, score, seqs, num_rollouts)  # (B, T)
    loss = policy_gradient_loss(generator.log_probs(seqs), rewards)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(generator.parameters(), grad_clip)
    optimizer.step()
    rollout.update(generator)
    return rewards.mean()


def compile_discriminator(discriminator: Discriminator, device: torch.device) -> torch.nn.Module:
    """torch.compile D; on CUDA in "reduce-overhead" mode, so each small step replays CUDA graphs
    (forward and backward) instead of launching ~200 kernels one by one."""
    return torch.compile(discriminator, mode="reduce-overhead" if device.type == "cuda" else "default", dynamic=False)


def _unwrap(module: torch.nn.Module) -> torch.nn.Module:
    return getattr(module, "_orig_mod", module)


def new_discriminator(vocab_size: int, seq_len: int, seed: int, device: torch.device) -> Discriminator:
    """D at a seeded initialisation: the same whatever ran before it in the process (a resumed run too)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Discriminator(vocab_size, seq_len).to(device)


def load_checkpoint_state(path: Path) -> dict[str, Any] | None:
    """The state saved by `commit_state` at `path`, or None when there is none."""
    finish_commit(path)
    return load_state(path) if path.with_suffix(".json").is_file() else None


class SavePoints:
    """When a SeqGAN trainer checkpoints, at the end of each epoch / iteration / round: at the end of a
    phase (`force`), once `every_s` seconds have passed since the last checkpoint, and when Ctrl-C or
    SIGTERM asked to stop, after which it raises `Interrupted` with `stop_message`."""

    def __init__(self, interrupt: InterruptFlag, every_s: float, stop_message: str):
        self.interrupt, self.every_s, self.stop_message = interrupt, every_s, stop_message
        self.last = time.perf_counter()

    def __call__(self, save: Callable[[], None], force: bool = False) -> None:
        stop = self.interrupt.requested
        if force or stop or time.perf_counter() - self.last >= self.every_s:
            save()
            self.last = time.perf_counter()
        if stop:
            raise self.interrupt.stop(self.stop_message)


def g_optimizer(generator: torch.nn.Module, lr: float, device: torch.device) -> torch.optim.Adam:
    return torch.optim.Adam(generator.parameters(), lr=lr, fused=device.type == "cuda" or None)


def d_optimizer(discriminator: torch.nn.Module, lr: float, device: torch.device) -> torch.optim.Adam:
    return torch.optim.Adam(discriminator.parameters(), lr=lr, fused=device.type == "cuda" or None)


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
                                      "generator": _weights(generator), "optimizer": optimizer.state_dict()})

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
        return {"epoch": epoch, "elapsed": elapsed, "curve": curve, "generator": _weights(generator)}

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
        g_opt = g_optimizer(generator, p.g_lr, self.device)
        rollout = RolloutPolicy(generator, p.rollout_rate)
        d_opt = d_optimizer(discriminator, p.d_lr, self.device) if discriminator is not None else None
        d_train = discriminator
        if discriminator is not None:
            d_train = compile_discriminator(discriminator, self.device) if p.compile else discriminator
            score = discriminator_score(d_train)
        state = self._resume(method)
        if state is None:
            self._fresh_rng(method)
            state = {"d_iter": 0, "round": 0, "curve": [[x0, nll0]], "d_acc": [], "rewards": [],
                     "timings": {"mle_pretrain_s": pretrain_s, "d_pretrain_s": 0.0, "adversarial_s": 0.0,
                                 "pg_step_s": 0.0, "eval_s": 0.0}}
        else:
            self._restore(state, generator, g_opt, rollout, discriminator, d_opt)
        d_iters = p.d_pretrain_iters if discriminator is not None else 0
        save_point = self._save_points(method)

        def save() -> None:
            self._checkpoint(method, {**state, **_adversarial_tensors(generator, g_opt, rollout, discriminator, d_opt)})

        self.report.phase(f"seed {self.seed} {method}: D pre-training", d_iters, state["d_iter"])
        while state["d_iter"] < d_iters:
            self._timed(state, "d_pretrain_s", lambda: self._d_iteration(d_train, d_opt, generator, state))
            state["d_iter"] += 1
            self.report.update(state["d_iter"], d_acc=state["d_acc"][-1])
            save_point(save, force=state["d_iter"] == d_iters)
        self.report.phase(f"seed {self.seed} {method}: adversarial", rounds, state["round"])
        while state["round"] < rounds:
            self._timed(state, "adversarial_s",
                        lambda: self._round(method, generator, g_opt, rollout, score, num_rollouts, d_train, d_opt,
                                            state))
            state["round"] += 1
            fields = {"reward": state["rewards"][-1]}
            if state["round"] % p.curve_every_rounds == 0 or state["round"] == rounds:
                self._timed(state, "eval_s", lambda: state["curve"].append(
                    [x0 + state["round"], self.nll_oracle(generator, p.curve_samples)]))
                fields["nll"] = state["curve"][-1][1]
            if discriminator is not None:
                fields["d_acc"] = state["d_acc"][-1]
            self.report.update(state["round"], **fields)
            save_point(save, force=state["round"] == rounds)
        nll = self.nll_oracle(generator, p.eval_samples)
        return {"nll_oracle": nll, "curve": state["curve"], "d_acc": state["d_acc"], "timings": self._timings(state)}

    def _round(self, method: str, generator: SequenceGenerator, g_opt: torch.optim.Optimizer, rollout: RolloutPolicy,
               score: ScoreFn, num_rollouts: int, d_train: torch.nn.Module | None, d_opt: torch.optim.Optimizer | None,
               state: dict[str, Any]) -> None:
        start = time.perf_counter()
        reward = policy_gradient_step(generator, g_opt, rollout, score, self.p.batch_size, num_rollouts,
                                      self.p.grad_clip)
        state["rewards"].append(float(reward))
        state["timings"]["pg_step_s"] += time.perf_counter() - start
        for _ in range(self.p.d_iters_per_round if d_train is not None else 0):
            self._d_iteration(d_train, d_opt, generator, state)

    def _d_iteration(self, discriminator: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     generator: SequenceGenerator, state: dict[str, Any]) -> None:
        """`d_negatives` fresh negatives from G and as many real sequences (all of them in the paper's
        protocol, else a random subset), then `d_epochs` epochs over both."""
        generator.eval()
        fake = generator.sample(self.p.d_negatives)
        generator.train()
        real = self.real
        if self.p.d_negatives < real.shape[0]:
            real = real[torch.randperm(real.shape[0], device=real.device)[: self.p.d_negatives]]
        acc = train_discriminator(discriminator, optimizer, real, fake, self.p.d_epochs, self.p.batch_size)
        state["d_acc"].append(float(acc))

    @staticmethod
    def _timed(state: dict[str, Any], key: str, fn: Callable[[], None]) -> None:
        start = time.perf_counter()
        fn()
        state["timings"][key] += time.perf_counter() - start

    def _timings(self, state: dict[str, Any]) -> dict[str, float]:
        t = dict(state["timings"])
        t["total_s"] = t["mle_pretrain_s"] + t["d_pretrain_s"] + t["adversarial_s"] + t["eval_s"]
        rounds = max(state["round"], 1)
        t["round_s"] = t["adversarial_s"] / rounds
        return t

    @staticmethod
    def _restore(state: dict[str, Any], generator: SequenceGenerator, g_opt: torch.optim.Optimizer,
                 rollout: RolloutPolicy, discriminator: Discriminator | None,
                 d_opt: torch.optim.Optimizer | None) -> None:
        generator.load_state_dict(state.pop("generator"))
        g_opt.load_state_dict(state.pop("g_opt"))
        if "rollout" in state:
            rollout.model.load_state_dict(state.pop("rollout"))
        if discriminator is not None:
            discriminator.load_state_dict(state.pop("discriminator"))
            d_opt.load_state_dict(state.pop("d_opt"))
        state.pop("rng")


def _adversarial_tensors(generator: SequenceGenerator, g_opt: torch.optim.Optimizer, rollout: RolloutPolicy,
                         discriminator: Discriminator | None, d_opt: torch.optim.Optimizer | None) -> dict[str, Any]:
    """What an adversarial checkpoint holds besides the counters and curves (see `_restore`)."""
    tensors = {"generator": _weights(generator), "g_opt": g_opt.state_dict()}
    if rollout.model is not generator:
        tensors["rollout"] = _weights(rollout.model)
    if discriminator is not None:
        tensors |= {"discriminator": _weights(discriminator), "d_opt": d_opt.state_dict()}
    return tensors


def _weights(module: torch.nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in _unwrap(module).state_dict().items()}
