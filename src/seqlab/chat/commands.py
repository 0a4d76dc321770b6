"""The chat's slash commands: `/help`, `/reset`, `/set NAME VALUE`, `/strategy greedy|sample|beam N`."""

from __future__ import annotations

import yaml

from seqlab.chat.session import CUT_MARK, SETTABLE, ChatSession
from seqlab.errors import SeqlabError

HELP = f"""commands:
  /help                      this text
  /reset                     forget the conversation so far
  /set NAME VALUE            change a decoding option, e.g. /set temperature 0.7, /set top_p 0.9,
                             /set max_new_tokens 40, /set history_turns 3
  /strategy greedy|sample|beam N
  /show                      the decoding settings, the options changed since the start, the safety
                             policy, and the last reply's finish_reason (stop; length: cut at
                             max_new_tokens; content_filter: refused), confidence and what the
                             policy did (masked, regenerated, refused, fallback)
  Ctrl-D                     leave
a reply cut at max_new_tokens ends with "{CUT_MARK.strip()}"; /set max_new_tokens N allows longer ones
options: history_turns, {', '.join(SETTABLE)}"""


def is_command(line: str) -> bool:
    return line.startswith("/")


def run_command(session: ChatSession, line: str) -> str:
    """Apply one slash command to the session; returns what to tell the user (SeqlabError when it is wrong)."""
    if not line[1:].split():
        raise SeqlabError("an empty command; try /help")
    name, *args = line[1:].split()
    if name == "help":
        return HELP
    if name == "reset":
        session.reset()
        return "(conversation reset)"
    if name == "show":
        return session.describe()
    if name == "set":
        if len(args) != 2:
            raise SeqlabError("usage: /set NAME VALUE, e.g. /set temperature 0.7")
        session.set_option(args[0], _value(args[1]))
        return session.describe()
    if name == "strategy":
        if not args or len(args) > 2 or (len(args) == 2 and args[0] != "beam"):
            raise SeqlabError("usage: /strategy greedy | sample | beam N")
        beams = _value(args[1]) if len(args) == 2 else None
        if beams is not None and (isinstance(beams, bool) or not isinstance(beams, int) or beams < 1):
            raise SeqlabError(f"/strategy beam N needs a whole number of beams >= 1, got {args[1]!r}")
        session.set_strategy(args[0], beams)
        return session.describe()
    raise SeqlabError(f"unknown command /{name}; try /help")


def _value(text: str) -> object:
    """A command argument as YAML reads it: 0.7 -> float, 5 -> int, true -> bool, [3, 4] -> list."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    except RecursionError:
        raise SeqlabError(f"the value {text[:40]!r}... is nested too deeply to read; give a plain value") from None
