"""Typed configuration, grouped by concern, stored as YAML and overridable from the command line.

A config file has sections — `data`, `model`, `train`, `decode`, `safety`, `chat`, `distill` — plus a
top-level `seed`:

    data:  {corpus: tinyshakespeare, tokenizer: char, split: contiguous}
    model: {arch: transformer_lm, n_layer: 6, n_head: 6, n_embd: 384, context_length: 256}
    train: {batch_size: 64, lr: 1.0e-3, max_steps: 5000}

`load_config("shakespeare-char-transformer", ["train.lr=3e-4"])` reads a preset (or a YAML path)
and applies `--set` overrides. Unknown keys and wrong types raise `ConfigError` naming the key
and the valid choices. Modules never take a config object: builders unpack it into plain arguments.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from seqlab.errors import ConfigError


def _help(text: str, default: Any = dataclasses.MISSING, **kw: Any) -> Any:
    """A dataclass field carrying its documentation (shown by `seqlab config --help-keys`)."""
    return field(default=default, metadata={"help": text}, **kw)


@dataclass
class DataConfig:
    corpus: str = _help("built-in corpus name (see `seqlab data list`) or a path to a file", "tinyshakespeare")
    task: Literal["lm", "pairs", "labelled"] = _help(
        "lm: a token stream for language models; pairs: (source -> target) examples; "
        "labelled: (label, text) examples", "lm")
    tokenizer: Literal["char", "word", "bpe"] = _help("tokenizer kind", "char")
    lang: Literal["auto", "en", "zh"] = _help("language for word segmentation (zh uses jieba)", "auto")
    vocab_size: int = _help("BPE: target vocabulary size (at most 2^24 = 16,777,216)", 4000)
    max_vocab: int | None = _help("char/word: keep at most this many tokens (specials included)", None)
    min_freq: int = _help("char/word: drop tokens seen fewer times than this", 1)
    split: Literal["random", "contiguous"] = _help(
        "random: seeded split by example/conversation; contiguous: first (1-val-test) | val | test", "random")
    val_fraction: float = _help("fraction of the data for validation", 0.1)
    test_fraction: float = _help("fraction of the data for test", 0.0)
    history_turns: int = _help("dialogues: the last k turns, joined by <sep>, form the source", 1)
    max_source_len: int = _help("pairs: truncate sources to this many tokens (keeping the end)", 64)
    max_target_len: int = _help("pairs: truncate targets to this many tokens", 64)
    encoding: str = _help("text encoding of input files", "utf-8")

    def __post_init__(self) -> None:
        _representable(self)
        _positive(self, "vocab_size", "min_freq", "history_turns", "max_source_len", "max_target_len")
        if self.max_vocab is not None:
            _positive(self, "max_vocab")
        if self.vocab_size > MAX_BPE_VOCAB:  # the BPE trainer reserves memory for every requested token
            raise ConfigError(f"data.vocab_size must be at most {MAX_BPE_VOCAB:,} (2^24), got {self.vocab_size:,}; "
                              "real BPE vocabularies have thousands to a few hundred thousand tokens")
        for name in ("val_fraction", "test_fraction"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"data.{name} must be in [0, 1), got {getattr(self, name)}")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ConfigError("data.val_fraction + data.test_fraction must be < 1")


@dataclass
class ModelConfig:
    arch: Literal["rnn_lm", "transformer_lm", "seq2seq_rnn", "seq2seq_transformer"] = _help(
        "architecture", "transformer_lm")
    # shared
    n_layer: int = _help("layers (RNN: stacked layers; Transformer: blocks; seq2seq: per side)", 4)
    n_embd: int = _help("embedding / model width", 128)
    dropout: float = _help("dropout probability", 0.0)
    tie_embeddings: bool = _help("share the input embedding and the output projection", True)
    context_length: int = _help("longest sequence the model handles (Transformer: position table size)", 256)
    # Transformer
    n_head: int = _help("attention heads (Transformer)", 4)
    positions: Literal["learned", "rotary", "sinusoidal"] = _help(
        "position encoding (Transformer; rotary for LMs, sinusoidal for seq2seq_transformer)", "learned")
    activation: Literal["gelu", "gelu_new", "relu"] = _help("MLP activation (Transformer; GPT-2 uses gelu_new)", "gelu")
    bias: bool = _help("biases in linear layers and LayerNorms (Transformer)", True)
    head_dim: int | None = _help("width of one attention head (Transformer; null = n_embd / n_head); set when "
                                 "`seqlab prune --structured heads` removed heads, so n_head * head_dim < n_embd", None)
    mlp_width: int | None = _help("hidden width of each MLP (Transformer; null = 4 * n_embd); set when "
                                  "`seqlab prune --structured neurons` removed hidden units", None)
    # RNN
    cell: Literal["rnn", "lstm", "gru"] = _help("recurrent cell (RNN models)", "lstm")
    hidden_size: int = _help("recurrent hidden size (RNN models)", 256)
    # Seq2Seq
    attention: Literal["none", "bahdanau", "luong-dot", "luong-general"] = _help(
        "decoder attention (seq2seq_rnn)", "bahdanau")
    bidirectional: bool = _help("bidirectional encoder (seq2seq_rnn)", True)
    input_feeding: bool = _help("feed the attentional vector to the next step (Luong)", True)
    share_embeddings: bool = _help("seq2seq: encoder and decoder share one embedding table", True)

    def __post_init__(self) -> None:
        _representable(self)
        _positive(self, "n_layer", "n_embd", "context_length", "n_head", "hidden_size")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")
        for name in ("head_dim", "mlp_width"):
            if getattr(self, name) is not None:
                _positive(self, name)
        if self.arch in ("transformer_lm", "seq2seq_transformer") and self.head_dim is None and self.n_embd % self.n_head:
            raise ConfigError(f"model.n_embd ({self.n_embd}) must be divisible by model.n_head ({self.n_head})")


@dataclass
class TrainConfig:
    batch_size: int = _help("sequences per optimizer step (global, across ranks and accumulation)", 32)
    grad_accum: int = _help("micro-batches per optimizer step", 1)
    max_steps: int = _help("optimizer steps", 1000)
    lr: float = _help("peak learning rate", 1e-3)
    min_lr: float = _help("learning rate at the end of the cosine decay", 1e-4)
    warmup_steps: int = _help("linear warm-up steps", 100)
    weight_decay: float = _help("AdamW weight decay (matrices only)", 0.1)
    beta1: float = _help("AdamW beta1", 0.9)
    beta2: float = _help("AdamW beta2", 0.99)
    grad_clip: float = _help("clip the global gradient norm to this (0 = off)", 1.0)
    eval_interval: int = _help("evaluate every this many steps", 250)
    eval_batches: int | None = _help("validation batches per evaluation (None = the whole split)", None)
    log_interval: int = _help("log the training loss every this many steps", 10)
    patience: int | None = _help("early stopping: evaluations without improvement before stopping", None)
    samples: int = _help("sample generations printed at each evaluation", 2)
    precision: Literal["auto", "fp32", "bf16"] = _help("auto = bf16 autocast on CUDA, fp32 on CPU", "auto")
    compile: bool = _help("torch.compile the model", False)
    scheduled_sampling: float = _help("seq2seq: per-step decrease of the teacher-forcing probability (0 = off)", 0.0)
    keep_zeros: bool = _help("hold the weight-matrix entries that are exactly 0 when training starts at 0 "
                             "(fine-tuning a run that `seqlab prune` zeroed)", False)

    def __post_init__(self) -> None:
        _representable(self)
        _positive(self, "batch_size", "grad_accum", "max_steps", "eval_interval", "log_interval")
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"train.{name} must be in [0, 1) (AdamW's moving averages), got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be > 0, got {self.lr}")
        for name in ("min_lr", "warmup_steps", "weight_decay", "grad_clip", "samples", "scheduled_sampling"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if self.batch_size % self.grad_accum:
            raise ConfigError(f"train.batch_size ({self.batch_size}) must be divisible by train.grad_accum ({self.grad_accum})")


@dataclass
class DecodeConfig:
    max_new_tokens: int | None = _help("tokens to generate at most; null in a config: a seq2seq run's longest "
                                       "training target + 25% (at least + 8), other runs' 200", None)
    min_new_tokens: int = _help("tokens to generate before EOS is allowed", 0)
    do_sample: bool = _help("sample the next token (true), or pick the most likely one (false: greedy "
                            "or beam search)", True)
    temperature: float = _help("softmax temperature (sampling)", 1.0)
    top_k: int = _help("sample from the k most likely tokens only (0 = off)", 0)
    top_p: float = _help("nucleus sampling: sample from the smallest set of tokens with this much probability, "
                         "in (0, 1] (1 = off)", 1.0)
    min_p: float = _help("drop tokens below min_p times the top probability (0 = off)", 0.0)
    repetition_penalty: float = _help("CTRL-style penalty on tokens already seen (1 = off)", 1.0)
    no_repeat_ngram_size: int = _help("never repeat an n-gram of this size (0 = off)", 0)
    num_beams: int = _help("beam width (1 = no beam search)", 1)
    length_penalty: float = _help("beam search: a beam's score is its log-probability / length**length_penalty",
                                  1.0)
    early_stopping: bool | str = _help("beam search: true, false or never (Hugging Face semantics)", False)
    num_return_sequences: int = _help("sequences returned per input (prompt)", 1)
    stop_strings: list[str] = _help("stop a sequence once its generated text contains one of these strings",
                                    default_factory=list)
    suppress_unk: bool = _help("never generate the <unk> token", True)
    banned_words: list[str] = _help("words or phrases never generated, as text (any tokenizer; case-insensitive, "
                                    "NFKC-normalised; see docs/safety.md)", default_factory=list)

    def __post_init__(self) -> None:
        _representable(self)
        _positive(self, "num_beams", "num_return_sequences")
        if self.max_new_tokens is not None:
            _positive(self, "max_new_tokens")
        if self.min_new_tokens < 0 or self.top_k < 0 or self.no_repeat_ngram_size < 0:
            raise ConfigError("decode.min_new_tokens, decode.top_k and decode.no_repeat_ngram_size must be >= 0")
        if self.temperature <= 0:
            raise ConfigError(f"decode.temperature must be > 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"decode.top_p must be in (0, 1], got {self.top_p}")
        if self.early_stopping not in (True, False, "never"):
            raise ConfigError(f"decode.early_stopping must be true, false or 'never', got {self.early_stopping!r}")


@dataclass
class SafetyConfig:
    filter: Literal["off", "words", "profanity"] = _help(
        "output filter on complete and streamed replies: off; words (seqlab's en/zh lists + `words`); "
        "profanity (the words, plus the alt-profanity-check classifier for English)", "off")
    action: Literal["mask", "regenerate", "refuse"] = _help(
        "what a flagged reply gets: mask (the word becomes ****), regenerate (retry with the word banned, "
        "then refuse), refuse (the refusal instead)", "mask")
    words: str | None = _help("a file of extra words or phrases to filter, one a line (UTF-8)", None)
    refusal: str = _help("the reply given instead of a refused one", "Sorry, I can't say that.")
    max_tries: int = _help("regenerate: generations tried before refusing", 3)

    def __post_init__(self) -> None:
        _representable(self)
        _positive(self, "max_tries")


@dataclass
class FallbackConfig:
    threshold: float | None = _help("answer with `reply` when a reply's confidence (mean log-prob per token; "
                                    "the beam score with beam search) is below this (null = off; "
                                    "`seqlab calibrate` picks it)", None)
    reply: str = _help("the fallback reply", "Sorry, I don't know that yet.")

    def __post_init__(self) -> None:
        _representable(self)


@dataclass
class ChatConfig:
    fallback: FallbackConfig = field(default_factory=FallbackConfig)


@dataclass
class DistillConfig:
    teacher: str | None = _help("knowledge distillation: the teacher's run directory (null = ordinary training; "
                                "`seqlab distill` sets it); it must share this run's tokenizer", None)
    kind: Literal["word", "sequence"] = _help(
        "word: match the teacher's temperature-softened next-token distributions, mixed with the data's "
        "cross-entropy (Hinton et al. 2015); sequence: train on the teacher's own outputs (Kim & Rush 2016)", "word")
    alpha: float = _help("word-level KD: the weight of the teacher's soft targets, in [0, 1] (1 - alpha on the "
                         "data's hard targets)", 0.5)
    temperature: float = _help("word-level KD: the softmax temperature T > 0 of both models' soft targets "
                               "(the KL term is scaled by T^2)", 2.0)
    decoding: Literal["auto", "beam", "sample"] = _help(
        "sequence-level KD: how the teacher writes the corpus: beam (search of width num_beams), sample (from its "
        "distribution, temperature 1, seeded); auto = beam for seq2seq, sample for language models (an LM's beam "
        "output repeats itself)", "auto")
    num_beams: int = _help("sequence-level KD with beam decoding: the teacher's beam width (1 = greedy)", 4)
    prefix_length: int = _help("sequence-level KD, language models: tokens of training text each teacher "
                               "continuation starts from (the rest of each context_length piece is the "
                               "teacher's)", 32)

    def __post_init__(self) -> None:
        _representable(self)
        _positive(self, "num_beams", "prefix_length")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"distill.alpha must be in [0, 1] (the soft targets' weight), got {self.alpha}")
        if self.temperature <= 0:
            raise ConfigError(f"distill.temperature must be > 0, got {self.temperature}")


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    chat: ChatConfig = field(default_factory=ChatConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    seed: int = 1337

    def __post_init__(self) -> None:
        check_seed(self.seed, "seed")
        # an unset reply cap: a seq2seq run's comes from its data (seqlab.decode.reply_length), others get 200
        if self.decode.max_new_tokens is None and self.data.task != "pairs":
            self.decode = dataclasses.replace(self.decode, max_new_tokens=200)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


MAX_BPE_VOCAB = 2**24  # tokenizers' BPE trainer allocates ~72 bytes per requested token up front
SEED_LIMIT = 2**63  # seeds are in [0, 2^63): what every RNG seqlab seeds (torch's is 64-bit) takes as is
INT_LIMIT = 2**63  # every integer key must fit in 64 bits (torch's sizes and counts are int64)


def check_seed(value: Any, name: str = "--seed") -> int:
    """`value` if it is a seed seqlab can use (an int in [0, 2^63)), else a ConfigError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < SEED_LIMIT:
        raise ConfigError(f"{name} must be a whole number in [0, 2^63 - 1 = {SEED_LIMIT - 1}], got {value!r}; "
                          "choose a seed in that range")
    return value


def _representable(obj: Any) -> None:
    """Every float key of `obj` is finite (nan and inf are refused) and every int key fits in 64 bits."""
    section = _SECTION_OF.get(type(obj).__name__, "")
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{section}{f.name} must be a finite number, got {value}; give a value such as "
                              f"{f.default!r} (the default)")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= INT_LIMIT:
            raise ConfigError(f"{section}{f.name} = {value} does not fit in 64 bits (must be < 2^63); "
                              "give a realistic size")


def _positive(obj: Any, *names: str) -> None:
    section = _SECTION_OF.get(type(obj).__name__, "")
    for name in names:
        value = getattr(obj, name)
        if value <= 0:
            raise ConfigError(f"{section}{name} must be > 0, got {value}")


_SECTION_OF = {"DataConfig": "data.", "ModelConfig": "model.", "TrainConfig": "train.", "DecodeConfig": "decode.",
               "SafetyConfig": "safety.", "FallbackConfig": "chat.fallback.",
               "DistillConfig": "distill."}


# ----------------------------------------------------------------------------- loading


def preset_names() -> list[str]:
    """Names of the presets shipped inside the package (`seqlab/configs/*.yaml`)."""
    return sorted(p.name[:-5] for p in resources.files("seqlab.configs").iterdir() if p.name.endswith(".yaml"))


def read_config_file(name_or_path: str | Path) -> dict[str, Any]:
    """Read a YAML config from a path, or a preset by name."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():  # a FIFO or a device is refused too, before anything reads (or waits on) it
            what = "is not a regular file" if path.exists() else "does not exist"
            raise ConfigError(f"config file {str(path)!r} {what}")
        text = path.read_text(encoding="utf-8")
    else:
        names = preset_names()
        if str(name_or_path) not in names:
            raise ConfigError(f"unknown preset {str(name_or_path)!r}; presets: {', '.join(names)} (or give a .yaml path)")
        text = (resources.files("seqlab.configs") / f"{name_or_path}.yaml").read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(yaml_error_message(name_or_path, e)) from None
    except RecursionError:
        raise ConfigError(f"{name_or_path}: YAML nested too deeply to read (over ~{sys.getrecursionlimit()} "
                          "levels); a config is sections of plain keys") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{name_or_path}: a config must be a mapping of sections, got {type(raw).__name__}")
    return raw


def yaml_error_message(source: str | Path, error: yaml.YAMLError) -> str:
    """One line for a YAML text `source` that yaml.safe_load refused: python tags (which could run code,
    and which safe_load never constructs) are named as such; otherwise the parser's problem and line."""
    tag = _python_tag(error)
    if tag:
        return (f"{source}: python tags are not allowed ({tag}): seqlab reads plain YAML and never runs code "
                "from it; remove the tag")
    problem = getattr(error, "problem", None) or str(error).strip().splitlines()[0]
    mark = getattr(error, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{source}: not valid YAML ({problem}{where})"


def _python_tag(error: yaml.YAMLError) -> str | None:
    """'!!python/object/apply:os.system' when `error` is safe_load refusing a python tag, else None."""
    match = re.search(r"tag:yaml\.org,2002:(python/\S*?)'", str(getattr(error, "problem", "") or ""))
    return f"!!{match.group(1)}" if isinstance(error, yaml.constructor.ConstructorError) and match else None


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """['train.lr=3e-4', 'model.cell=gru'] -> {'train': {'lr': '3e-4'}, 'model': {'cell': 'gru'}} (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE (e.g. train.lr=3e-4), got {pair!r}")
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {part} is not a section")
        node[parts[-1]] = parse_value(value, f"--set {key.strip()}")
    return out


def parse_value(value: str, where: str) -> Any:
    """One `--set` value as YAML reads it ('3e-4' -> 0.0003), the text itself when it is not YAML (e.g. a path
    with a colon), "" when blank; python tags and too-deep nesting are a ConfigError naming `where`."""
    if not value.strip():
        return ""
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as e:
        if _python_tag(e):
            raise ConfigError(yaml_error_message(where, e)) from None
        return value
    except RecursionError:
        raise ConfigError(f"{where}: the value is nested too deeply to read (over "
                          f"~{sys.getrecursionlimit()} levels of [ ] or {{ }})") from None


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in update.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(name_or_path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None) -> Config:
    """Build a `Config` from a preset name or YAML path (or a dict), then `--set` overrides."""
    raw = dict(base or {})
    if name_or_path is not None:
        raw = merge(raw, read_config_file(name_or_path))
    raw = merge(raw, parse_overrides(overrides or []))
    return from_dict(Config, raw)


def missing_keys(raw: dict[str, Any], cls: type = Config, prefix: str = "") -> list[str]:
    """The keys of `cls` that the mapping `raw` lacks, dotted; a missing section counts as one entry (its name)."""
    hints = typing.get_type_hints(cls)
    missing = []
    for f in dataclasses.fields(cls):
        if f.name not in raw:
            missing.append(prefix + f.name)
        elif dataclasses.is_dataclass(hints[f.name]) and isinstance(raw[f.name], dict):
            missing += missing_keys(raw[f.name], hints[f.name], f"{prefix}{f.name}.")
    return missing


def from_dict(cls: type, raw: Any, prefix: str = "") -> Any:
    """Recursively build dataclass `cls` from a mapping, checking keys and types."""
    where = prefix.rstrip(".") or "config"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(raw).__name__} {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown config key {prefix}{key}{hint}; valid keys: {', '.join(fields)}")
        hint_type = hints[key]
        if dataclasses.is_dataclass(hint_type):
            kwargs[key] = from_dict(hint_type, value, f"{prefix}{key}.")
        else:
            kwargs[key] = coerce(value, hint_type, f"{prefix}{key}")
    try:
        return cls(**kwargs)
    except TypeError as e:  # pragma: no cover - all keys are checked above
        raise ConfigError(f"{where}: {e}") from None


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Check (and gently convert: '3e-4' -> 3e-4, 1 -> 1.0) `value` against the annotation `tp`."""
    origin, args = get_origin(tp), get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} is not any of {_type_name(tp)}")
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{key}: {value!r} is not a valid choice; choose one of {', '.join(map(str, args))}")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin in (list, tuple) and isinstance(value, (list, tuple)):
        return type(value)(coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)) if args else value
    elif tp is Any:
        return value
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def describe_keys(cls: type = Config, prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """(key, type, default, help) for every config key: the reference table in `seqlab config`."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            rows += describe_keys(hints[f.name], f"{prefix}{f.name}.")
        else:
            default = f.default if f.default is not dataclasses.MISSING else None
            rows.append((prefix + f.name, _type_name(hints[f.name]), default, f.metadata.get("help", "")))
    return rows
