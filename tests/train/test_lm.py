import pytest
import torch
from tiny_setup import one_thread, write_tiny_setup  # noqa: F401 - fixture

from seqlab.config import ModelConfig, load_config
from seqlab.eval.perplexity import lm_nll
from seqlab.models import build_model
from seqlab.train.distributed import DistInfo
from seqlab.train.lm import train_lm, validate

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(arch="transformer_lm", n_layer=1, n_head=2, n_embd=16, context_length=4), 9)


def test_validate_is_the_mean_nll_over_the_whole_split_or_its_first_batches():
    ids = torch.randint(9, (103,), generator=torch.Generator().manual_seed(1))
    model = tiny_model()
    whole = validate(model, ids, 4, 3, None, DistInfo(), CPU, "fp32")
    assert whole == pytest.approx(lm_nll(model, ids, 4, 3), rel=1e-12)  # 25 full windows + a 2-token tail
    first = validate(model, ids, 4, 3, 2, DistInfo(), CPU, "fp32")  # 2 batches x 3 windows x 4 tokens
    assert first == pytest.approx(lm_nll(model, ids[:25], 4, 3), rel=1e-12)


def test_compile_flag_compiles_the_training_model(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    compiled = []

    def fake_compile(model):  # the real torch.compile needs minutes on this CPU; the wiring is what we test
        compiled.append(model)
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    cfg = load_config(write_tiny_setup(tmp_path, max_steps=2, eval_interval=2, samples=0), ["train.compile=true"])
    summary = train_lm(cfg, tmp_path / "run", "cpu")
    assert summary["step"] == 2 and len(compiled) == 1 and isinstance(compiled[0], torch.nn.Module)
