"""What a run trains on, recorded when it starts (`RUN/fingerprint.json`) and checked when it resumes.

    {"version": 1,
     "config": {"data.corpus": "/abs/chat.jsonl", "model.n_embd": 256, "train.lr": 0.001, ...},
     "files": [{"path": "/abs/chat.jsonl", "size": 1234, "mtime_ns": ..., "sha256": "..."}]}

`config` is every config key that decides what the run learns; the keys in FREE may change between
a run's start and its resume, because they change what is printed, how fast it runs, or (max_steps)
how long it goes on, not the training itself: `decode.*` (the sampling of printed samples and of
`seqlab generate`), `train.samples`, `train.log_interval`, `train.compile` and `train.max_steps`
(`seqlab train --resume RUN --set train.max_steps=N`). `files` are the corpus files with their
content hash: a file whose size and modification time are unchanged is taken as unchanged, any other
is hashed again, so touching a file does not block a resume but editing it does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seqlab.config import Config, describe_keys
from seqlab.data.corpora import _looks_like_path, is_builtin_name, load_corpus
from seqlab.errors import SeqlabError
from seqlab.io import read_json, sha256_file, write_json
from seqlab.runs import RunDir

VERSION = 1
FREE = ("decode.", "train.samples", "train.log_interval", "train.compile", "train.max_steps")


def corpus_path(name: str) -> Path | None:
    """The file `data.corpus` names (None for a built-in corpus), by `load_corpus`'s own rule."""
    if is_builtin_name(name) and not _looks_like_path(name):
        return None
    return Path(name).expanduser()


def absolute_corpus(cfg: Config) -> Config:
    """`cfg` with data.corpus made absolute when it is an existing file, so that the run's config.yaml
    is read the same from any directory (`seqlab eval RUN`, `--resume` from elsewhere)."""
    import dataclasses

    path = corpus_path(cfg.data.corpus)
    if path is None or not path.exists():
        return cfg
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, corpus=str(path.resolve())))


def fixed_config(cfg: Config) -> dict[str, Any]:
    """Every config key, flattened ("train.lr"), except those in FREE."""
    flat = {}
    for section, values in cfg.to_dict().items():
        items = values.items() if isinstance(values, dict) else [(None, values)]
        for key, value in items:
            name = section if key is None else f"{section}.{key}"
            if not any(name == f or (f.endswith(".") and name.startswith(f)) for f in FREE):
                flat[name] = value
    return flat


def file_record(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "sha256": sha256_file(path)}



def corpus_files(cfg: Config) -> list[Path]:
    """The files the run's corpus is read from: a corpus file is itself (`load_corpus` records it so), and
    is not parsed again here, beside the recipe's own load; a built-in is loaded to learn its cached files."""
    path = corpus_path(cfg.data.corpus)
    if path is not None and path.is_file():
        return [path.resolve()]
    d = cfg.data
    return sorted(load_corpus(d.corpus, encoding=d.encoding, history_turns=d.history_turns).files)


def write_fingerprint(run: RunDir, cfg: Config) -> None:
    write_json(run.fingerprint, {"version": VERSION, "config": fixed_config(cfg),
                                 "files": [file_record(p) for p in corpus_files(cfg) if p.is_file()]})


def check_fingerprint(run: RunDir, cfg: Config) -> None:
    """A SeqlabError when config.yaml (beyond FREE) or the corpus changed since the run started.

    A run written before fingerprints existed has none and is not checked."""
    if not run.fingerprint.is_file():
        return
    stored = read_json(run.fingerprint)
    new_run = (f"start a new run from this one's weights instead: seqlab train {run.config} --init-from "
               f"{run.path} --out NEW_RUN")
    changed = _config_changes(stored.get("config", {}), fixed_config(cfg))
    if changed:
        raise SeqlabError(f"{run.config} was edited since the run started ({'; '.join(changed)}); a run resumes "
                          "with the config it started with, and only train.max_steps may change (--resume "
                          f"{run.path} --set train.max_steps=N): restore the old values, or {new_run}")
    changed = _file_changes(stored.get("files", []), cfg)
    if changed:
        raise SeqlabError(f"the corpus of {run.path} changed since the run started ({'; '.join(changed)}); resuming "
                          f"would train on other data than its checkpoint's: restore the file, or {new_run}")


def _config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The keys whose values differ; a key the old fingerprint lacks (added to seqlab after the run started)
    counts as its default, as the run's config.yaml reads it."""
    missing = object()
    added = {key: default for key, _, default, _ in describe_keys()}
    keys = sorted(set(old) | set(new))
    return [f"{k}: {old.get(k, '(unset)')!r} -> {new.get(k, '(unset)')!r}" for k in keys
            if old.get(k, added.get(k, missing)) != new.get(k, missing)]


def _file_changes(records: list[dict[str, Any]], cfg: Config) -> list[str]:
    changes = []
    for record in records:
        path = Path(record["path"])
        if not path.is_file():
            changes.append(f"{path} is gone")
            continue
        if _differs(record, path):
            changes.append(f"{path}'s content differs (sha256 {record['sha256'][:12]}... at the start)")
    if changes:
        return changes
    now = {str(p.resolve()) for p in corpus_files(cfg) if p.is_file()}
    then = {r["path"] for r in records}
    if now != then:
        changes.append(f"it is now read from {', '.join(sorted(now - then)) or 'fewer files'} instead of "
                       f"{', '.join(sorted(then - now)) or 'fewer files'}")
    return changes


def changed_since_start(run: RunDir, path: Path) -> bool | None:
    """Whether corpus file `path` differs from what the run's fingerprint recorded (None: not recorded)."""
    if not run.fingerprint.is_file():
        return None
    target = str(path.resolve())
    record = next((r for r in read_json(run.fingerprint).get("files", []) if r["path"] == target), None)
    return None if record is None else _differs(record, path)


def _differs(record: dict[str, Any], path: Path) -> bool:
    stat = path.stat()
    if (stat.st_size, stat.st_mtime_ns) == (record["size"], record["mtime_ns"]):
        return False
    return sha256_file(path) != record["sha256"]
