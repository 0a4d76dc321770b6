"""The decoding flags of `seqlab generate`, `eval` and `chat`, declared once from `DecodeConfig`.

A flag's name, type and help come from the `DecodeConfig` field it sets (the field's `_help` doc, also
shown by `seqlab config --help-keys`), so every command spells and explains it the same way. A command
names the fields it exposes and takes their values as one `decoding` dict (field name -> value; None
where the flag was not given, i.e. keep the run's `decode` config):

    @decode_options("max_new_tokens", "do_sample", "temperature")
    def chat(run: str = typer.Argument(...), decoding: dict = DECODING, ...) -> None: ...

The flags stand where `decoding` stands in the signature, in the order named.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any

import typer

from seqlab.config import DecodeConfig
from seqlab.errors import SeqlabError

# a field's flag is --field-name, except these
FLAG_NAMES = {"do_sample": ("--do-sample/--greedy",), "stop_strings": ("--stop",)}
# how a field is typed on the command line where its config type is not a plain scalar
FLAG_TYPES: dict[str, Any] = {"early_stopping": str, "stop_strings": list[str]}
# said after the field's doc on the command line only
FLAG_NOTES = {"stop_strings": "Repeatable."}
EARLY_STOPPING = {"true": True, "false": False, "never": "never"}

DECODING: Any = None  # the placeholder default of a command's `decoding` parameter
BanWordsOpt: Any = typer.Option(None, "--ban-words", metavar="FILE", help="Never generate the words or phrases "
                                "of FILE (UTF-8, one a line; blank lines and # comments skipped), besides the "
                                "run's decode.banned_words.")


def _field(name: str) -> dataclasses.Field:
    fields = {f.name: f for f in dataclasses.fields(DecodeConfig)}
    if name not in fields:
        raise KeyError(f"DecodeConfig has no field {name!r}")
    return fields[name]


def flag_help(name: str) -> str:
    """The field's doc as a help sentence: the text every command's flag starts with."""
    doc = _field(name).metadata["help"]
    text = doc[0].upper() + doc[1:] + ("" if doc.endswith(".") else ".")
    return f"{text} {FLAG_NOTES[name]}" if name in FLAG_NOTES else text


def flag_type(name: str) -> Any:
    """The type a field's flag parses to: the field's type without None (`int | None` -> int)."""
    if name in FLAG_TYPES:
        return FLAG_TYPES[name]
    hint = typing.get_type_hints(DecodeConfig)[name]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
    return hint


def flag_option(name: str, default: Any = None, note: str | None = None) -> Any:
    """The `typer.Option` of one DecodeConfig field (`note`: what this command adds, e.g. its default)."""
    decls = FLAG_NAMES.get(name, ("--" + name.replace("_", "-"),))
    help_text = flag_help(name) + (f" {note}" if note else "")
    return typer.Option(default, *decls, help=help_text)


def decode_options(*names: str, defaults: dict[str, Any] | None = None,
                   notes: dict[str, str] | None = None) -> Callable[[Callable], Callable]:
    """Give a command one flag per named DecodeConfig field in place of its `decoding` parameter.

    `defaults`: a flag's value when not given (else None: the run's config); `notes`: help this command
    adds after the field's doc. The command gets `decoding={name: value, ...}`, an empty list as None.
    """
    defaults, notes = defaults or {}, notes or {}
    for name in (*defaults, *notes):
        if name not in names:
            raise ValueError(f"{name!r} has a default or note but is not one of the flags {names}")

    def wrap(command: Callable) -> Callable:
        hints = typing.get_type_hints(command)
        params = [p.replace(annotation=hints.get(p.name, p.annotation))
                  for p in inspect.signature(command).parameters.values()]
        at = [p.name for p in params].index("decoding")
        flags = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=flag_type(name),
                                   default=flag_option(name, defaults.get(name), notes.get(name)))
                 for name in names]
        clash = {p.name for p in params} & set(names)
        if clash:
            raise ValueError(f"{command.__name__} already has parameters {sorted(clash)}")
        params[at:at + 1] = flags

        @functools.wraps(command)
        def with_flags(**kwargs: Any) -> Any:
            decoding = {name: kwargs.pop(name, defaults.get(name)) for name in names}
            decoding = {k: (None if v == [] or v == () else v) for k, v in decoding.items()}
            return command(**kwargs, decoding=decoding)

        with_flags.__signature__ = inspect.signature(command).replace(parameters=params)  # type: ignore[attr-defined]
        with_flags.__annotations__ = {p.name: p.annotation for p in params} | {"return": hints.get("return")}
        return with_flags

    return wrap


def with_ban_list(flags: dict[str, Any], ban_words: str | None, decode_config: DecodeConfig) -> dict[str, Any]:
    """`flags` with --ban-words FILE's entries added to the run's decode.banned_words (unchanged without it)."""
    if ban_words is None:
        return flags
    from seqlab.decode.banned_words import read_word_list

    return flags | {"banned_words": [*decode_config.banned_words, *read_word_list(ban_words)]}


def early_stopping(value: str | None) -> bool | str | None:
    """--early-stopping's text as DecodeConfig.early_stopping (true | false | never, any case)."""
    if value is None:
        return None
    if value.lower() not in EARLY_STOPPING:
        raise SeqlabError(f"--early-stopping must be true, false or never, got {value!r}")
    return EARLY_STOPPING[value.lower()]
