"""Magnitude pruning of a trained model: zero its smallest weights, or remove whole heads and hidden units.

    pruned, model_cfg = prune(model, config.model, amount=0.5)                      # unstructured
    pruned, model_cfg = prune(model, config.model, amount=0.5, structured="heads")  # n_head halves

Unstructured (Han et al. 2015): in every prunable weight matrix W (`prunable_weights`: the Linear layers
and the recurrent W_ih, W_hh) the k = round(amount * |W|) entries of smallest |w| become 0, matrix by
matrix, so every layer loses the same share (one global threshold would empty GPT-2's residual
projections first: they are initialised 1/sqrt(2 n_layer) smaller). Embeddings (and the output layer
tied to them), position tables, biases and LayerNorms are kept. The shapes stay: dense kernels multiply
the zeros like any other number, so the model is no faster and its file no smaller.

Structured pruning removes rows and columns, so the tensors (the file, the work per token) shrink. The
same number goes in every layer, so the config stays uniform and the run builds from its config.yaml:

    heads    Transformers: head h of an attention scores s_h = ||[W_q; W_k; W_v]_h||^2 + ||W_o[:, h]||^2
             (its rows of the query, key and value projections, its columns of the output projection);
             each attention keeps its n_head - r best heads, r = round(amount * n_head). model.n_head
             shrinks and model.head_dim keeps the head width, so the attention is narrower than n_embd.
    neurons  Transformers: MLP hidden unit j scores ||W_up[j]|| * ||W_down[:, j]||; each MLP keeps the
             same number (model.mlp_width).
             rnn_lm: recurrent unit j of layer l scores ||its rows of every gate in W_ih, W_hh, its
             column of W_hh and of what reads h_l (the next layer's W_ih, or the output layer)||^2; every
             layer keeps the same number (model.hidden_size). With tied embeddings and hidden_size =
             n_embd the output layer reads h directly: it gets the projection P = I[:, kept] (exact).
             seq2seq_rnn: decoder unit j of layer l starts from the encoder's unit j of layer l, so the
             pair goes together (scored by their gate rows; a bidirectional encoder loses as many units
             in each direction); the attentional vector (W_c's rows) and Bahdanau's scoring units keep
             their own best. model.hidden_size shrinks on both sides.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import torch
from torch import Tensor, nn

from seqlab.config import ModelConfig
from seqlab.errors import SeqlabError
from seqlab.modules.linear import Linear

STRUCTURES = ("heads", "neurons")
GATES = {"LSTM": 4, "GRU": 3}  # rows per hidden unit in torch's W_ih / W_hh (nn.RNN: 1)


def check_amount(amount: float) -> float:
    """`amount` if it is a fraction in (0, 1); NaN, 0, 1 and anything outside are a SeqlabError."""
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not 0.0 < amount < 1.0:
        raise SeqlabError(f"--amount is the fraction to prune and must be in (0, 1), e.g. 0.5; got {amount}")
    return float(amount)


def kept_units(cfg: ModelConfig, amount: float, structured: str) -> tuple[int, int]:
    """(units each layer has, units each layer keeps) for structured pruning of a model `cfg` by `amount`;
    a SeqlabError when the architecture has no such units or the amount removes none or all of them."""
    amount = check_amount(amount)
    if structured not in STRUCTURES:
        raise SeqlabError(f"unknown --structured {structured!r}; choose one of {', '.join(STRUCTURES)}")
    transformer = cfg.arch in ("transformer_lm", "seq2seq_transformer")
    if structured == "heads" and not transformer:
        raise SeqlabError(f"--structured heads needs a Transformer (attention heads); this run is a {cfg.arch}: "
                          "use --structured neurons or unstructured pruning")
    what, total = {"heads": ("attention heads", cfg.n_head),
                   "neurons": ("MLP hidden units", cfg.mlp_width or 4 * cfg.n_embd) if transformer
                   else ("recurrent hidden units", cfg.hidden_size)}[structured]
    halves = 2 if cfg.arch == "seq2seq_rnn" and cfg.bidirectional else 1  # each encoder direction alike
    removed = halves * math.floor(amount * total / halves + 0.5)
    if removed >= total:
        raise SeqlabError(f"--amount {amount:g} would remove all {total} {what} of every layer; give a smaller amount")
    if removed == 0:
        raise SeqlabError(f"--amount {amount:g} removes none of the {total} {what} of a layer (it rounds to 0); "
                          f"give at least {0.5 / total:.3g}")
    keep = total - removed
    projected = cfg.tie_embeddings and cfg.hidden_size != cfg.n_embd  # h -> n_embd through a projection
    if cfg.arch in ("rnn_lm", "seq2seq_rnn") and structured == "neurons" and projected and keep == cfg.n_embd:
        raise SeqlabError(f"--amount {amount:g} leaves {keep} recurrent units, model.n_embd: a tied model of that "
                          "size has no projection to hold the pruned model's output layer; give another amount")
    return total, keep


def prune(model: nn.Module, cfg: ModelConfig, amount: float,
          structured: str | None = None) -> tuple[nn.Module, ModelConfig]:
    """A pruned copy of `model` (built from `cfg`) and the model config that builds the copy; `model` is
    left as it is. `structured` None zeroes weights, "heads" / "neurons" remove them (module docstring)."""
    if structured is None:
        check_amount(amount)
        pruned = copy.deepcopy(model)
        prune_unstructured(pruned, amount)
        return pruned, cfg
    _, keep = kept_units(cfg, amount, structured)
    pruned = copy.deepcopy(model)
    pruned_cfg = _prune_structure(pruned, cfg, structured, keep)
    return pruned.train(model.training), pruned_cfg  # the new layers in the mode of the others


def _prune_structure(pruned: nn.Module, cfg: ModelConfig, structured: str, keep: int) -> ModelConfig:
    """Remove all but `keep` units of each layer of `pruned`, in place; the config that builds the result."""
    if structured == "heads":
        head_dim = cfg.head_dim or cfg.n_embd // cfg.n_head
        for block, inputs, out in _attentions(pruned):
            _prune_heads(block, inputs, out, keep, head_dim)
        if hasattr(pruned, "n_head"):
            pruned.n_head = keep
        return dataclasses.replace(cfg, n_head=keep, head_dim=head_dim)
    if cfg.arch == "rnn_lm":
        _prune_recurrent_units(pruned, keep)
        return dataclasses.replace(cfg, hidden_size=keep)
    if cfg.arch == "seq2seq_rnn":
        _prune_seq2seq_units(pruned, keep)
        return dataclasses.replace(cfg, hidden_size=keep)
    for mlp, up, down in _mlps(pruned):
        _prune_mlp_units(mlp, up, down, keep)
    if hasattr(pruned, "mlp_width"):
        pruned.mlp_width = keep
    return dataclasses.replace(cfg, mlp_width=keep)


# ----------------------------------------------------------------------------- unstructured


def prunable_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """The matrices unstructured pruning zeroes: every Linear's weight and every recurrent W_ih / W_hh, but
    not a weight shared with an embedding (the tied output layer), by their first name."""
    skip = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    found: dict[str, nn.Parameter] = {}
    for prefix, module in model.named_modules():
        if isinstance(module, nn.Linear):
            params = [("weight", module.weight)]
        elif isinstance(module, nn.RNNBase):
            params = [(n, p) for n, p in module.named_parameters(recurse=False) if n.startswith("weight_")]
        else:
            continue
        for name, p in params:
            if id(p) not in skip:
                skip.add(id(p))
                found[f"{prefix}.{name}" if prefix else name] = p
    return found


@torch.no_grad()
def prune_unstructured(model: nn.Module, amount: float) -> int:
    """Zero the round(amount * |W|) smallest-magnitude entries of every prunable matrix W, in place;
    returns how many weights were zeroed."""
    amount = check_amount(amount)
    zeroed = 0
    for p in prunable_weights(model).values():
        k = math.floor(amount * p.numel() + 0.5)
        if k:
            smallest = p.detach().abs().flatten().topk(k, largest=False).indices  # (k,)
            p.view(-1).index_fill_(0, smallest, 0.0)
            zeroed += k
    return zeroed


def sparsity(model: nn.Module) -> float:
    """The share of exact zeros in the prunable matrices."""
    weights = list(prunable_weights(model).values())
    return sum(int((p == 0).sum()) for p in weights) / max(1, sum(p.numel() for p in weights))


def hold_zeros(model: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Keep the prunable weights that are 0 now at 0 while `optimizer` trains `model`: their gradients are
    masked (so they neither count in gradient clipping nor feed AdamW's moments) and they are set back to 0
    after every step (weight decay, fused kernels). Returns how many weights are held."""
    masks = [(p, p.detach() == 0) for p in prunable_weights(model).values()]
    masks = [(p, zero) for p, zero in masks if bool(zero.any())]
    for p, zero in masks:
        p.register_hook(lambda grad, zero=zero: grad.masked_fill(zero, 0.0))

    def restore(*_: Any) -> None:
        with torch.no_grad():
            for p, zero in masks:
                p.masked_fill_(zero, 0.0)

    optimizer.register_step_post_hook(restore)
    return sum(int(zero.sum()) for _, zero in masks)


# ----------------------------------------------------------------------------- structured


def _slice_linear(linear: nn.Linear, rows: Tensor | None = None, cols: Tensor | None = None) -> Linear:
    """A Linear holding the `rows` (outputs) and `cols` (inputs) of `linear`'s weight (and its bias rows)."""
    weight = linear.weight.detach()
    weight = weight if rows is None else weight[rows]
    weight = weight if cols is None else weight[:, cols]
    out = Linear(weight.size(1), weight.size(0), bias=linear.bias is not None, device=weight.device,
                 dtype=weight.dtype)
    with torch.no_grad():
        out.weight.copy_(weight)
        if linear.bias is not None:
            out.bias.copy_(linear.bias if rows is None else linear.bias[rows])
    return out


def _top(scores: Tensor, keep: int) -> Tensor:
    """The indices of the `keep` highest scores, in their original order (on the CPU, where the index
    arithmetic happens; they index weights on any device)."""
    return scores.topk(keep).indices.sort().values.cpu()


def _attentions(model: nn.Module) -> list[tuple[nn.Module, list[tuple[str, int]], str]]:
    """Every attention of a Transformer: (module, [(input projection's name, parts it stacks)], output's name)."""
    from seqlab.models.seq2seq_transformer import Attention
    from seqlab.models.transformer_lm import CausalSelfAttention

    found = []
    for module in model.modules():
        if isinstance(module, CausalSelfAttention):
            found.append((module, [("c_attn", 3)], "c_proj"))  # c_attn rows: [q | k | v], each nh * hs
        elif isinstance(module, Attention):
            found.append((module, [("q", 1), ("kv", 2)], "proj"))  # kv rows: [k | v]
    return found


@torch.no_grad()
def _prune_heads(attn: nn.Module, inputs: list[tuple[str, int]], out: str, keep: int, head_dim: int) -> None:
    """Keep the `keep` heads of `attn` with the largest squared weight norm (module docstring), in place."""
    n_head, width = attn.n_head, attn.n_head * head_dim
    scores = getattr(attn, out).weight.view(-1, n_head, head_dim).pow(2).sum((0, 2))  # (C, nh, hs) -> (nh,)
    for name, parts in inputs:
        scores = scores + getattr(attn, name).weight.view(parts, n_head, head_dim, -1).pow(2).sum((0, 2, 3))
    heads = _top(scores, keep)  # (keep,)
    within = (heads[:, None] * head_dim + torch.arange(head_dim)).flatten()  # (keep * hs,) of one part
    for name, parts in inputs:
        rows = (torch.arange(parts)[:, None] * width + within).flatten()  # (parts * keep * hs,)
        setattr(attn, name, _slice_linear(getattr(attn, name), rows=rows))
    setattr(attn, out, _slice_linear(getattr(attn, out), cols=within))
    attn.n_head = keep


def _mlps(model: nn.Module) -> list[tuple[nn.Module, str, str]]:
    """Every Transformer MLP: (module, up projection's name, down projection's name)."""
    from seqlab.models.seq2seq_transformer import MLP as Seq2SeqMLP
    from seqlab.models.transformer_lm import MLP

    return [(m, "c_fc", "c_proj") if isinstance(m, MLP) else (m, "up", "down")
            for m in model.modules() if isinstance(m, (MLP, Seq2SeqMLP))]


@torch.no_grad()
def _prune_mlp_units(mlp: nn.Module, up: str, down: str, keep: int) -> None:
    """Keep the `keep` hidden units with the largest ||W_up[j]|| * ||W_down[:, j]||, in place."""
    w_up, w_down = getattr(mlp, up).weight, getattr(mlp, down).weight  # (M, C), (C, M)
    units = _top(w_up.norm(dim=1) * w_down.norm(dim=0), keep)
    setattr(mlp, up, _slice_linear(getattr(mlp, up), rows=units))
    setattr(mlp, down, _slice_linear(getattr(mlp, down), cols=units))


@torch.no_grad()
def _prune_recurrent_units(model: nn.Module, keep: int) -> None:
    """rnn_lm: keep `keep` units of every recurrent layer (module docstring), in place; the output side
    (projection, or untied output layer) loses the top layer's removed inputs."""
    rnn = model.rnn
    H, L, gates = rnn.hidden_size, rnn.num_layers, GATES.get(rnn.mode, 1)
    weights = {name: p.detach() for name, p in rnn.named_parameters()}
    reader = model.proj.weight if model.proj is not None else model.lm_head.weight  # (E | V, H): reads h_top
    kept = []
    for layer in range(L):
        w_ih, w_hh = weights[f"weight_ih_l{layer}"], weights[f"weight_hh_l{layer}"]  # (g H, in), (g H, H)
        score = (w_ih.view(gates, H, -1).pow(2).sum((0, 2)) + w_hh.view(gates, H, H).pow(2).sum((0, 2))
                 + w_hh.pow(2).sum(0))  # rows of every gate, and the recurrent column: (H,)
        after = weights[f"weight_ih_l{layer + 1}"] if layer + 1 < L else reader  # (·, H)
        kept.append(_top(score + after.pow(2).sum(0), keep))
    smaller = type(rnn)(rnn.input_size, keep, num_layers=L, batch_first=rnn.batch_first, dropout=rnn.dropout,
                        device=reader.device, dtype=reader.dtype)
    for layer, units in enumerate(kept):  # rows (g keep,): each kept unit's row in every gate
        _copy_layer(smaller, weights, f"l{layer}", _unit_rows(units, gates, H), None if layer == 0 else kept[layer - 1],
                    units)
    model.rnn, model.hidden_size = smaller, keep
    top = kept[-1]
    if model.proj is not None:
        model.proj = _slice_linear(model.proj, cols=top)
    elif model.lm_head.weight is model.embedding.weight:  # tied, H == E: h_top feeds the output layer directly
        identity = nn.Linear(model.n_embd, model.n_embd, bias=False, device=reader.device, dtype=reader.dtype)
        identity.weight.copy_(torch.eye(model.n_embd, device=reader.device, dtype=reader.dtype))
        model.proj = _slice_linear(identity, cols=top)  # P = I[:, kept]: (E, keep)
    else:
        model.lm_head = _slice_linear(model.lm_head, cols=top)


def _copy_layer(target: nn.Module, weights: dict[str, Tensor], layer: str, rows: Tensor, inputs: Tensor | None,
                units: Tensor) -> None:
    """Recurrent layer `layer` ("l0", "l1_reverse", ...) of `weights` into the smaller `target`: rows `rows` of
    every gate, the recurrent columns of the kept `units`, the input columns `inputs` (None: all of them)."""
    w_ih = weights[f"weight_ih_{layer}"][rows]
    new = {f"weight_ih_{layer}": w_ih if inputs is None else w_ih[:, inputs],
           f"weight_hh_{layer}": weights[f"weight_hh_{layer}"][rows][:, units],
           f"bias_ih_{layer}": weights[f"bias_ih_{layer}"][rows],
           f"bias_hh_{layer}": weights[f"bias_hh_{layer}"][rows]}
    for name, value in new.items():
        getattr(target, name).copy_(value)


def _unit_rows(units: Tensor, gates: int, hidden: int) -> Tensor:
    """The rows of `units` in every gate of a recurrent weight with `gates` blocks of `hidden` rows."""
    return (torch.arange(gates)[:, None] * hidden + units).flatten()


def _row_scores(w: Tensor, gates: int, hidden: int) -> Tensor:
    """Squared norm of each unit's rows across the gates of w (g hidden, ·) -> (hidden,)."""
    return w.view(gates, hidden, -1).pow(2).sum((0, 2))


@torch.no_grad()
def _prune_seq2seq_units(model: nn.Module, keep: int) -> None:
    """seq2seq_rnn: keep `keep` of the H units in every layer, in place. Decoder unit j of layer l starts from
    the encoder's unit j of layer l (forward units, then backward ones), and the memory is the encoder's top
    layer, so one set K_l per layer serves both sides (half from each direction); the attentional vector o_t
    (W_c's rows) and Bahdanau's scoring MLP keep their own best `keep`."""
    enc, dec = model.encoder, model.decoder
    H, L, gates = dec.hidden_size, dec.num_layers, GATES.get(dec.mode, 1)
    half = enc.hidden_size  # units per direction
    ew = {name: p.detach() for name, p in enc.named_parameters()}
    dw = {name: p.detach() for name, p in dec.named_parameters()}
    suffixes = ["", "_reverse"] if enc.bidirectional else [""]
    kept = []  # per layer: K_l (keep,) in decoder numbering
    for layer in range(L):
        score = _row_scores(dw[f"weight_ih_l{layer}"], gates, H) + _row_scores(dw[f"weight_hh_l{layer}"], gates, H)
        enc_score = torch.cat([_row_scores(ew[f"weight_ih_l{layer}{sfx}"], gates, half)
                               + _row_scores(ew[f"weight_hh_l{layer}{sfx}"], gates, half) for sfx in suffixes])
        score = score + enc_score  # (H,)
        per_half = keep // len(suffixes)
        kept.append(torch.cat([d * half + _top(score[d * half:(d + 1) * half], per_half)
                               for d in range(len(suffixes))]))
    top = kept[-1]
    width = dw["weight_ih_l0"].size(1) - model.tgt_embed.embedding_dim  # decoder inputs after the embedding: 0 or H
    o_units = top if model.W_c is None else _top(model.W_c.weight.pow(2).sum(1), keep)  # o_t's dims (keep,)

    where = {"device": dw["weight_ih_l0"].device, "dtype": dw["weight_ih_l0"].dtype}  # the model's
    smaller_enc = type(enc)(enc.input_size, keep // len(suffixes), L, batch_first=True, dropout=enc.dropout,
                            bidirectional=enc.bidirectional, **where)
    for layer, units in enumerate(kept):
        for d, sfx in enumerate(suffixes):
            own = units[(units >= d * half) & (units < (d + 1) * half)] - d * half  # this direction's units
            _copy_layer(smaller_enc, ew, f"l{layer}{sfx}", _unit_rows(own, gates, half),
                        None if layer == 0 else kept[layer - 1], own)

    E = model.tgt_embed.embedding_dim
    feeds = top if model.attention_type == "bahdanau" else o_units  # the context, or o_{t-1} (input feeding)
    first_inputs = torch.cat([torch.arange(E), E + feeds]) if width else torch.arange(E)
    smaller_dec = type(dec)(E + (keep if width else 0), keep, L, batch_first=True, dropout=dec.dropout, **where)
    for layer, units in enumerate(kept):
        _copy_layer(smaller_dec, dw, f"l{layer}", _unit_rows(units, gates, H),
                    first_inputs if layer == 0 else kept[layer - 1], units)
    model.encoder, model.decoder = smaller_enc, smaller_dec

    attn = model.attn
    if attn is not None and attn.kind == "luong-general":
        attn.W_a = _slice_linear(attn.W_a, rows=top, cols=top)  # (query dims, memory dims)
    elif attn is not None and attn.kind == "bahdanau":
        hidden = _top(attn.v_a.weight[0].abs() * (attn.W_q.weight.norm(dim=1) + attn.W_k.weight.norm(dim=1)), keep)
        attn.W_q = _slice_linear(attn.W_q, rows=hidden, cols=top)
        attn.W_k = _slice_linear(attn.W_k, rows=hidden, cols=top)
        attn.v_a = _slice_linear(attn.v_a, cols=hidden)
    if model.W_c is not None:  # W_c [a; b] with a, b each H wide: the memory's and the decoder's top units
        model.W_c = _slice_linear(model.W_c, rows=o_units, cols=torch.cat([top, H + top]))
    if isinstance(model.out_proj, nn.Linear):
        model.out_proj = _slice_linear(model.out_proj, cols=o_units)
    elif model.lm_head.weight is model.tgt_embed.weight:  # tied, H == E: o_t feeds the output layer directly
        identity = nn.Linear(H, H, bias=False, **where)
        identity.weight.copy_(torch.eye(H, **where))
        model.out_proj = _slice_linear(identity, cols=o_units)  # P = I[:, kept]: (E, keep)
    else:
        model.lm_head = _slice_linear(model.lm_head, cols=o_units)
