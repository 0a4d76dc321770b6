"""The run directory: everything one training run writes, and how to read it back.

    RUN/
      config.yaml               the full Config (what `--resume` reads; a corpus file as an absolute path)
      fingerprint.json          the config keys and corpus files (with sha256) `--resume` checks are unchanged
      run.json                  seqlab / torch / Python versions, git commit, seed, command line and directory
      .lock                     locked (flock) while a process trains in the run; holds its pid
      tokenizer.json            the tokenizer (see seqlab.data.tokenizers)
      model.safetensors         latest weights          best.safetensors   best by validation loss
      trainer_state.{safetensors,json}   optimizer, scheduler, RNG, data position (no pickle)
      metrics.jsonl             one JSON object per log line (append-only)
      tb/                       TensorBoard events
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import seqlab
from seqlab.config import Config, from_dict, missing_keys, yaml_error_message
from seqlab.errors import ConfigError, SeqlabError
from seqlab.io import write_json, write_text

# the first and last lines of every config.yaml seqlab writes: a file with the first but not the last was cut short
CONFIG_HEADER = "# a seqlab run's config: every key, then the line below (a file without it was cut short)"
CONFIG_END = "# end of config.yaml"


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def info(self) -> Path:
        return self.path / "run.json"

    @property
    def fingerprint(self) -> Path:
        return self.path / "fingerprint.json"

    @property
    def lock(self) -> Path:
        return self.path / ".lock"

    @property
    def tokenizer(self) -> Path:
        return self.path / "tokenizer.json"

    @property
    def model(self) -> Path:
        return self.path / "model.safetensors"

    @property
    def best(self) -> Path:
        return self.path / "best.safetensors"

    @property
    def trainer_state(self) -> Path:
        return self.path / "trainer_state"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tb"

    def write_config(self, config: Config) -> None:
        import yaml

        text = yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True)
        write_text(self.config, f"{CONFIG_HEADER}\n{text}{CONFIG_END}\n")

    def read_config(self) -> Config:
        """The run's Config, refusing a config.yaml that was cut short or damaged.

        seqlab writes the line CONFIG_HEADER, every key, then the line CONFIG_END. A file with both is
        complete: a key it lacks is one added to seqlab after the run was written, and takes its
        default. A file with the header but not the end was cut short. A file with neither (written
        before these lines existed, or rewritten by another tool) must name every key. A file that
        does not parse, is empty, or lacks keys is refused, naming them. Hand-written configs for
        `seqlab train PRESET` may leave keys out: this applies to a run's stored config only.
        """
        if not self.config.is_file():
            raise SeqlabError(f"{self.path} is not a seqlab run directory (no config.yaml)")
        import yaml

        where, fix = self.config, "restore it from a backup or recreate the run"
        try:
            text = self.config.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"{where} is not UTF-8 text (bad byte at offset {e.start}): it is damaged; {fix}") from None
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as e:
            message = yaml_error_message(where, e)
            tagged = "python tags" in message
            raise ConfigError(message if tagged else f"{message}: it was cut short or damaged; {fix}") from None
        except RecursionError:
            raise ConfigError(f"{where} is nested too deeply to read: it is damaged; {fix}") from None
        if raw is None:
            raise ConfigError(f"{where} is empty: it was cut short; {fix}")
        if not isinstance(raw, dict):
            raise ConfigError(f"{where} holds a {type(raw).__name__}, not the config's sections: it is damaged; {fix}")
        lines = text.splitlines()
        missing = [] if CONFIG_END in lines else missing_keys(raw)
        if missing:
            shown = ", ".join(missing[:6]) + (f", … ({len(missing)} in all)" if len(missing) > 6 else "")
            raise ConfigError(f"{where} is incomplete (missing {shown}): it was cut short; {fix}")
        if CONFIG_HEADER in lines and CONFIG_END not in lines:
            raise ConfigError(f"{where} is incomplete (its last line {CONFIG_END!r} is missing, so its last value "
                              f"may be cut): it was cut short; {fix}")
        try:
            return from_dict(Config, raw)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None

    def write_info(self, seed: int, extra: dict[str, Any] | None = None) -> None:
        write_json(self.info, run_info(seed) | (extra or {}))


def open_run(path: str | Path, must_exist: bool = True) -> RunDir:
    """A RunDir for `path`; with `must_exist`, a clear error when it is not a run."""
    run = RunDir(Path(path))
    if must_exist:
        if not run.path.exists():
            raise SeqlabError(f"run directory {str(path)!r} does not exist")
        if not run.path.is_dir():
            raise SeqlabError(f"{str(path)!r} is a file, not a run directory")
        if not run.config.is_file():
            raise SeqlabError(f"{str(path)!r} is not a seqlab run directory (no config.yaml)")
    return run


def run_info(seed: int) -> dict[str, Any]:
    return {
        "seqlab": seqlab.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": git_commit(),
        "seed": seed,
        "command": sys.argv,
        "cwd": os.getcwd(),
        "world_size": int(os.environ.get("WORLD_SIZE", 1)),
    }


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


class MetricsLog:
    """Append-only JSON-lines log. A resumed run first drops lines newer than its checkpoint."""

    def __init__(self, path: Path):
        self.path = path

    def append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        rows = []
        for line in self.path.read_text(encoding="utf-8").split("\n"):  # not splitlines: U+2028 may be in a string
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a hard kill
                continue
        return rows

    def truncate_after(self, step: int) -> None:
        """Keep only records with `step` <= the checkpoint's step (atomically)."""
        from seqlab.io import write_text

        kept = [r for r in self.read() if r.get("step", 0) <= step]
        write_text(self.path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
