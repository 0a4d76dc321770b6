"""`seqlab seqgan train` on a real (tiny) corpus: one text per sequence, BLEU-2..5 / self-BLEU, sampling, errors."""

from __future__ import annotations

import json
import random

import pytest
import torch
from conftest import assert_one_line_error

from seqlab.data.tokenizers import train_tokenizer
from seqlab.train.seqgan_text import decode_samples, encode_texts

TINY = ("--max-len", "20", "--pretrain-epochs", "1", "--d-pretrain-iters", "1", "--adv-rounds", "1",
        "--rollouts", "2", "--samples", "4", "--size", "8", "--batch-size", "8", "--device", "cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def corpus(tmp_path):
    rng = random.Random(0)
    words = ["spring", "moon", "river", "wind", "snow", "pine", "hill", "cloud"]
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 2))) for _ in range(60)]
    path = tmp_path / "poems.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_encode_pads_and_rejects_long_texts():
    tok = train_tokenizer("char", ["abc", "abcd"])
    ids = encode_texts(["ab", "abcd"], tok, 5, "error")
    pad, eos = tok.token_to_id("<pad>"), tok.token_to_id("<eos>")
    assert ids[0].tolist() == tok.encode("ab") + [eos, pad, pad]
    assert decode_samples(ids, tok) == ["ab", "abcd"]
    with pytest.raises(Exception, match="longer than --max-len 4"):
        encode_texts(["abcd"], tok, 4, "error")
    assert encode_texts(["abcd", "a"], tok, 4, "drop").shape == (1, 4)
    assert decode_samples(encode_texts(["abcd"], tok, 4, "truncate"), tok) == ["abc"]


def test_train_evaluate_and_sample(cli, tmp_path, corpus):
    out = tmp_path / "run"
    result = cli("seqgan", "train", "--data", corpus, "--out", out, *TINY, "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    for name in ("mle", "seqgan"):
        for key in ("bleu2", "bleu3", "bleu4", "bleu5", "self_bleu"):
            assert 0.0 <= report[name][key] <= 100.0
    assert report["train_texts"] + report["val_texts"] <= 60
    sampled = cli("seqgan", "sample", out, "-n", "3", "--json")
    assert sampled.exit_code == 0, sampled.stderr
    assert len(json.loads(sampled.stdout)["samples"]) == 3
    # the generator is also a seqlab rnn_lm run: same logits, and `seqlab generate` samples it
    from seqlab.models.loading import load_model_from_run
    from seqlab.train.seqgan_text import TextSeqganConfig, _new_generator

    lm, tok, _ = load_model_from_run(out / "lm", which="last")
    cfg = TextSeqganConfig(**json.loads((out / "config.json").read_text()))
    g = _new_generator(cfg, tok.vocab_size, tok.bos_id)
    from seqlab.checkpoint import load_weights

    load_weights(g, out / "generator.safetensors")
    seqs = torch.randint(0, tok.vocab_size, (2, 20))
    inputs = torch.cat([torch.full((2, 1), tok.bos_id), seqs[:, :-1]], 1)
    torch.testing.assert_close(lm(inputs), g(seqs))
    generated = cli("generate", out / "lm", "--prompt", "", "--max-new-tokens", "5", "--json")
    assert generated.exit_code == 0, generated.stderr
    again = cli("seqgan", "train", "--data", corpus, "--out", out, *TINY, "--json")  # finished: read back
    assert json.loads(again.stdout) == report


def test_bad_inputs(cli, tmp_path, corpus):
    long = tmp_path / "long.txt"
    long.write_text("short\n" + "x" * 40 + "\n", encoding="utf-8")
    result = cli("seqgan", "train", "--data", long, "--out", tmp_path / "a", *TINY)
    assert_one_line_error(result)
    assert "longer than --max-len 20" in result.stderr
    args = [a if a != "2" else "0" for a in TINY]  # --rollouts 0
    result = cli("seqgan", "train", "--data", corpus, "--out", tmp_path / "b", *args)
    assert_one_line_error(result)
    assert "rollout count" in result.stderr
    assert_one_line_error(cli("seqgan", "train", "--data", corpus, "--out", tmp_path / "c", *TINY[2:], "--max-len", "8"))
    assert_one_line_error(cli("seqgan", "sample", tmp_path / "nowhere"))
