"""`seqlab prune`: unstructured zeros, structured shrinking, pruned runs that decode, fine-tuning, bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import assert_one_line_error
from tiny_runs import (
    LM,
    SEQ2SEQ,
    config_for,
    make_run,
    one_thread,  # noqa: F401 - an autouse fixture
    train_run,
    write_pairs_corpus,
    write_text_corpus,
)

from seqlab.compress.prune import hold_zeros, prunable_weights, prune, sparsity
from seqlab.config import ModelConfig
from seqlab.models import build_model
from seqlab.models.memory import parameter_count

V = 23
IDS = {"pad_id": 0, "bos_id": 2, "eos_id": 3}
TRANSFORMER_LM = ModelConfig(arch="transformer_lm", n_layer=2, n_head=4, n_embd=32, context_length=16)
ROTARY_LM = ModelConfig(arch="transformer_lm", n_layer=2, n_head=4, n_embd=32, context_length=16,
                        positions="rotary", tie_embeddings=False)
SEQ2SEQ_TRANSFORMER = ModelConfig(arch="seq2seq_transformer", n_layer=2, n_head=4, n_embd=32, context_length=16)
LSTM_LM = ModelConfig(arch="rnn_lm", cell="lstm", n_layer=2, n_embd=32, hidden_size=32)  # tied, no projection
GRU_LM = ModelConfig(arch="rnn_lm", cell="gru", n_layer=2, n_embd=16, hidden_size=32, tie_embeddings=False)
SEQ2SEQ_RNN = ModelConfig(arch="seq2seq_rnn", cell="gru", n_layer=1, n_embd=16, hidden_size=24)


def built(cfg: ModelConfig, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(cfg, V, **IDS).eval()


def logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x, None, x) if model.is_encoder_decoder else model(x)  # (B, T, V)


X = torch.randint(4, V, (2, 8), generator=torch.Generator().manual_seed(1))


# ----------------------------------------------------------------------------- the library


@pytest.mark.parametrize("cfg", [TRANSFORMER_LM, LSTM_LM, SEQ2SEQ_TRANSFORMER, SEQ2SEQ_RNN], ids=lambda c: c.arch)
def test_unstructured_pruning_zeroes_the_amount_of_every_weight_matrix_and_nothing_else(cfg):
    model = built(cfg)
    before = {name: t.clone() for name, t in model.state_dict().items()}
    pruned, pruned_cfg = prune(model, cfg, 0.3)
    assert pruned_cfg == cfg
    matrices = prunable_weights(pruned)
    assert matrices
    for name, p in matrices.items():
        assert int((p == 0).sum()) == math.floor(0.3 * p.numel() + 0.5), name
        kept = p != 0
        assert torch.equal(p[kept], before[name][kept])  # the survivors are untouched
        assert before[name][~kept].abs().max() <= before[name][kept].abs().min()  # the smallest went
    for name, t in pruned.state_dict().items():  # embeddings, positions, biases and LayerNorms are kept
        if name not in matrices:
            assert torch.equal(t, before[name]), name
    assert sparsity(pruned) == pytest.approx(0.3, abs=1e-3)
    assert all(torch.equal(t, before[name]) for name, t in model.state_dict().items())  # the input is left alone


STRUCTURED = [(TRANSFORMER_LM, "heads", {"n_head": 2, "head_dim": 8}),
              (ROTARY_LM, "neurons", {"mlp_width": 64}),
              (SEQ2SEQ_TRANSFORMER, "heads", {"n_head": 2, "head_dim": 8}),
              (SEQ2SEQ_TRANSFORMER, "neurons", {"mlp_width": 64}),
              (LSTM_LM, "neurons", {"hidden_size": 16}),
              (GRU_LM, "neurons", {"hidden_size": 16}),
              (SEQ2SEQ_RNN, "neurons", {"hidden_size": 12})]


@pytest.mark.parametrize("cfg, structured, sizes", STRUCTURED,
                         ids=[f"{c.arch}-{c.cell if c.arch == 'rnn_lm' else c.positions}-{s}" for c, s, _ in STRUCTURED])
def test_structured_pruning_shrinks_the_model_which_builds_from_its_new_config(cfg, structured, sizes):
    model = built(cfg)
    pruned, pruned_cfg = prune(model, cfg, 0.5, structured)
    assert {key: getattr(pruned_cfg, key) for key in sizes} == sizes
    assert not any(m.training for m in pruned.modules())  # the new layers too are in eval mode, as the model was
    rebuilt = build_model(pruned_cfg, V, **IDS).eval()
    rebuilt.load_state_dict(pruned.state_dict())  # strict: every name and shape as the config builds them
    assert torch.equal(logits(rebuilt, X), logits(pruned, X))
    stored = sum(t.numel() for t in {id(t): t for t in [*rebuilt.parameters(), *rebuilt.buffers()]}.values())
    assert parameter_count(pruned_cfg, V) == stored  # the memory estimate knows the new widths
    assert stored < parameter_count(cfg, V)


SEQ2SEQ_RNN_CASES = [
    ModelConfig(arch="seq2seq_rnn", cell="lstm", n_layer=2, n_embd=16, hidden_size=16, attention="luong-general",
                tie_embeddings=False, share_embeddings=False),
    ModelConfig(arch="seq2seq_rnn", cell="gru", n_layer=2, n_embd=16, hidden_size=16, attention="bahdanau"),
    ModelConfig(arch="seq2seq_rnn", cell="gru", n_layer=1, n_embd=16, hidden_size=16, attention="luong-dot",
                bidirectional=False, input_feeding=False),
    ModelConfig(arch="seq2seq_rnn", cell="lstm", n_layer=1, n_embd=16, hidden_size=16, attention="none"),
]


@pytest.mark.parametrize("cfg", SEQ2SEQ_RNN_CASES, ids=lambda c: f"{c.cell}-{c.attention}-bi{c.bidirectional}")
def test_seq2seq_rnn_units_that_never_fire_go_and_the_logits_stay(cfg):
    """Units 1 and 9 of every layer (the second of each encoder direction) get all-zero rows in every gate on
    both sides, so they stay exactly 0 from the zero initial state; two rows of W_c and two of Bahdanau's
    scoring units are zero as well. Pruning 2 of 16 units removes exactly those: the logits do not change."""
    model = built(cfg)
    dead = torch.tensor([1, 9])
    with torch.no_grad():
        for rnn in (model.encoder, model.decoder):
            gates, hidden = {"LSTM": 4, "GRU": 3}[rnn.mode], rnn.hidden_size
            units = dead % hidden if rnn.bidirectional else dead
            for name, p in rnn.named_parameters():  # weight_ih/hh_l{l}[_reverse], bias_ih/hh_l{l}[_reverse]
                reverse = name.endswith("_reverse")
                own = units[1:] if rnn.bidirectional and reverse else units[:1] if rnn.bidirectional else units
                p.view(gates, hidden, -1)[:, own] = 0
        if model.W_c is not None:
            model.W_c.weight[[0, 3]] = 0
        if cfg.attention == "bahdanau":
            model.attn.v_a.weight[0, [2, 5]] = 0
    pruned, pruned_cfg = prune(model, cfg, 0.125, "neurons")
    assert pruned_cfg.hidden_size == 14
    src, tgt = torch.randint(4, V, (3, 6)), torch.randint(4, V, (3, 5))
    torch.testing.assert_close(pruned(src, None, tgt), model(src, None, tgt), rtol=1e-5, atol=1e-5)
    rebuilt = build_model(pruned_cfg, V, **IDS).eval()
    rebuilt.load_state_dict(pruned.state_dict())
    assert torch.equal(rebuilt(src, None, tgt), pruned(src, None, tgt))


@pytest.mark.parametrize("cfg", [ModelConfig(arch="rnn_lm", cell="lstm", n_layer=2, n_embd=16, hidden_size=16),
                                 ModelConfig(arch="rnn_lm", cell="gru", n_layer=2, n_embd=8, hidden_size=16,
                                             tie_embeddings=False)], ids=lambda c: c.cell)
def test_rnn_lm_units_that_never_fire_go_and_the_logits_stay(cfg):
    """Units 1 and 9 of every layer have all-zero rows in every gate: they stay 0, so removing them is exact
    (the tied LSTM gets the projection I[:, kept] in front of its output layer)."""
    model = built(cfg)
    with torch.no_grad():
        for p in model.rnn.parameters():
            p.view({"LSTM": 4, "GRU": 3}[model.rnn.mode], 16, -1)[:, [1, 9]] = 0
    pruned, pruned_cfg = prune(model, cfg, 0.125, "neurons")
    assert pruned_cfg.hidden_size == 14
    torch.testing.assert_close(pruned(X), model(X), rtol=1e-5, atol=1e-5)


def test_heads_go_by_the_norm_of_their_weights():
    model = built(TRANSFORMER_LM)
    attn = model.transformer.h[0].attn
    with torch.no_grad():  # head 2 of layer 0 gets tiny weights everywhere: it is the first to go
        attn.c_attn.weight.view(3, 4, 8, 32)[:, 2] *= 1e-3
        attn.c_proj.weight.view(32, 4, 8)[:, 2] *= 1e-3
    pruned, _ = prune(model, TRANSFORMER_LM, 0.25, "heads")
    kept = pruned.transformer.h[0].attn
    assert torch.equal(kept.c_proj.weight, attn.c_proj.weight[:, [*range(16), *range(24, 32)]])
    assert torch.equal(kept.c_attn.weight.view(3, 3, 8, 32), attn.c_attn.weight.view(3, 4, 8, 32)[:, [0, 1, 3]])


@pytest.mark.parametrize("cfg", [TRANSFORMER_LM, ROTARY_LM, SEQ2SEQ_TRANSFORMER], ids=lambda c: f"{c.arch}-{c.positions}")
def test_the_new_width_keys_at_their_defaults_give_bit_identical_logits(cfg):
    explicit = ModelConfig(**{**vars(cfg), "head_dim": cfg.n_embd // cfg.n_head, "mlp_width": 4 * cfg.n_embd})
    model, same = built(cfg), built(explicit, seed=1)
    same.load_state_dict(model.state_dict())
    assert torch.equal(logits(same, X), logits(model, X))


def test_held_zeros_stay_zero_under_adamw_while_the_other_weights_train():
    model, _ = prune(built(TRANSFORMER_LM), TRANSFORMER_LM, 0.5)
    model.train()
    zeros = {name: p == 0 for name, p in prunable_weights(model).items()}
    before = {name: p.detach().clone() for name, p in prunable_weights(model).items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    assert hold_zeros(model, optimizer) == sum(int(z.sum()) for z in zeros.values())
    for _ in range(3):
        model(X, X)[1].backward()
        optimizer.step()
        optimizer.zero_grad()
    for name, p in prunable_weights(model).items():
        assert bool((p[zeros[name]] == 0).all()), name
        assert not torch.equal(p[~zeros[name]], before[name][~zeros[name]]), name


# ----------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    """A 1-layer, 2-head Transformer LM that has learnt four lines (a few seconds)."""
    root = tmp_path_factory.mktemp("prune-lm")
    corpus = write_text_corpus(root / "lines.txt")
    return train_run(root / "run", config_for(corpus, LM, "lm", max_steps=60, lr=1e-2, warmup_steps=5,
                                              eval_interval=60))


def prune_json(cli, *args: str) -> dict:
    result = cli("prune", *args, "--device", "cpu", "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def assert_decodes(cli, run) -> None:
    """The pruned run works as any run: generate (--json), chat (piped stdin) and eval."""
    generated = cli("generate", run, "--prompt", "the king", "--device", "cpu", "--json")
    assert generated.exit_code == 0, generated.stderr
    assert json.loads(generated.stdout)["results"][0]["generations"][0]["text"].strip()
    chatted = cli("chat", run, "--device", "cpu", stdin="to be or\n")
    assert chatted.exit_code == 0 and chatted.stdout.strip(), chatted.stderr
    evaluated = cli("eval", run, "--device", "cpu", "--limit", "2", "--max-new-tokens", "4", "--json")
    assert evaluated.exit_code == 0, evaluated.stderr
    assert math.isfinite(json.loads(evaluated.stdout)["perplexity"])


def test_an_unstructured_run_keeps_its_shapes_and_decodes(cli, lm_run, tmp_path):
    summary = prune_json(cli, lm_run, "--out", tmp_path / "u30", "--amount", "0.3")
    assert summary["method"] == "unstructured" and summary["model"] == {}
    assert summary["sparsity"] == pytest.approx(0.3, abs=1e-3)
    assert summary["parameters"]["after"] == summary["parameters"]["before"]
    assert summary["nonzero_parameters"]["after"] < summary["parameters"]["after"]
    assert abs(summary["file_bytes"]["after"] - summary["file_bytes"]["before"]) < 200  # zeros take the same space
    assert summary["val_ppl"]["pruned"] >= 1.0
    assert_decodes(cli, tmp_path / "u30")


@pytest.mark.parametrize("structured, sizes", [("heads", {"n_head": [2, 1], "head_dim": [None, 16]}),
                                               ("neurons", {"mlp_width": [None, 64]})])
def test_a_structured_run_is_smaller_and_decodes(cli, lm_run, tmp_path, structured, sizes):
    from seqlab.runs import open_run

    out = tmp_path / structured
    summary = prune_json(cli, lm_run, "--out", out, "--amount", "0.5", "--structured", structured)
    assert summary["model"] == sizes
    assert summary["parameters"]["after"] < summary["parameters"]["before"]
    assert summary["file_bytes"]["after"] < summary["file_bytes"]["before"]
    model = open_run(out).read_config().model
    assert {key: getattr(model, key) for key in sizes} == {key: after for key, (_, after) in sizes.items()}
    assert_decodes(cli, out)
    export = cli("export-hf", out, "--out", tmp_path / "hf")
    assert_one_line_error(export)
    assert "pruned" in export.stderr


def test_fine_tuning_lowers_the_val_loss_and_keeps_the_zeros(cli, lm_run, tmp_path):
    from seqlab.runs import open_run

    summary = prune_json(cli, lm_run, "--out", tmp_path / "ft", "--amount", "0.5", "--finetune-steps", "30")
    assert summary["val_ppl"]["finetuned"] < summary["val_ppl"]["pruned"]
    assert summary["sparsity_after_finetune"] == summary["sparsity"] == pytest.approx(0.5, abs=1e-3)
    config = open_run(tmp_path / "ft").read_config()
    assert config.train.keep_zeros and config.train.max_steps == 30
    info = json.loads((tmp_path / "ft" / "run.json").read_text())
    assert info["pruned_from"]["structured"] == "none" and "init_from" not in info
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ft.")]  # the staging run is gone
    assert_decodes(cli, tmp_path / "ft")


def test_a_seq2seq_transformer_loses_heads_and_fine_tunes(cli, tmp_path):
    corpus = write_pairs_corpus(tmp_path / "pairs.jsonl")
    model = {"arch": "seq2seq_transformer", "n_layer": 1, "n_head": 4, "n_embd": 32, "context_length": 32}
    run = make_run(tmp_path / "run", config_for(corpus, model, "pairs", lr=1e-2))
    summary = prune_json(cli, run, "--out", tmp_path / "heads", "--amount", "0.5", "--structured", "heads",
                         "--finetune-steps", "20", "--finetune-lr", "1e-2")
    assert summary["model"] == {"n_head": [4, 2], "head_dim": [None, 8]}
    assert summary["val_ppl"]["finetuned"] < summary["val_ppl"]["pruned"]
    chatted = cli("chat", tmp_path / "heads", "--device", "cpu", stdin="hello\n")
    assert chatted.exit_code == 0, chatted.stderr


def test_a_chatbot_loses_recurrent_units_and_still_answers(cli, tmp_path):
    corpus = write_pairs_corpus(tmp_path / "pairs.jsonl")
    run = make_run(tmp_path / "run", config_for(corpus, SEQ2SEQ, "pairs"))  # GRU + Luong, 32 units
    summary = prune_json(cli, run, "--out", tmp_path / "units", "--amount", "0.25", "--structured", "neurons")
    assert summary["model"] == {"hidden_size": [32, 24]}
    assert summary["file_bytes"]["after"] < summary["file_bytes"]["before"]
    chatted = cli("chat", tmp_path / "units", "--device", "cpu", stdin="hello\n")
    assert chatted.exit_code == 0, chatted.stderr


@pytest.fixture(scope="module")
def rnn_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("prune-rnn")
    corpus = write_text_corpus(root / "lines.txt")
    model = {"arch": "rnn_lm", "cell": "lstm", "n_layer": 1, "n_embd": 16, "hidden_size": 16}
    return make_run(root / "run", config_for(corpus, model, "lm"))


@pytest.mark.parametrize("args, says", [
    (["--amount", "0"], "(0, 1)"), (["--amount", "1"], "(0, 1)"), (["--amount", "-0.5"], "(0, 1)"),
    (["--amount", "nan"], "(0, 1)"), (["--amount", "1.5"], "(0, 1)"),
    (["--amount", "0.9", "--structured", "heads"], "remove all 2 attention heads"),
    (["--amount", "0.1", "--structured", "heads"], "removes none"),
    (["--amount", "0.5", "--structured", "rows"], "unknown --structured"),
    (["--amount", "0.5", "--finetune-steps", "-1"], "--finetune-steps"),
])
def test_bad_input_is_one_line_and_exit_2(cli, lm_run, tmp_path, args, says):
    result = cli("prune", lm_run, "--out", tmp_path / "out", *args)
    assert_one_line_error(result)
    assert says in result.stderr
    assert not (tmp_path / "out").exists()


def test_heads_of_an_rnn_an_existing_out_and_a_missing_run_are_refused(cli, lm_run, rnn_run, tmp_path):
    heads = cli("prune", rnn_run, "--out", tmp_path / "out", "--amount", "0.5", "--structured", "heads")
    assert_one_line_error(heads)
    assert "needs a Transformer" in heads.stderr
    (tmp_path / "taken").mkdir()
    taken = cli("prune", lm_run, "--out", tmp_path / "taken", "--amount", "0.5")
    assert_one_line_error(taken)
    assert "already exists" in taken.stderr
    missing = cli("prune", tmp_path / "nope", "--out", tmp_path / "out", "--amount", "0.5")
    assert_one_line_error(missing)
    assert "does not exist" in missing.stderr


def test_a_run_started_before_the_width_keys_existed_still_resumes():
    from seqlab.config import Config
    from seqlab.train.fingerprint import _config_changes, fixed_config

    new = fixed_config(Config())
    old = {k: v for k, v in new.items() if k not in ("model.head_dim", "model.mlp_width", "train.keep_zeros")}
    assert _config_changes(old, new) == []  # keys added to seqlab since count as their defaults
    assert _config_changes(old, new | {"model.mlp_width": 64}) == ["model.mlp_width: '(unset)' -> 64"]
