"""The decoder-state protocol: what the one decoding engine needs from every model.

Decoder-only LMs (RNN, Transformer) and encoder-decoders (Seq2Seq RNN, Transformer) all implement it,
so greedy, beam search, sampling and streaming work unchanged for each of them:

    logits, state = model.prefill(input_ids, attention_mask, max_new_tokens)   # [B, V]
    for each new token:
        logits, state = model.step(tokens, state)                              # tokens [B] -> [B, V]
        state = model.reorder_state(state, beam_idx)                           # beam search only

- decoder-only: `input_ids` [B, T] is the prompt (left-padded when `attention_mask` [B, T] has zeros);
  `prefill` returns the logits for the token after the prompt.
- encoder-decoder: `input_ids` is the source; `prefill` encodes it and feeds the decoder its start
  token (`decoder_start_token_id`), returning the logits for the first target token.
- `reorder_state(state, index)` picks rows of the batch: index [B'] (B' may differ from B, e.g. to
  expand each input into `num_beams` rows, or to follow beam back-pointers).
- `max_new_tokens` lets a model preallocate a static KV cache of T + max_new_tokens positions.
- encoder-decoders name their decoder start token `bos_id`: `generate` puts it first in `.sequences`.
- the GPU fast path (seqlab.decode.graphs) captures `step` in a CUDA graph when the model sets
  `capturable_step = True` (seqlab's TransformerLM qualifies): `step` then only updates the state's
  tensors in place (no Python-side counters), and `reorder_state` keeps their addresses when B' == B.

Continuous batching (seqlab.decode.batching) needs two more methods, optional for `generate`:

        state = model.merge_states(a, b)     # rows of a, then rows of b (b: a request's prefill)
        state = model.make_room(state)       # before a step; only models whose rows share a write slot

- `merge_states(a, b)` joins two states of any batch sizes (a may have 0 rows: the batch emptied), so
  that every row's logits are what they would be alone (up to float rounding). Recurrent states are
  concatenated; encoder-decoders pad the encoder memories (and their masks) to the longer source;
  the Transformers' static caches have one write slot for all rows, so the state that has written
  fewer slots is shifted right until both end at the same slot (positions are per row).
- rows leave through `reorder_state(state, index)` with the rows that stay (B' < B).
- `make_room(state)`: when the shared write slot has reached the end of the cache, shift every row
  left by the first slot any row uses (rows that joined late start further right).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class DecoderModel(Protocol):
    is_encoder_decoder: bool
    """True for Seq2Seq models: `input_ids` is the source and `.sequences` hold the target only."""

    max_length: int | None
    """Longest total length (prompt + generated) the model supports, or None when unbounded (RNNs)."""

    def prefill(self, input_ids: Tensor, attention_mask: Tensor | None, max_new_tokens: int) -> tuple[Tensor, Any]:
        ...

    def step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        ...

    def reorder_state(self, state: Any, index: Tensor) -> Any:
        ...
