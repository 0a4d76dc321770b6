"""The chat loop, in two modes.

- interactive (a terminal): a banner, a `you>` prompt with line editing, the reply streamed piece by piece
  as `bot>`; Ctrl-C stops a reply, Ctrl-D (or /quit) leaves.
- scripted (piped stdin): exactly one line on stdout per input line (up to /quit), so that replies line up
  with their inputs: the reply to a turn, or an empty line for a blank line or a command (whose feedback
  goes to stderr, as do errors). A reply is always one line.

In both, a reply that max_new_tokens cut short ends with `CUT_MARK` (" …"); /show gives its finish_reason.
"""

from __future__ import annotations

from typing import TextIO

from seqlab.chat.commands import is_command, run_command
from seqlab.chat.session import CUT_MARK, ChatSession
from seqlab.errors import SeqlabError

BANNER = "chatting with {name} ({mode}); /help for commands, Ctrl-D to leave"
QUIT = ("/quit", "/exit")


def run_scripted(session: ChatSession, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    """Answer every line of `stdin` with one line of `stdout` (see the module docstring); returns the number
    of replies."""
    replies = 0
    for line in stdin:
        line = line.strip()
        if line in QUIT:
            break
        answer = ""
        if is_command(line):
            _command(session, line, stderr)
        elif line:
            try:
                answer = "".join(session.reply(line)).strip() + _mark(session)
                replies += 1
            except SeqlabError as e:  # e.g. a prompt too long for the model: this turn fails, not the script
                stderr.write(f"error: {e}\n")
                stderr.flush()
        stdout.write(answer + "\n")
        stdout.flush()
    return replies


def run_interactive(session: ChatSession, name: str, stdout: TextIO, stderr: TextIO) -> None:
    """The terminal REPL (reads with `input`, so readline line editing and history work)."""
    import readline  # noqa: F401 - gives input() line editing

    mode = "seq2seq" if session.is_encoder_decoder else "language model"
    stdout.write(BANNER.format(name=name, mode=mode) + "\n" + session.describe() + "\n")
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            stdout.write("\n")
            return
        except KeyboardInterrupt:
            stdout.write("\n")
            continue
        if not line:
            continue
        if line in QUIT:
            return
        if is_command(line):
            _command(session, line, stdout)
            continue
        stdout.write("bot> ")
        try:
            for piece in session.reply(line):
                stdout.write(piece)
                stdout.flush()
            stdout.write(_mark(session))
        except KeyboardInterrupt:
            stdout.write(" [stopped]")
        except SeqlabError as e:
            stdout.write(f"\nerror: {e}")
        stdout.write("\n")


def _mark(session: ChatSession) -> str:
    """CUT_MARK after a reply that max_new_tokens cut short, else nothing."""
    return CUT_MARK if session.finish_reason == "length" else ""


def _command(session: ChatSession, line: str, out: TextIO) -> None:
    try:
        out.write(run_command(session, line) + "\n")
    except SeqlabError as e:
        out.write(f"error: {e}\n")
    out.flush()
