import torch

from seqlab.checkpoint import load_state, save_state


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
