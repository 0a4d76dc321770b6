"""`seqlab chat RUN`: a multi-turn conversation with a trained run (scriptable with piped stdin)."""

from __future__ import annotations

import sys
from typing import Any

import typer

from seqlab.cli.decode_options import DECODING, BanWordsOpt, decode_options, with_ban_list
from seqlab.cli.options import DeviceOpt, SeedOpt
from seqlab.cli.safety_options import FallbackThresholdOpt, SafetyActionOpt, SafetyOpt, SafetyWordsOpt
from seqlab.errors import SeqlabError


def register(app: typer.Typer) -> None:
    app.command("chat")(chat)


@decode_options("max_new_tokens", "do_sample", "num_beams", "temperature", "top_k", "top_p",
                notes={"max_new_tokens": "Default: the run's decode.max_new_tokens. A reply cut at it ends with ' …'."})
def chat(
    run: str = typer.Argument(..., help="A run directory: a seq2seq chatbot, or a language model (the history "
                              "becomes its prompt)."),
    history_turns: int = typer.Option(None, "--history-turns", help="Turns the model sees (default: the run's "
                                      "data.history_turns)."),
    decoding: dict = DECODING,
    ban_words: str = BanWordsOpt,
    safety: str = SafetyOpt,
    safety_action: str = SafetyActionOpt,
    safety_words: str = SafetyWordsOpt,
    fallback_threshold: str = FallbackThresholdOpt,
    checkpoint: str = typer.Option("best", "--checkpoint", help="Weights to load: best | last."),
    device: str = DeviceOpt,
    seed: int = SeedOpt,
) -> None:
    """Chat with a trained run. In a terminal: a REPL that streams each reply, with /help, /reset,
    /set temperature 0.7 (any decoding option), /strategy greedy|sample|beam 5, and Ctrl-D to leave.
    With piped stdin: one user turn per line in, one reply per line out (commands' answers go to stderr).
    Decoding options default to the run's `decode` config section; every reply goes through the run's
    reply policy: its `safety` and `chat.fallback` sections, overridden by the --safety and --fallback flags."""
    policy_flags = {"safety": safety, "action": safety_action, "words": safety_words,
                    "threshold": fallback_threshold}
    session = open_session(run, decoding, history_turns, checkpoint, device, seed, ban_words, policy_flags)
    chat_loop(session, run)


def open_session(run: str, flags: dict[str, Any], history_turns: int | None, checkpoint: str = "best",
                 device: str = "cpu", seed: int = 1337, ban_words: str | None = None,
                 policy_flags: dict[str, str | None] | None = None) -> Any:
    """A ChatSession on the run's model, with its decode config overridden by `flags` (None = keep),
    --ban-words FILE's entries added to its banned words, and the run's reply policy overridden by
    `policy_flags` (`seqlab.cli.safety_options.reply_policy`'s arguments; None = keep)."""
    from seqlab.chat import ChatSession
    from seqlab.cli.safety_options import reply_policy
    from seqlab.decode import GenerationOptions
    from seqlab.decode.reply_length import run_max_new_tokens
    from seqlab.device import resolve_device, seed_everything
    from seqlab.models.loading import load_model_from_run
    from seqlab.runs import open_run

    config = open_run(run).read_config()
    if flags.get("max_new_tokens") is None:
        flags = {**flags, "max_new_tokens": run_max_new_tokens(config, run)}
    flags = with_ban_list(flags, ban_words, config.decode)
    options = GenerationOptions.from_config(config.decode, **flags)  # bad flags fail before the model loads
    if history_turns is not None and history_turns < 1:
        raise SeqlabError(f"--history-turns must be >= 1, got {history_turns}")
    policy = reply_policy(config, **(policy_flags or {}))  # a bad flag or word list fails before the model loads
    seed_everything(seed)
    model, tokenizer, config = load_model_from_run(run, resolve_device(device), which=checkpoint)
    options = GenerationOptions.from_config(config.decode, tokenizer, **flags)
    return ChatSession(model, tokenizer, options, history_turns or config.data.history_turns, seed=seed,
                       policy=policy)


def chat_loop(session: Any, name: str) -> None:
    """The REPL on a terminal, else the scripted loop over piped stdin."""
    from seqlab.chat.repl import run_interactive, run_scripted
    from seqlab.io import stdin_lines

    if sys.stdin.isatty():
        run_interactive(session, name, sys.stdout, sys.stderr)
    else:
        run_scripted(session, stdin_lines(), sys.stdout, sys.stderr)  # strict UTF-8, line by line
