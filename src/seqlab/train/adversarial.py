"""SeqGAN's training steps and its one adversarial loop, shared by the oracle experiment
(seqlab.train.seqgan) and SeqGAN on a text corpus (seqlab.train.seqgan_text).

    trainer = AdversarialTrainer(generator, discriminator, real, schedule, device, path, reporter)
    if not trainer.resume():
        torch.manual_seed(...)           # the caller's fresh-run seed
    trainer.run(save_points)             # [MLE pre-training ->] D pre-training -> adversarial rounds

The loop checkpoints (`path.{safetensors,json}`: counters, curves, timings, weights, optimizers, RNG) at
the end of each epoch / iteration / round as `SavePoints` decides, so a run resumes exactly where it
stopped. It lives in train/ (not gan/) because it checkpoints and stops on Ctrl-C / SIGTERM
(seqlab.train.interrupt, seqlab.train.state); gan/ holds the pieces with no such concerns.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from seqlab.checkpoint import _unwrap, commit_state, finish_commit, load_state
from seqlab.gan.losses import mle_loss, policy_gradient_loss
from seqlab.gan.rewards import ScoreFn, discriminator_score, rollout_rewards
from seqlab.gan.rollout import RolloutPolicy
from seqlab.models.discriminator import Discriminator
from seqlab.models.seqgan_generator import SequenceGenerator
from seqlab.train.interrupt import InterruptFlag
from seqlab.train.progress import Reporter
from seqlab.train.state import rng_state, set_rng_state

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


def new_discriminator(vocab_size: int, seq_len: int, seed: int, device: torch.device) -> Discriminator:
    """D at a seeded initialisation: the same whatever ran before it in the process (a resumed run too)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Discriminator(vocab_size, seq_len).to(device)


def g_optimizer(generator: torch.nn.Module, lr: float, device: torch.device) -> torch.optim.Adam:
    return torch.optim.Adam(generator.parameters(), lr=lr, fused=device.type == "cuda" or None)


def d_optimizer(discriminator: torch.nn.Module, lr: float, device: torch.device) -> torch.optim.Adam:
    return torch.optim.Adam(discriminator.parameters(), lr=lr, fused=device.type == "cuda" or None)


def weights(module: torch.nn.Module) -> dict[str, Tensor]:
    """A copy of the plain module's state dict (what a checkpoint stores)."""
    return {k: v.detach().clone() for k, v in _unwrap(module).state_dict().items()}


# ----------------------------------------------------------------------------- checkpoints


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


# ----------------------------------------------------------------------------- the loop


@dataclass(frozen=True)
class AdversarialSchedule:
    """What one adversarial run does; `mle_epochs` None: G comes pre-trained (no MLE phase, no
    `epoch` / `mle_done` in the state)."""

    batch_size: int
    g_lr: float
    d_lr: float
    grad_clip: float
    rollout_rate: float
    num_rollouts: int
    d_pretrain_iters: int  # times {d_negatives fresh negatives; d_epochs epochs}; ignored without a D
    d_negatives: int  # and as many real sequences (a random subset when there are more)
    d_epochs: int
    rounds: int
    d_iters_per_round: int
    mle_epochs: int | None = None
    compile: bool = False  # torch.compile D


class AdversarialTrainer:
    """[MLE pre-training of G ->] D pre-training -> `rounds` of {one policy-gradient step of G;
    `d_iters_per_round` D iterations}, on `real` [N, T]; without a D (PG-BLEU) the reward is `score`.

    `state` (the caller's fresh one, replaced by `resume`) holds the counters (`epoch` and `mle_done`
    with an MLE phase, `d_iter`, `round`), `d_acc`, `rewards`, `timings` (`mle_pretrain_s`,
    `d_pretrain_s`, `adversarial_s`, `pg_step_s`, and the caller's own) and whatever else the caller keeps there (the oracle's learning curve). Hooks: `pretrained()` when
    MLE pre-training ends (once), `after_round()` -> extra progress fields, `on_checkpoint()` after
    each checkpoint, `upgrade(state)` on a loaded checkpoint (older layouts)."""

    def __init__(self, generator: SequenceGenerator, discriminator: Discriminator | None, real: Tensor,
                 schedule: AdversarialSchedule, device: torch.device, path: Path, reporter: Reporter,
                 state: dict[str, Any], label: str = "", score: ScoreFn | None = None,
                 pretrained: Callable[[], None] | None = None,
                 after_round: Callable[[], dict[str, float]] | None = None,
                 on_checkpoint: Callable[[], None] | None = None,
                 upgrade: Callable[[dict[str, Any]], None] | None = None):
        s = self.schedule = schedule
        self.generator, self.discriminator, self.real, self.device, self.path = generator, discriminator, real, \
            device, Path(path)
        self.report, self.state, self.label = reporter, state, label
        self.pretrained, self.after_round, self.on_checkpoint, self.upgrade = pretrained, after_round, \
            on_checkpoint, upgrade
        self.g_opt = g_optimizer(generator, s.g_lr, device)  # MLE's, then a fresh one for the policy gradient
        # the rollout policy, from the end of MLE pre-training on
        self.rollout = RolloutPolicy(generator, s.rollout_rate) if s.mle_epochs is None else None
        self.d_opt = d_optimizer(discriminator, s.d_lr, device) if discriminator is not None else None
        self.d_train = discriminator
        if discriminator is not None:
            self.d_train = compile_discriminator(discriminator, device) if s.compile else discriminator
            score = discriminator_score(self.d_train)
        self.score = score

    # ---- checkpoint and resume

    def checkpoint(self) -> None:
        tensors = {"generator": weights(self.generator), "g_opt": self.g_opt.state_dict()}
        if self.rollout is not None and self.rollout.model is not self.generator:
            tensors["rollout"] = weights(self.rollout.model)
        if self.discriminator is not None:
            tensors |= {"discriminator": weights(self.discriminator), "d_opt": self.d_opt.state_dict()}
        commit_state(self.path, {**self.state, **tensors, "rng": rng_state(self.device)})
        if self.on_checkpoint is not None:
            self.on_checkpoint()

    def resume(self) -> bool:
        """Load the checkpoint at `path` (weights, optimizers, RNG, state); False when there is none."""
        state = load_checkpoint_state(self.path)
        if state is None:
            return False
        if self.upgrade is not None:
            self.upgrade(state)
        state["timings"].setdefault("pg_step_s", 0.0)
        set_rng_state(state.pop("rng"), self.device)
        self.generator.load_state_dict(state.pop("generator"))
        if self.rollout is None and state.get("mle_done"):
            self.rollout = RolloutPolicy(self.generator, self.schedule.rollout_rate)
        if "rollout" in state:
            self.rollout.model.load_state_dict(state.pop("rollout"))
        self.g_opt.load_state_dict(state.pop("g_opt"))
        if self.discriminator is not None:
            self.discriminator.load_state_dict(state.pop("discriminator"))
            self.d_opt.load_state_dict(state.pop("d_opt"))
        self.state = state
        return True

    # ---- the loop

    def run(self, save_point: SavePoints) -> None:
        s, st = self.schedule, self.state
        if s.mle_epochs is not None:
            self.report.phase(f"{self.label}MLE pre-training", s.mle_epochs, st["epoch"])
            while st["epoch"] < s.mle_epochs:
                loss = self._timed("mle_pretrain_s", lambda: mle_epoch(self.generator, self.g_opt, self.real,
                                                                        s.batch_size, s.grad_clip))
                st["epoch"] += 1
                self.report.update(st["epoch"], loss=float(loss))
                save_point(self.checkpoint)
            if not st["mle_done"]:  # the end of MLE: a fresh Adam for the PG phase, the rollout policy
                if self.pretrained is not None:
                    self.pretrained()
                self.g_opt = g_optimizer(self.generator, s.g_lr, self.device)
                self.rollout = RolloutPolicy(self.generator, s.rollout_rate)
                st["mle_done"] = True
                save_point(self.checkpoint, force=True)
        d_iters = s.d_pretrain_iters if self.discriminator is not None else 0
        self.report.phase(f"{self.label}D pre-training", d_iters, st["d_iter"])
        while st["d_iter"] < d_iters:
            self._timed("d_pretrain_s", self.d_iteration)
            st["d_iter"] += 1
            self.report.update(st["d_iter"], d_acc=st["d_acc"][-1])
            save_point(self.checkpoint, force=st["d_iter"] == d_iters)
        self.report.phase(f"{self.label}adversarial", s.rounds, st["round"])
        while st["round"] < s.rounds:
            self._timed("adversarial_s", self.round)
            st["round"] += 1
            fields = {"reward": st["rewards"][-1]}
            if self.after_round is not None:
                fields |= self.after_round()
            if self.discriminator is not None:
                fields["d_acc"] = st["d_acc"][-1]
            self.report.update(st["round"], **fields)
            save_point(self.checkpoint, force=st["round"] == s.rounds)

    def round(self) -> None:
        """One policy-gradient step of G, then `d_iters_per_round` D iterations (when there is a D)."""
        s = self.schedule
        self._timed("pg_step_s", lambda: self.state["rewards"].append(float(policy_gradient_step(
            self.generator, self.g_opt, self.rollout, self.score, s.batch_size, s.num_rollouts, s.grad_clip))))
        for _ in range(s.d_iters_per_round if self.discriminator is not None else 0):
            self.d_iteration()

    def d_iteration(self) -> None:
        """`d_negatives` fresh negatives from G and as many real sequences (all of them when there are
        no more, else a random subset), then `d_epochs` epochs over both."""
        s = self.schedule
        self.generator.eval()
        fake = self.generator.sample(s.d_negatives)
        self.generator.train()
        real = self.real
        if s.d_negatives < real.shape[0]:
            real = real[torch.randperm(real.shape[0], device=real.device)[: s.d_negatives]]
        acc = train_discriminator(self.d_train, self.d_opt, real, fake, s.d_epochs, s.batch_size)
        self.state["d_acc"].append(float(acc))

    def _timed(self, key: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        result = fn()
        self.state["timings"][key] += time.perf_counter() - start
        return result
