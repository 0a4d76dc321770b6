"""Beam search, batched over inputs and beams, with Hugging Face transformers 5.24.0's exact semantics.

Per input, `num_beams` running hypotheses carry a score: the sum of their processed log-probabilities
(processors act on log-softmax scores here). Each step:

 1. candidates: every running beam x every token, scored  score(beam) + processors(log p(v | beam));
    the best K = max(2, 1 + #EOS) * num_beams of them are kept (or sampled, with do_sample);
 2. a candidate "hits" when it ends in EOS, a stop string, or reaches the length limit;
 3. the best `num_beams` candidates that do not hit become the next running beams;
 4. hitting candidates ranked within the top `num_beams` of the K (and only those) are offered to
    the finished list with the length-penalised score
        score / (generated length, EOS included) ** length_penalty,
    and the finished list keeps its best `num_beams`;
 5. stop when no running beam can still beat the worst finished one (per input):
        early_stopping=True     as soon as `num_beams` hypotheses have finished;
        early_stopping=False    best running score / (current length ** lp)  <=  worst finished score;
        early_stopping="never"  like False but with the longest possible length when lp > 0.

The result is the best `num_return_sequences` finished hypotheses per input, longest first padded
with `fill_id`, and their scores (`sequences_scores`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from seqlab.decode.processors import ProcessorList

NEG = -1.0e9  # HF's "impossible" score; kept finite so that sums stay ordered


@dataclass
class BeamResult:
    sequences: Tensor  # (B * num_return_sequences, P + generated)
    scores: Tensor  # (B * num_return_sequences,)


def _pick(t: Tensor, index: Tensor) -> Tensor:
    """t (B, K, ...) -> t[b, index[b, j], ...] (B, J, ...): one index_select over the flattened rows."""
    B, K = t.shape[:2]
    flat = (index + torch.arange(B, device=index.device)[:, None] * K).view(-1)
    return t.reshape(B * K, *t.shape[2:]).index_select(0, flat).view(*index.shape, *t.shape[2:])


@dataclass
class Finished:
    """The best `num_beams` finished hypotheses per input (placeholders score NEG until filled)."""

    sequences: Tensor  # (B, nb, L)
    scores: Tensor  # (B, nb) length-penalised
    lengths: Tensor  # (B, nb) generated tokens, EOS included
    flags: Tensor  # (B, nb) bool: a real hypothesis, not a placeholder

    @classmethod
    def empty(cls, running: Tensor) -> Finished:
        B, nb, _ = running.shape
        return cls(running.clone(), torch.full((B, nb), NEG, device=running.device),
                   torch.zeros(B, nb, dtype=torch.long, device=running.device),
                   torch.zeros(B, nb, dtype=torch.bool, device=running.device))

    def offer(self, cand_seqs: Tensor, cand_scores: Tensor, offered: Tensor, length: int, length_penalty: float,
              closed: tuple[Tensor, ...]) -> None:
        """Merge the offered candidates (B, K), scored score / length ** lp, except for inputs `closed` (B, 1).

        The additions of NEG follow HF's arithmetic exactly, so ties resolve as they do there.
        """
        penalised = cand_scores / (length ** length_penalty)
        for block in closed:
            penalised += block.to(torch.float32) * NEG
        penalised += (~offered) * NEG
        merged = torch.cat((self.scores, penalised), dim=1)  # (B, nb + K)
        best = torch.topk(merged, self.scores.shape[1]).indices  # (B, nb)
        self.sequences = _pick(torch.cat((self.sequences, cand_seqs), dim=1), best)
        self.scores = merged.gather(1, best)
        self.lengths = torch.cat((self.lengths, torch.full_like(offered, length, dtype=torch.long)), 1).gather(1, best)
        self.flags = torch.cat((self.flags, offered), dim=1).gather(1, best)


@torch.no_grad()
def beam_search(step: Callable[[Tensor, Any], tuple[Tensor, Any]], reorder: Callable[[Any, Tensor], Any],
                prefix: Tensor, logits: Tensor, state: Any, *, num_beams: int, max_new_tokens: int,
                processors: ProcessorList, eos_ids: list[int], fill_id: int | None, length_penalty: float,
                early_stopping: bool | str, num_return_sequences: int, do_sample: bool = False,
                generator: torch.Generator | None = None, stop: Callable[[Tensor], Tensor] | None = None,
                sync_every: int = 1) -> BeamResult:
    """Beam search from `prefix` (B * num_beams, P), whose rows repeat each input `num_beams` times;
    `logits` (B * num_beams, V) and `state` come from the model's prefill on those rows."""
    N, P = prefix.shape
    B, nb, device = N // num_beams, num_beams, prefix.device
    max_length = P + max_new_tokens
    K = max(2, 1 + len(eos_ids)) * nb
    top_nb = torch.arange(K, device=device) < nb  # (K,)
    eos = torch.tensor(eos_ids, device=device) if eos_ids else None
    beam_offset = torch.arange(B, device=device)[:, None] * nb  # (B, 1)

    running = prefix.new_full((B, nb, max_length), 0 if fill_id is None else fill_id)
    running[:, :, :P] = prefix.view(B, nb, P)
    finished = Finished.empty(running)
    running_scores = torch.zeros(B, nb, device=device)
    running_scores[:, 1:] = NEG  # all beams start equal: let only the first one expand at step 1
    can_improve = torch.ones(B, 1, dtype=torch.bool, device=device)
    for cur_len in range(P, max_length):
        # 1. the K best (or sampled) candidates over all beams x tokens
        log_probs = processors(running.view(N, max_length)[:, :cur_len], torch.log_softmax(logits.float(), dim=-1))
        V = log_probs.shape[-1]
        totals = (log_probs.view(B, nb, V) + running_scores[:, :, None]).view(B, nb * V)
        cand_scores, cand = _candidates(totals, K, do_sample, generator)  # (B, K)
        parent, tokens = cand // V, cand % V  # beam index within the input, token id
        cand_seqs = _pick(running, parent)  # (B, K, L)
        cand_seqs[:, :, cur_len] = tokens
        hits = _hits(cand_seqs, tokens, cur_len, max_length, eos, stop)  # (B, K)

        # 2. next running beams: the best candidates that did not hit
        alive_scores = cand_scores + hits.to(torch.float32) * NEG
        keep = torch.topk(alive_scores, nb).indices  # (B, nb)
        running, running_scores = _pick(cand_seqs, keep), alive_scores.gather(1, keep)
        beam_idx = (parent.gather(1, keep) + beam_offset).view(N)

        # 3. the top-nb hitting candidates may enter the finished list (when the host syncs every step
        #    anyway, skip the merge on the many steps where nothing finishes)
        offered = hits & top_nb[None, :]
        if sync_every > 1 or bool(offered.any()):
            full = finished.flags.all(dim=-1, keepdim=True) & (early_stopping is True)
            finished.offer(cand_seqs, cand_scores, offered, cur_len + 1 - P, length_penalty, (full, ~can_improve))

        # 4. can any running beam still beat the worst finished hypothesis?
        can_improve = _can_improve(can_improve, running_scores, finished, cur_len + 1 - P, max_new_tokens,
                                   early_stopping, length_penalty)
        if cur_len + 1 == max_length:
            break
        if (cur_len + 1 - P) % sync_every == 0 and _done(can_improve, finished.flags, hits, early_stopping):
            break
        logits, state = step(running[:, :, cur_len].reshape(N), reorder(state, beam_idx))

    length = P + int(finished.lengths[:, :num_return_sequences].max())
    return BeamResult(finished.sequences[:, :num_return_sequences, :length].reshape(-1, length),
                      finished.scores[:, :num_return_sequences].reshape(-1))


def _candidates(totals: Tensor, K: int, do_sample: bool, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """(scores, flat indices) of the K best entries of totals (B, nb*V), or K sampled without replacement."""
    if not do_sample:
        return torch.topk(totals, K)
    cand = torch.multinomial(totals.softmax(dim=-1), K, generator=generator)  # (B, K)
    cand_scores, order = totals.gather(1, cand).sort(dim=-1, descending=True)
    return cand_scores, cand.gather(1, order)


def _hits(cand_seqs: Tensor, tokens: Tensor, cur_len: int, max_length: int, eos: Tensor | None,
          stop: Callable[[Tensor], Tensor] | None) -> Tensor:
    """(B, K) bool: the candidate ends in EOS or a stop string, or fills the last position."""
    if cur_len + 1 >= max_length:
        return torch.ones_like(tokens, dtype=torch.bool)
    hits = torch.isin(tokens, eos) if eos is not None else torch.zeros_like(tokens, dtype=torch.bool)
    if stop is not None:
        B, K, _ = cand_seqs.shape
        hits |= stop(cand_seqs[:, :, :cur_len + 1].reshape(B * K, cur_len + 1)).view(B, K)
    return hits


def _can_improve(can_improve: Tensor, running_scores: Tensor, finished: Finished, generated: int,
                 max_new_tokens: int, early_stopping: bool | str, length_penalty: float) -> Tensor:
    """HF's heuristic: the best running score at its best hypothetical length vs the worst finished one."""
    if early_stopping == "never" and length_penalty > 0.0:
        best_length = max_new_tokens
    else:
        best_length = generated
    best_running = running_scores[:, :1] / (best_length ** length_penalty)  # (B, 1)
    worst = torch.where(finished.flags, finished.scores.min(dim=1, keepdim=True).values, NEG)  # (B, nb)
    return can_improve & (best_running > worst).any(dim=-1, keepdim=True)


def _done(can_improve: Tensor, is_finished: Tensor, hits: Tensor, early_stopping: bool | str) -> bool:
    """Stop when no input can improve, or (early_stopping=True) every input has num_beams finished."""
    if early_stopping is True and bool(is_finished.all()):
        return True
    return not bool(can_improve.any()) or bool(hits.all())
