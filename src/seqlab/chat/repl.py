"""The chat loop, in two modes.

- interactive (a terminal): a banner, a `you>` prompt with line editing, the reply streamed piece by piece
  as `bot>`; Ctrl-C stops a reply, Ctrl-D (or /quit) leaves.
- scripted (piped stdin): one user turn per input line, one reply per output line on stdout and nothing
  else there; command feedback and errors go to stderr. Blank lines are skipped.
"""

from __future__ import annotations

from typing import TextIO

from seqlab.chat.commands import is_command, run_command
from seqlab.chat.session import ChatSession
from seqlab.errors import SeqlabError

BANNER = "chatting with {name} ({mode}); /help for commands, Ctrl-D to leave"
QUIT = ("/quit", "/exit")


def run_scripted(session: ChatSession, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    """Answer every line of `stdin`; returns the number of replies."""
    replies = 0
    for line in stdin:
        line = line.strip()
        if not line:
            continue
        if line in QUIT:
            break
        if is_command(line):
            _command(session, line, stderr)
            continue
        stdout.write("".join(session.reply(line)).strip() + "\n")
        stdout.flush()
        replies += 1
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
        except KeyboardInterrupt:
            stdout.write(" [stopped]")
        stdout.write("\n")


def _command(session: ChatSession, line: str, out: TextIO) -> None:
    try:
        out.write(run_command(session, line) + "\n")
    except SeqlabError as e:
        out.write(f"error: {e}\n")
    out.flush()
