"""The built-in corpora: a name -> (description, source, licence, install hint, loader) table.

Loaders are called with no arguments, except family loaders (`chatterbot/<language>`), which get
the member name and `history_turns`, and dialogue loaders, which take `history_turns`. Modules
outside seqlab.data register their corpora when imported; `_REGISTERING_MODULES` names them so
that listing or loading imports them lazily.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass

from seqlab.data.corpus import Corpus
from seqlab.errors import DataError

# name -> module that calls register_builtin(name, ...) when imported
_REGISTERING_MODULES = {
    "oracle": "seqlab.gan.oracle_corpus",
}


@dataclass(frozen=True)
class BuiltinInfo:
    name: str
    description: str
    source: str
    license: str
    install_hint: str = ""


@dataclass(frozen=True)
class _Family:
    """Built-ins named `prefix/member`, whose members are known only once their package is installed."""

    info: BuiltinInfo
    members: Callable[[], list[str]]  # raises DataError (with the install hint) when the package is missing
    loader: Callable[..., Corpus]


_BUILTINS: dict[str, tuple[BuiltinInfo, Callable[[], Corpus]]] = {}
_FAMILIES: dict[str, _Family] = {}


def register_builtin(name: str, loader: Callable[[], Corpus], description: str, source: str, license: str,
                     install_hint: str = "") -> None:
    """Make `load_corpus(name)` call `loader()`; `seqlab data list` shows the rest."""
    _BUILTINS[name] = (BuiltinInfo(name, description, source, license, install_hint), loader)


def register_family(prefix: str, member_label: str, members: Callable[[], list[str]], loader: Callable[..., Corpus],
                    description: str, source: str, license: str, install_hint: str = "") -> None:
    """Built-ins `prefix/<member>`: `loader(member, history_turns=k)`; `members()` lists them."""
    info = BuiltinInfo(f"{prefix}/<{member_label}>", description, source, license, install_hint)
    _FAMILIES[prefix] = _Family(info, members, loader)


def _import_registering_modules() -> None:
    for module in _REGISTERING_MODULES.values():
        parent = module.rpartition(".")[0]
        if (not parent or importlib.util.find_spec(parent)) and importlib.util.find_spec(module):
            importlib.import_module(module)


def list_builtins() -> list[BuiltinInfo]:
    """Every built-in corpus; a family lists each member when its package is installed, else a pattern."""
    _import_registering_modules()
    out = [info for info, _ in _BUILTINS.values()]
    for prefix, family in _FAMILIES.items():
        try:
            names = family.members()
        except DataError:
            out.append(family.info)
            continue
        info = family.info
        out += [BuiltinInfo(f"{prefix}/{m}", info.description, info.source, info.license, info.install_hint)
                for m in names]
    return sorted(out, key=lambda i: i.name)


def known_names() -> list[str]:
    """Names to suggest in an error: plain built-ins and `family/<member>` patterns."""
    _import_registering_modules()
    return sorted([*_BUILTINS, *(f.info.name for f in _FAMILIES.values())])


def is_builtin_name(name: str) -> bool:
    _import_registering_modules()
    return name in _BUILTINS or name.partition("/")[0] in _FAMILIES


def load_builtin(name: str, *, history_turns: int = 1) -> Corpus:
    _import_registering_modules()
    if name in _BUILTINS:
        loader = _BUILTINS[name][1]
        if "history_turns" in inspect.signature(loader).parameters:  # a dialogue corpus
            return loader(history_turns=history_turns)
        return loader()
    prefix, _, member = name.partition("/")
    if prefix in _FAMILIES:
        family = _FAMILIES[prefix]
        members = family.members()
        if member not in members:
            close = difflib.get_close_matches(member, members, n=1)
            hint = f" (did you mean {prefix}/{close[0]}?)" if close else ""
            raise DataError(f"unknown {prefix} corpus {name!r}{hint}; choose one of: "
                            + ", ".join(f"{prefix}/{m}" for m in members))
        return family.loader(member, history_turns=history_turns)
    close = difflib.get_close_matches(name, [*_BUILTINS, *_FAMILIES], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise DataError(f"unknown built-in corpus {name!r}{hint}; built-ins: {', '.join(known_names())} "
                    "(or give a path to a .txt, .jsonl or .tsv file)")


def package_dir(module: str, what: str, install: str) -> str:
    """The directory of an installed data package, or a DataError saying how to install it."""
    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise DataError(f"{what} needs the {module!r} package, which is not installed: {install}") from None
    return os.path.dirname(mod.__file__)
