import pytest

from seqlab.config import Config, load_config, parse_overrides
from seqlab.errors import ConfigError


def test_defaults_and_overrides():
    cfg = load_config(None, ["train.lr=3e-4", "model.cell=gru", "data.max_vocab=100", "seed=7"])
    assert cfg.train.lr == pytest.approx(3e-4)
    assert isinstance(cfg.train.lr, float)
    assert cfg.model.cell == "gru"
    assert cfg.data.max_vocab == 100
    assert cfg.seed == 7


def test_yaml_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model: {arch: rnn_lm, cell: lstm, n_layer: 2}\ntrain: {batch_size: 8}\n")
    cfg = load_config(p, ["train.batch_size=4"])
    assert (cfg.model.arch, cfg.model.n_layer, cfg.train.batch_size) == ("rnn_lm", 2, 4)


@pytest.mark.parametrize(
    "override, words",
    [
        ("train.lrr=1", ["train.lrr", "did you mean 'lr'", "valid keys"]),
        ("bogus.x=1", ["bogus", "valid keys", "data"]),
        ("train.lr=fast", ["train.lr", "expected float"]),
        ("train.batch_size=1.5", ["train.batch_size", "expected int"]),
        ("model.cell=transformer", ["model.cell", "choose one of", "lstm"]),
        ("model.attention=luong-concat", ["model.attention", "choose one of", "bahdanau", "luong-general"]),
        ("train.batch_size=0", ["train.batch_size", "> 0"]),
        ("model.n_embd=-4", ["model.n_embd", "> 0"]),
        ("train.compile=maybe", ["train.compile", "expected bool"]),
        ("decode.top_p=1.5", ["top_p"]),
    ],
)
def test_bad_configs_name_the_key(override, words):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    for w in words:
        assert w in str(e.value)


def test_override_syntax():
    assert parse_overrides(["a.b=1", "a.c=x"]) == {"a": {"b": 1, "c": "x"}}
    with pytest.raises(ConfigError):
        parse_overrides(["no-equals"])


def test_roundtrip_dict():
    cfg = Config()
    assert load_config(None, base=cfg.to_dict()) == cfg


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset"):
        load_config("no-such-preset")


def test_cli_config_errors(cli):
    from conftest import assert_one_line_error

    assert_one_line_error(cli("config", "--set", "train.nope=1"))
    bad_attention = cli("config", "--set", "model.attention=luong-concat")
    assert_one_line_error(bad_attention)
    assert "model.attention" in bad_attention.stderr
    r = cli("config", "--keys", "--json")
    assert r.exit_code == 0 and '"train.lr"' in r.stdout
