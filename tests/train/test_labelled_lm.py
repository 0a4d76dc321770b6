"""Label-conditioned generation end to end: a tiny LM trained on `<label:L> text <eos>` follows the label."""

from __future__ import annotations

import json
import random

import pytest
import torch
import yaml
from conftest import assert_one_line_error

ALPHABETS = {"vowel": "aeiou", "consonant": "xyzw"}


@pytest.fixture(scope="module")
def labelled_run(tmp_path_factory):
    """Train once (a few seconds): label `vowel` texts use only vowels, `consonant` texts only x/y/z/w."""
    from seqlab.config import load_config
    from seqlab.train.lm import train_lm

    root = tmp_path_factory.mktemp("labelled")
    rng = random.Random(0)
    rows = [{"text": "".join(rng.choice(ALPHABETS[label]) for _ in range(10)), "label": label}
            for _ in range(40) for label in ALPHABETS]
    corpus = root / "letters.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    config = {"data": {"corpus": str(corpus), "task": "labelled", "tokenizer": "char", "val_fraction": 0.1},
              "model": {"arch": "transformer_lm", "n_layer": 1, "n_head": 2, "n_embd": 32, "context_length": 16},
              "train": {"batch_size": 16, "max_steps": 150, "lr": 1e-2, "warmup_steps": 10, "eval_interval": 150,
                        "log_interval": 50, "samples": 0}}
    (root / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: two threads only spin against each other on a busy CPU
    try:
        train_lm(load_config(root / "config.yaml"), root / "run", "cpu")
    finally:
        torch.set_num_threads(threads)
    return root / "run"


def _generate(cli, run, label):
    result = cli("generate", run, "--prompt", "", "--label", label, "--greedy", "--max-new-tokens", "10",
                 "--device", "cpu", "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)["results"][0]["generations"][0]["text"]


def test_the_label_changes_the_output(cli, labelled_run):
    vowels, consonants = _generate(cli, labelled_run, "vowel"), _generate(cli, labelled_run, "consonant")
    assert vowels != consonants
    assert vowels and set(vowels) <= set(ALPHABETS["vowel"])
    assert consonants and set(consonants) <= set(ALPHABETS["consonant"])
    assert _generate(cli, labelled_run, "vowel") == vowels  # greedy: deterministic


def test_unknown_label_is_one_line_error_listing_the_labels(cli, labelled_run):
    result = cli("generate", labelled_run, "--prompt", "", "--label", "sonnet", "--device", "cpu")
    assert_one_line_error(result)
    assert "<label:vowel>" in result.stderr and "<label:consonant>" in result.stderr
