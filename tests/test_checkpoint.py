import json

import pytest
import torch
from damaged_files import BYTES, damage
from safetensors.torch import load_file, save_file, save_model

from seqlab.checkpoint import load_state, load_weights, save_state, save_weights, verify_state
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


# ---- damaged files: one SeqlabError naming the file and the damage, never safetensors' own exception


@pytest.mark.parametrize("kind", BYTES)
def test_damaged_weights_are_a_clear_error(tmp_path, kind):
    path = tmp_path / "w.safetensors"
    save_weights(torch.nn.Linear(3, 2), path)
    damage(path, kind)
    with pytest.raises(SeqlabError, match=r"w\.safetensors is damaged.*; restore it from a copy or train again$"):
        load_weights(torch.nn.Linear(3, 2), path)
    with pytest.raises(SeqlabError, match="restore the run"):
        load_weights(torch.nn.Linear(3, 2), path, hint="restore the run")


def test_integer_or_non_finite_weights_are_refused_naming_the_tensor(tmp_path):
    model = torch.nn.Linear(3, 2)
    path = tmp_path / "w.safetensors"
    save_file({"weight": torch.ones(2, 3, dtype=torch.int64), "bias": torch.zeros(2)}, str(path))
    with pytest.raises(SeqlabError, match="tensor 'weight' is int64 but the model's is float32"):
        load_weights(model, path)
    for bad in (float("nan"), float("inf")):
        save_file({"weight": torch.ones(2, 3), "bias": torch.tensor([0.0, bad])}, str(path))
        with pytest.raises(SeqlabError, match="tensor 'bias' holds NaN or infinite values"):
            load_weights(model, path)
    assert torch.isfinite(model.bias).all()  # nothing was copied in
    save_file({"weight": torch.ones(2, 3, dtype=torch.float16), "bias": torch.zeros(2, dtype=torch.bfloat16)},
              str(path))
    load_weights(model, path)  # another floating point precision is fine
    assert torch.equal(model.weight, torch.ones(2, 3))


def test_a_float_tensor_for_an_integer_buffer_is_refused(tmp_path):
    class Counter(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("seen", torch.zeros(3, dtype=torch.int64))

    save_file({"seen": torch.full((3,), 0.5)}, str(tmp_path / "c.safetensors"))
    with pytest.raises(SeqlabError, match="tensor 'seen' is float32 but the model's is int64"):
        load_weights(Counter(), tmp_path / "c.safetensors")


@pytest.mark.parametrize("kind", BYTES)
def test_a_damaged_state_tensors_file_is_a_clear_error(tmp_path, kind):
    save_state(tmp_path / "s", {"x": torch.arange(10.0), "step": 1})
    damage(tmp_path / "s.safetensors", kind)
    with pytest.raises(SeqlabError, match=r"s\.safetensors is damaged"):
        load_state(tmp_path / "s")
    with pytest.raises(SeqlabError, match=r"s\.safetensors is damaged"):
        verify_state(tmp_path / "s")


@pytest.mark.parametrize("text, damage", [
    ("", r"it is empty"),
    ('{"token": "abc", "tr', r"not valid JSON"),
    ('{"token": "abc"}', r"not a checkpoint state: it needs a 'token' and a 'tree'"),
    ('[1, 2]', r"not a checkpoint state"),
    ("\udcff", r"not valid JSON"),
])
def test_a_damaged_state_json_is_a_clear_error(tmp_path, text, damage):
    save_state(tmp_path / "s", {"x": torch.arange(3.0)})
    (tmp_path / "s.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(SeqlabError, match=rf"s\.json is damaged \({damage}"):
        load_state(tmp_path / "s", hint="do this")
    with pytest.raises(SeqlabError, match=rf"s\.json is damaged \({damage}"):
        verify_state(tmp_path / "s")


def test_a_state_json_that_names_missing_tensors_is_a_clear_error(tmp_path):
    save_state(tmp_path / "s", {"x": torch.arange(3.0)})
    meta = json.loads((tmp_path / "s.json").read_text())
    meta["tree"] = {"__dict__": [["x", {"__tensor__": "t7"}]]}
    (tmp_path / "s.json").write_text(json.dumps(meta))
    with pytest.raises(SeqlabError, match=r"s\.json does not describe the tensors in s\.safetensors"):
        load_state(tmp_path / "s")


def test_verify_state_checks_the_token_against_another_tensors_file(tmp_path):
    save_state(tmp_path / "a", {"x": torch.arange(3.0)})
    save_state(tmp_path / "b", {"x": torch.arange(3.0)})
    verify_state(tmp_path / "a")
    with pytest.raises(SeqlabError, match="come from different checkpoints"):
        verify_state(tmp_path / "a", tmp_path / "b.safetensors")
    with pytest.raises(SeqlabError, match="missing"):
        verify_state(tmp_path / "a", tmp_path / "c.safetensors")


def test_half_precision_weights_whose_sum_overflows_are_still_finite(tmp_path):
    model = torch.nn.Embedding(1000, 100).half()  # 100,000 ones sum past float16's 65504
    save_file({"weight": torch.ones(1000, 100, dtype=torch.float16)}, str(tmp_path / "e.safetensors"))
    load_weights(model, tmp_path / "e.safetensors")
    assert torch.equal(model.weight, torch.ones(1000, 100, dtype=torch.float16))


def test_commit_state_moves_a_complete_pending_state_and_discards_a_damaged_one(tmp_path, capsys):
    from seqlab.checkpoint import commit_state, finish_commit, pending_path

    path = tmp_path / "state"
    commit_state(path, {"w": torch.arange(4.0)})
    commit_state(path, {"w": torch.arange(4.0) + 1})  # a second commit replaces the first
    assert not pending_path(path).with_suffix(".json").exists()
    torch.testing.assert_close(load_state(path)["w"], torch.arange(4.0) + 1)
    # a pending pair whose tensors file was cut short: discarded with one warning line, the good state kept
    save_state(pending_path(path), {"w": torch.zeros(4)})
    tensors = pending_path(path).with_suffix(".safetensors")
    tensors.write_bytes(tensors.read_bytes()[:-5])
    finish_commit(path)
    assert "discarding the damaged pending checkpoint" in capsys.readouterr().err
    assert not tensors.exists() and not pending_path(path).with_suffix(".json").exists()
    torch.testing.assert_close(load_state(path)["w"], torch.arange(4.0) + 1)
