"""Every shipped preset resolves to a valid config and builds its model."""

import pytest

from seqlab.config import load_config, preset_names
from seqlab.models import build_model


@pytest.mark.parametrize("name", preset_names())
def test_preset_builds(name):
    cfg = load_config(name)
    model = build_model(cfg.model, vocab_size=97, pad_id=0, bos_id=2, eos_id=3)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_expected_presets_ship():
    names = set(preset_names())
    for required in ("shakespeare-char-transformer", "shakespeare-char-lstm", "shakespeare-char-transformer-cpu",
                     "shakespeare-char-lstm-cpu", "chatbot-gru-luong", "chatbot-lstm-bahdanau", "chatbot-transformer"):
        assert required in names


def test_nanogpt_shape():
    cfg = load_config("shakespeare-char-transformer")
    m, t = cfg.model, cfg.train
    assert (m.n_layer, m.n_head, m.n_embd, m.context_length, m.dropout) == (6, 6, 384, 256, 0.2)
    assert (t.batch_size, t.lr, t.max_steps, t.warmup_steps, t.min_lr, t.beta2) == (64, 1e-3, 5000, 100, 1e-4, 0.99)
