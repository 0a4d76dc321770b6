"""`seqlab attention`: a heatmap of where a seq2seq model looks in the source while it writes each token."""

from __future__ import annotations

from pathlib import Path

import typer

from seqlab.cli.options import DeviceOpt, JsonOpt, SeedOpt, print_json
from seqlab.errors import SeqlabError
from seqlab.runs import open_run

SEQ2SEQ_ARCHS = ("seq2seq_rnn", "seq2seq_transformer")


def register(app: typer.Typer) -> None:
    app.command("attention")(attention)


def attention(
    run: Path = typer.Argument(..., help="A seq2seq run directory."),
    source: str = typer.Option(..., "--source", help="The input text (e.g. a user turn)."),
    out: Path = typer.Option(..., "--out", help="The image to write (.png, .svg or .pdf)."),
    target: str = typer.Option(None, "--target", help="Score this target instead of the model's greedy reply."),
    layer: int = typer.Option(-1, "--layer", help="Transformer: the decoder layer (negative counts from the last)."),
    head: str = typer.Option("average", "--head", help="Transformer: a head number, or 'average' over heads."),
    max_new_tokens: int = typer.Option(40, "--max-new-tokens", help="Longest reply to generate."),
    device: str = DeviceOpt,
    seed: int = SeedOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Generate a reply to --source (greedy) and plot the attention weights (target x source) to --out.

    RNN models show their Bahdanau / Luong attention; the Transformer its cross-attention, of one
    --layer and one --head or averaged over heads. Chinese text is drawn with a CJK font.
    """
    import torch

    from seqlab.device import seed_everything
    from seqlab.eval.plots import plot_attention
    from seqlab.models.loading import load_model_from_run

    arch = open_run(run).read_config().model.arch  # unknown keys / attention types fail here, naming the choices
    if arch not in SEQ2SEQ_ARCHS:
        raise SeqlabError(f"{str(run)!r} is a {arch} run; `seqlab attention` needs a seq2seq model "
                          f"({' or '.join(SEQ2SEQ_ARCHS)})")
    head_index = _parse_head(head)
    if arch == "seq2seq_rnn" and (layer != -1 or head_index is not None):
        raise SeqlabError("--layer and --head apply to seq2seq_transformer runs; an RNN has one attention")
    if max_new_tokens <= 0:
        raise SeqlabError(f"--max-new-tokens must be > 0, got {max_new_tokens}")
    seed_everything(seed)
    model, tok, cfg = load_model_from_run(run, device)
    src = tok.encode(source)[-cfg.data.max_source_len:]
    if not src:
        raise SeqlabError("--source is empty (no tokens after tokenization)")
    src_ids = torch.tensor(src, dtype=torch.long, device=next(model.parameters()).device)
    tgt_ids = _target(model, tok, src_ids, target, max_new_tokens)
    kwargs = {} if arch == "seq2seq_rnn" else {"layer": layer, "head": head_index}
    weights = model.attention_weights(src_ids, tgt_ids, **kwargs)  # (T, S)
    src_tokens, tgt_tokens = _pieces(tok, src_ids.tolist()), _pieces(tok, tgt_ids.tolist())
    if arch == "seq2seq_transformer":
        what = f"cross-attention, layer {layer}, " + ("mean over heads" if head_index is None else f"head {head_index}")
    else:
        what = f"{cfg.model.attention} attention"
    path = plot_attention(weights, src_tokens, tgt_tokens, out, title=f"{Path(run).name}: {what}")
    if as_json:
        print_json({"plot": str(path), "source_tokens": src_tokens, "target_tokens": tgt_tokens,
                    "weights": weights.float().cpu().tolist()})
    else:
        typer.echo(f"reply: {tok.decode(tgt_ids.tolist())}")
        typer.echo(f"wrote {path}")


def _parse_head(head: str) -> int | None:
    if head == "average":
        return None
    try:
        return int(head)
    except ValueError:
        raise SeqlabError(f"--head must be a head number or 'average', got {head!r}") from None


def _target(model, tok, src_ids, target: str | None, max_new_tokens: int):
    """The target ids (T,) to explain: the given text + EOS, or the greedy reply (up to and including EOS)."""
    import torch

    from seqlab.decode import generate

    if target is not None:
        ids = tok.encode(target) + [tok.eos_id]
        return torch.tensor(ids, dtype=torch.long, device=src_ids.device)
    out = generate(model, src_ids[None], max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=tok.eos_id,
                   pad_token_id=tok.pad_id).sequences[0, 1:]  # drop the decoder start token
    ends = (out == tok.eos_id).nonzero()
    return out[:int(ends[0]) + 1] if len(ends) else out


def _pieces(tok, ids: list[int]) -> list[str]:
    """One readable label per token (specials such as <eos> included)."""
    return [tok.decode([i], skip_special=False) or tok.id_to_token(i) for i in ids]
