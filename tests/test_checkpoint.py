import pytest
import torch
from safetensors.torch import load_file, save_model

from seqlab.checkpoint import load_state, load_weights, save_state, save_weights
from seqlab.errors import SeqlabError


def test_state_roundtrip(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    obj = {"opt": opt.state_dict(), "rng": torch.get_rng_state(), "step": 3, "pos": (1, 2), "name": "x", "f": 0.5}
    save_state(tmp_path / "s", obj)
    back = load_state(tmp_path / "s")
    assert back["step"] == 3 and back["pos"] == (1, 2) and back["name"] == "x"
    assert torch.equal(back["rng"], obj["rng"])
    opt2 = torch.optim.AdamW(model.parameters(), lr=0.1)
    opt2.load_state_dict(back["opt"])
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


def _flattened_lstm() -> torch.nn.LSTM:
    """An LSTM whose weights are views into one buffer, as cuDNN lays them out on a GPU."""
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(4, 6, num_layers=2)
    flat = torch.cat([p.detach().reshape(-1) for p in lstm.parameters()])
    offset = 0
    for p in lstm.parameters():
        p.data = flat[offset:offset + p.numel()].view_as(p)
        offset += p.numel()
    return lstm


def test_weights_that_are_views_of_one_buffer_save_and_load(tmp_path):
    lstm = _flattened_lstm()
    with pytest.raises(RuntimeError):  # what the GPU's cuDNN layout did to safetensors' save_model
        save_model(lstm, str(tmp_path / "refused.safetensors"))
    save_weights(lstm, tmp_path / "w.safetensors")
    back = _flattened_lstm()
    with torch.no_grad():
        for p in back.parameters():
            p.zero_()
    load_weights(back, tmp_path / "w.safetensors")
    for (name, a), b in zip(lstm.state_dict().items(), back.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    x = torch.randn(3, 2, 4)
    assert torch.equal(lstm(x)[0], back(x)[0])


class _Tied(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(5, 3)
        self.head = torch.nn.Linear(3, 5, bias=False)
        self.head.weight = self.embed.weight
        self.register_buffer("empty_a", torch.zeros(0))
        self.register_buffer("empty_b", torch.zeros(0))


def test_a_tied_weight_is_stored_once_and_stays_tied(tmp_path):
    torch.manual_seed(0)
    model = _Tied()
    save_weights(model, tmp_path / "w.safetensors")
    assert set(load_file(str(tmp_path / "w.safetensors"))) == {"embed.weight", "empty_a", "empty_b"}
    back = _Tied()
    load_weights(back, tmp_path / "w.safetensors")
    assert torch.equal(back.head.weight, model.embed.weight) and back.head.weight is back.embed.weight


def test_files_written_by_safetensors_save_model_still_load(tmp_path):
    torch.manual_seed(0)
    model = _Tied()
    save_model(model, str(tmp_path / "old.safetensors"))  # keeps one name of the tie, its own choice
    back = _Tied()
    load_weights(back, tmp_path / "old.safetensors")
    assert torch.equal(back.embed.weight, model.embed.weight)


def test_weights_of_another_model_are_a_clear_error(tmp_path):
    save_weights(torch.nn.Linear(3, 2), tmp_path / "w.safetensors")
    with pytest.raises(SeqlabError, match="weight has shape"):
        load_weights(torch.nn.Linear(4, 2), tmp_path / "w.safetensors")
    with pytest.raises(SeqlabError, match="missing"):
        load_weights(torch.nn.Sequential(torch.nn.Linear(3, 2)), tmp_path / "w.safetensors")


def test_state_may_hold_tensors_that_share_memory(tmp_path):
    model = _Tied()
    save_state(tmp_path / "s", {"weights": model.state_dict()})  # embed.weight and head.weight: one tensor
    back = load_state(tmp_path / "s")["weights"]
    assert torch.equal(back["head.weight"], model.embed.weight)
