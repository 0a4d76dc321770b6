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
with `fill_id`, and their scores (`sequences_scores`). Alongside, each hypothesis carries the model's own
log-probability of each of its tokens, log softmax(logits)[token] before the processors (0 after its end):
a buffer that follows the hypotheses and plays no part in the search.
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
    token_logprobs: Tensor  # (B * num_return_sequences, generated) log p_model of each token, 0 after its end
    lengths: Tensor  # (B * num_return_sequences,) generated tokens, EOS included


def _pick(t: Tensor, index: Tensor) -> Tensor:
    """t (B, K, ...) -> t[b, index[b, j], ...] (B, J, ...): one index_select over the flattened rows."""
    B, K = t.shape[:2]
    flat = (index + torch.arange(B, device=index.device)[:, None] * K).view(-1)
    return t.reshape(B * K, *t.shape[2:]).index_select(0, flat).view(*index.shape, *t.shape[2:])


class LengthPenalty:
    """score / n ** lp for a generated length n held on the device (a CUDA graph replays one step for
    every n), with HF's arithmetic to the bit: HF divides by the Python number n ** lp, which the CPU does
    as a float32 division and CUDA as a multiplication by its float32 reciprocal (taken on the host); a
    table over n reproduces both."""

    def __init__(self, length_penalty: float, max_length: int, device: torch.device):
        self.length_penalty = length_penalty
        table = torch.tensor([float(max(n, 1)) ** length_penalty for n in range(max_length + 1)])  # (n_max + 1,)
        self.multiply = device.type == "cuda"
        self.table = (1.0 / table if self.multiply else table).to(device)

    def __call__(self, scores: Tensor, n: Tensor | int) -> Tensor:
        """scores (B, J) at generated length n: a Python int (the same at every step) or a (1,) long tensor."""
        if isinstance(n, int):
            return scores / (n ** self.length_penalty)
        factor = self.table.index_select(0, n)  # (1,)
        return scores * factor if self.multiply else scores / factor


@dataclass
class Finished:
    """The best `num_beams` finished hypotheses per input (placeholders score NEG until filled), in place."""

    sequences: Tensor  # (B, nb, L)
    scores: Tensor  # (B, nb) length-penalised
    lengths: Tensor  # (B, nb) generated tokens, EOS included
    flags: Tensor  # (B, nb) bool: a real hypothesis, not a placeholder
    logprobs: Tensor  # (B, nb, new) log p_model of each generated token, 0 after the end

    @classmethod
    def empty(cls, running: Tensor, running_logprobs: Tensor) -> Finished:
        B, nb, _ = running.shape
        return cls(running.clone(), torch.full((B, nb), NEG, device=running.device),
                   torch.zeros(B, nb, dtype=torch.long, device=running.device),
                   torch.zeros(B, nb, dtype=torch.bool, device=running.device), running_logprobs.clone())

    def offer(self, cand_seqs: Tensor, cand_scores: Tensor, cand_logprobs: Tensor, offered: Tensor, length: Tensor,
              penalty: LengthPenalty, closed: tuple[Tensor, ...]) -> None:
        """Merge the offered candidates (B, K), scored score / length ** lp, except for inputs `closed` (B, 1).

        The additions of NEG follow HF's arithmetic exactly, so ties resolve as they do there.
        """
        penalised = penalty(cand_scores, length)
        for block in closed:
            penalised += block.to(torch.float32) * NEG
        penalised += (~offered) * NEG
        merged = torch.cat((self.scores, penalised), dim=1)  # (B, nb + K)
        best = torch.topk(merged, self.scores.shape[1]).indices  # (B, nb)
        self.sequences.copy_(_pick(torch.cat((self.sequences, cand_seqs), dim=1), best))
        self.logprobs.copy_(_pick(torch.cat((self.logprobs, cand_logprobs), dim=1), best))
        self.scores.copy_(merged.gather(1, best))
        self.lengths.copy_(torch.cat((self.lengths, length.expand(offered.shape)), 1).gather(1, best))
        self.flags.copy_(torch.cat((self.flags, offered), dim=1).gather(1, best))


class Beams:
    """The search's hypotheses, advanced one token by `choose(logits)`: steps 1-4 of the module docstring,
    then the model's state reordered to the new running beams.

    Every tensor the host reads afterwards is updated in place, and a call never waits for the device
    when the host checks for the end only every few steps (`sync_every` > 1), so on a GPU a CUDA graph
    records `choose` with the model's step (`CapturedStep.advance`). The loop moves `length` (the host's
    tokens per row so far); `column` is its device copy, which the recorded kernels read.
    """

    def __init__(self, prefix: Tensor, state: Any, reorder: Callable[[Any, Tensor], Any], *, num_beams: int,
                 max_new_tokens: int, processors: ProcessorList, eos_ids: list[int], fill_id: int | None,
                 length_penalty: float, early_stopping: bool | str, do_sample: bool,
                 generator: torch.Generator | None, stop: Callable[[Tensor], Tensor] | None, sync_every: int):
        N, P = prefix.shape
        B, nb, device = N // num_beams, num_beams, prefix.device
        self.B, self.nb, self.P, self.max_length = B, nb, P, P + max_new_tokens
        self.K = max(2, 1 + len(eos_ids)) * nb
        self.top_nb = torch.arange(self.K, device=device) < nb  # (K,)
        self.eos = torch.tensor(eos_ids, device=device) if eos_ids else None
        self.beam_offset = torch.arange(B, device=device)[:, None] * nb  # (B, 1)
        self.processors, self.do_sample, self.generator, self.stop = processors, do_sample, generator, stop
        self.early_stopping, self.sync_every = early_stopping, sync_every
        self.state, self.reorder = state, reorder
        self.penalty = LengthPenalty(length_penalty, max_new_tokens, device)
        # HF's "can a running beam still win" heuristic assumes the longest length in one case
        self.best_length = max_new_tokens if early_stopping == "never" and length_penalty > 0.0 else None

        self.running = prefix.new_full((B, nb, self.max_length), 0 if fill_id is None else fill_id)
        self.running[:, :, :P] = prefix.view(B, nb, P)
        self.running_scores = torch.zeros(B, nb, device=device)
        self.running_scores[:, 1:] = NEG  # all beams start equal: let only the first one expand at step 1
        self.running_logprobs = torch.zeros(B, nb, max_new_tokens, device=device)  # (B, nb, new) per token
        self.finished = Finished.empty(self.running, self.running_logprobs)
        self.can_improve = torch.ones(B, 1, dtype=torch.bool, device=device)
        self.all_hit = torch.zeros((), dtype=torch.bool, device=device)  # every candidate of the last step hit
        self.length = P  # host: tokens per row so far
        self.column = torch.tensor([P], device=device)  # device: the column this step writes
        self.tokens = prefix.new_zeros(N)  # (N,) the tokens just chosen, the next step's input

    def choose(self, logits: Tensor) -> Tensor:
        """logits (B * nb, V) after the running beams -> the next running beams' last tokens (N,)."""
        B, nb, L = self.B, self.nb, self.max_length
        last = self.length + 1 == L
        # 1. the K best (or sampled) candidates over all beams x tokens
        model_log_probs = torch.log_softmax(logits.float(), dim=-1)  # (B * nb, V)
        log_probs = self.processors(self.running.view(B * nb, L)[:, :self.length], model_log_probs)
        V = log_probs.shape[-1]
        totals = (log_probs.view(B, nb, V) + self.running_scores[:, :, None]).view(B, nb * V)
        cand_scores, cand = _candidates(totals, self.K, self.do_sample, self.generator)  # (B, K)
        parent, tokens = cand // V, cand % V  # beam index within the input, token id
        cand_token_logprobs = model_log_probs.view(B, nb * V).gather(1, cand)  # (B, K)
        # when the host syncs every step anyway and the hits need only the tokens (no stop strings), the
        # candidates' whole rows are built only on the few steps where one of them may finish
        host = self.sync_every == 1 and self.stop is None
        if host:
            hits = self._hits(None, tokens, last)  # (B, K)
            offered = hits & self.top_nb[None, :]
            merge = bool(offered.any())
        if not host or merge:
            cand_seqs, cand_logprobs = self._candidate_rows(parent, tokens, cand_token_logprobs)
        if not host:
            hits = self._hits(cand_seqs, tokens, last)
            offered = hits & self.top_nb[None, :]
            merge = self.sync_every > 1 or bool(offered.any())

        # 2. next running beams: the best candidates that did not hit
        alive_scores = cand_scores + hits.to(torch.float32) * NEG
        keep = torch.topk(alive_scores, nb).indices  # (B, nb)
        kept_parent = parent.gather(1, keep)  # (B, nb)
        if host and not merge:  # the kept candidates' rows straight from their parents, then their token
            self.running.copy_(_pick(self.running, kept_parent))
            self.running.index_copy_(2, self.column, tokens.gather(1, keep)[:, :, None])
            self.running_logprobs.copy_(_pick(self.running_logprobs, kept_parent))
            self.running_logprobs.index_copy_(2, self.column - self.P, cand_token_logprobs.gather(1, keep)[:, :, None])
        else:
            self.running.copy_(_pick(cand_seqs, keep))
            self.running_logprobs.copy_(_pick(cand_logprobs, keep))
        self.running_scores.copy_(alive_scores.gather(1, keep))
        beam_idx = (kept_parent + self.beam_offset).view(B * nb)

        # 3. the top-nb hitting candidates may enter the finished list (when the host syncs every step
        #    anyway, skip the merge on the many steps where nothing finishes)
        generated = self.column + 1 - self.P  # (1,) tokens generated, this one included
        if merge:
            full = self.finished.flags.all(dim=-1, keepdim=True) & (self.early_stopping is True)
            self.finished.offer(cand_seqs, cand_scores, cand_logprobs, offered, generated, self.penalty,
                                (full, ~self.can_improve))

        # 4. can any running beam still beat the worst finished hypothesis?
        best_running = self.penalty(self.running_scores[:, :1],
                                    generated if self.best_length is None else self.best_length)  # (B, 1)
        worst = torch.where(self.finished.flags, self.finished.scores.min(dim=1, keepdim=True).values, NEG)
        self.can_improve &= (best_running > worst).any(dim=-1, keepdim=True)
        self.all_hit.copy_(hits.all())

        self.tokens.copy_(self.running.index_select(2, self.column).view(B * nb))
        self.column += 1
        if not last:
            self.state = self.reorder(self.state, beam_idx)
        return self.tokens

    def _candidate_rows(self, parent: Tensor, tokens: Tensor, token_logprobs: Tensor) -> tuple[Tensor, Tensor]:
        """Each candidate's whole row (B, K, L) and its tokens' log-probabilities (B, K, new): its parent
        beam's, with the candidate's token (and its log-probability) at this step's column."""
        cand_seqs = _pick(self.running, parent)  # (B, K, L)
        cand_seqs.index_copy_(2, self.column, tokens[:, :, None])
        cand_logprobs = _pick(self.running_logprobs, parent)  # (B, K, new)
        cand_logprobs.index_copy_(2, self.column - self.P, token_logprobs[:, :, None])
        return cand_seqs, cand_logprobs

    def _hits(self, cand_seqs: Tensor | None, tokens: Tensor, last: bool) -> Tensor:
        """(B, K) bool: the candidate ends in EOS or a stop string, or fills the last position."""
        if last:
            return torch.ones_like(tokens, dtype=torch.bool)
        if self.eos is None:
            hits = torch.zeros_like(tokens, dtype=torch.bool)
        else:
            hits = (tokens[:, :, None] == self.eos).any(dim=-1)
        if self.stop is not None:
            B, K, _ = cand_seqs.shape
            hits |= self.stop(cand_seqs[:, :, :self.length + 1].reshape(B * K, self.length + 1)).view(B, K)
        return hits

    def done(self) -> bool:
        """No input can improve, or (early_stopping=True) every input has num_beams finished (waits for the device)."""
        if self.early_stopping is True and bool(self.finished.flags.all()):
            return True
        return not bool(self.can_improve.any()) or bool(self.all_hit)


@torch.no_grad()
def beam_search(step: Callable[[Tensor, Any], tuple[Tensor, Any]], reorder: Callable[[Any, Tensor], Any],
                prefix: Tensor, logits: Tensor, state: Any, *, num_beams: int, max_new_tokens: int,
                processors: ProcessorList, eos_ids: list[int], fill_id: int | None, length_penalty: float,
                early_stopping: bool | str, num_return_sequences: int, do_sample: bool = False,
                generator: torch.Generator | None = None, stop: Callable[[Tensor], Tensor] | None = None,
                sync_every: int = 1) -> BeamResult:
    """Beam search from `prefix` (B * num_beams, P), whose rows repeat each input `num_beams` times;
    `logits` (B * num_beams, V) and `state` come from the model's prefill on those rows.

    When `step` can record the choice with it (`advance`: the GPU fast path), the search is deterministic
    and no processor reads the tokens, each later step is one replayed graph: the model's step, the choice,
    the reorder of the state.
    """
    beams = Beams(prefix, state, reorder, num_beams=num_beams, max_new_tokens=max_new_tokens, processors=processors,
                  eos_ids=eos_ids, fill_id=fill_id, length_penalty=length_penalty, early_stopping=early_stopping,
                  do_sample=do_sample, generator=generator, stop=stop, sync_every=sync_every)
    recordable = stop is None and not do_sample and not processors.reads_ids and sync_every > 1
    fused = getattr(step, "advance", None) if recordable else None
    for t in range(max_new_tokens):
        if t == 0 or fused is None:
            tokens = beams.choose(logits)
        else:  # the model's step on the last tokens, then the choice: one graph per plan
            plan = (processors.plan(beams.length), beams.length + 1 == beams.max_length)
            tokens = fused(beams.choose, tokens, beams.state, plan)
        beams.length += 1
        if beams.length == beams.max_length or ((t + 1) % sync_every == 0 and beams.done()):
            break
        if fused is None:
            logits, beams.state = step(tokens, beams.state)

    finished = beams.finished
    length = beams.P + int(finished.lengths[:, :num_return_sequences].max())
    return BeamResult(finished.sequences[:, :num_return_sequences, :length].reshape(-1, length),
                      finished.scores[:, :num_return_sequences].reshape(-1),
                      finished.logprobs[:, :num_return_sequences, :length - beams.P].reshape(-1, length - beams.P),
                      finished.lengths[:, :num_return_sequences].reshape(-1))


def _candidates(totals: Tensor, K: int, do_sample: bool, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """(scores, flat indices) of the K best entries of totals (B, nb*V), or K sampled without replacement."""
    if not do_sample:
        return torch.topk(totals, K)
    cand = torch.multinomial(totals.softmax(dim=-1), K, generator=generator)  # (B, K)
    cand_scores, order = totals.gather(1, cand).sort(dim=-1, descending=True)
    return cand_scores, cand.gather(1, order)

