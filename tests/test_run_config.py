"""RunDir.read_config: a run's config.yaml is written whole, so a cut or damaged one is refused (issue 15)."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from conftest import assert_one_line_error

from seqlab.config import Config, DataConfig, ModelConfig, missing_keys
from seqlab.errors import ConfigError
from seqlab.runs import CONFIG_END, CONFIG_HEADER, RunDir

CONFIG = Config(data=DataConfig(corpus="lines.txt"), model=ModelConfig(n_layer=2, n_embd=64), seed=7)


@pytest.fixture
def run(tmp_path) -> RunDir:
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.write_config(CONFIG)
    return run


def test_a_written_config_reads_back_between_its_header_and_end_lines(run):
    assert run.read_config() == CONFIG
    lines = run.config.read_text().splitlines()
    assert (lines[0], lines[-1]) == (CONFIG_HEADER, CONFIG_END)


@pytest.mark.parametrize("fraction", [0.1, 0.35, 0.6, 0.9])
def test_a_config_cut_short_is_refused_naming_the_missing_keys(run, fraction):
    text = run.config.read_text()
    cut = text[:int(len(text) * fraction)]
    cut = cut[:cut.rindex("\n") + 1]  # at a line end: the part left is valid YAML
    run.config.write_text(cut)
    with pytest.raises(ConfigError) as e:
        run.read_config()
    message, missing = str(e.value), missing_keys(yaml.safe_load(cut))
    assert missing[-1] == "seed"  # the last key written
    assert f"{run.config} is incomplete (missing {missing[0]}, " in message
    assert (f"({len(missing)} in all)" if len(missing) > 6 else "seed)") in message
    assert "cut short" in message and "restore it from a backup or recreate the run" in message
    assert "\n" not in message


def test_a_cut_inside_the_last_value_is_caught_by_the_end_line(run):
    text = run.config.read_text()
    assert text.endswith("seed: 7\n" + CONFIG_END + "\n")
    for cut in ("seed: ", "seed: 7\n"):  # "seed: " reads as None; "seed: 1" of "seed: 12" would read as 1
        run.config.write_text(text[:text.rindex("seed: 7")] + cut)
        with pytest.raises(ConfigError, match="incomplete .*'# end of config.yaml' is missing.*cut short"):
            run.read_config()


def test_a_cut_mid_structure_and_an_empty_file_are_refused(run):
    run.config.write_text("data:\n  corpus: lines.txt\n  stop_strings: [\"a\",")
    with pytest.raises(ConfigError, match=r"config.yaml: not valid YAML .*cut short or damaged; restore"):
        run.read_config()
    run.config.write_text("")
    with pytest.raises(ConfigError, match="config.yaml is empty: it was cut short"):
        run.read_config()
    run.config.write_bytes(b"data:\n  corpus: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        run.read_config()
    run.config.write_text("- a list\n")
    with pytest.raises(ConfigError, match="holds a list"):
        run.read_config()


def test_python_tags_in_a_run_config_are_refused(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run.config.write_text("!!python/object/apply:os.system ['touch PWNED']\n")
    with pytest.raises(ConfigError, match="python tags are not allowed") as e:
        run.read_config()
    assert str(run.config) in str(e.value)
    assert not (tmp_path / "PWNED").exists()


def test_a_config_without_the_end_line_must_name_every_key(run):
    """Runs written before the end line existed, or configs rewritten by yaml.safe_dump, still read."""
    raw = yaml.safe_load(run.config.read_text())
    run.config.write_text(yaml.safe_dump(raw))
    assert run.read_config() == CONFIG
    del raw["train"]["lr"], raw["decode"]
    run.config.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"incomplete \(missing train.lr, decode\)"):
        run.read_config()


def test_with_the_end_line_a_key_added_later_takes_its_default(run):
    """A key seqlab adds in a later version is absent from older complete runs: its default applies."""
    text = run.config.read_text().replace("  beta2: 0.99\n", "")
    run.config.write_text(text)
    assert run.read_config() == dataclasses.replace(CONFIG)


def test_bad_values_in_a_run_config_name_the_file(run):
    run.config.write_text(run.config.read_text().replace("lr: 0.001", "lr: .nan"))
    with pytest.raises(ConfigError, match=r"config.yaml: train.lr must be a finite number"):
        run.read_config()


def test_generate_on_a_truncated_run_is_one_line(cli, tmp_path):
    from tiny_runs import LM, config_for, make_run, write_text_corpus

    run_dir = make_run(tmp_path / "run", config_for(write_text_corpus(tmp_path / "lines.txt"), LM, "lm"))
    config = run_dir / "config.yaml"
    config.write_text("".join(config.read_text().splitlines(keepends=True)[:30]))
    result = cli("generate", run_dir, "--prompt", "the", "--max-new-tokens", "3")
    assert_one_line_error(result)
    assert f"{config} is incomplete (missing " in result.stderr and "train" in result.stderr
