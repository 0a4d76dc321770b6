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
        # nan / inf in any float key, AdamW's betas, seeds, and sizes beyond 64 bits (issue 15)
        ("train.lr=.inf", ["train.lr", "finite"]),
        ("train.lr=.nan", ["train.lr", "finite"]),
        ("train.grad_clip=.nan", ["train.grad_clip", "finite"]),
        ("train.min_lr=-.inf", ["train.min_lr", "finite"]),
        ("decode.temperature=.inf", ["decode.temperature", "finite"]),
        ("decode.repetition_penalty=.nan", ["decode.repetition_penalty", "finite"]),
        ("train.beta2=1.0", ["train.beta2", "[0, 1)"]),
        ("train.beta1=-0.1", ["train.beta1", "[0, 1)"]),
        ("seed=9223372036854775808", ["seed", "2^63"]),
        ("seed=-1", ["seed", "[0, 2^63"]),
        ("decode.top_k=100000000000000000000", ["decode.top_k", "64 bits"]),
        ("data.vocab_size=1000000000000", ["data.vocab_size", "at most 16,777,216"]),
        ("train.lr=!!python/object/apply:os.system [echo hi]", ["--set train.lr", "python tags are not allowed"]),
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


def test_largest_seed_and_a_beta_just_below_one_are_accepted():
    cfg = load_config(None, ["seed=9223372036854775807", "train.beta2=0.999999", "train.beta1=0"])
    assert cfg.seed == 2**63 - 1 and cfg.train.beta2 == 0.999999


def test_float_keys_refuse_nan_when_built_directly():
    from seqlab.config import ModelConfig, TrainConfig

    with pytest.raises(ConfigError, match="train.weight_decay must be a finite number"):
        TrainConfig(weight_decay=float("nan"))
    with pytest.raises(ConfigError, match="model.dropout"):
        ModelConfig(dropout=float("inf"))


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system [touch PWNED]", "!!python/name:os.system",
                                 "!!python/object/new:os.system [touch PWNED]"])
def test_python_tags_in_a_config_file_are_refused_without_running_anything(cli, tmp_path, monkeypatch, tag):
    from conftest import assert_one_line_error

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.yaml"
    path.write_text(f"train:\n  lr: {tag}\n")
    with pytest.raises(ConfigError, match="python tags are not allowed") as e:
        load_config(path)
    assert str(path) in str(e.value) and "!!python/" in str(e.value)
    result = cli("train", path, "--out", tmp_path / "run")
    assert_one_line_error(result)
    assert "python tags are not allowed" in result.stderr and "evil.yaml" in result.stderr
    result = cli("config", "--set", f"data.corpus={tag}")
    assert_one_line_error(result)
    assert "--set data.corpus: python tags are not allowed" in result.stderr
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "run").exists()


def test_invalid_yaml_names_the_file_and_line(tmp_path):
    path = tmp_path / "cut.yaml"
    path.write_text("model:\n  n_layer: [1,\n")
    with pytest.raises(ConfigError, match=r"cut.yaml: not valid YAML \(.*line 3") as e:
        load_config(path)
    assert "\n" not in str(e.value)


def test_override_values_that_are_not_yaml_stay_text():
    assert parse_overrides(["data.corpus=a: b: c"]) == {"data": {"corpus": "a: b: c"}}
