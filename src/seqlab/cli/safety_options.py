"""The reply policy flags of `seqlab generate` and `seqlab chat`: each overrides one key of the run's `safety`
or `chat.fallback` config section, checked as the config checks it (a bad value: one line, exit 2)."""

from __future__ import annotations

from typing import Any

import typer

SafetyOpt: Any = typer.Option(None, "--safety", metavar="FILTER", help=(
    "Output filter on every reply: off; words (seqlab's English and Chinese lists and --safety-words); "
    "profanity (those and the words the alt-profanity-check classifier flags). Default: the run's "
    "safety.filter."))
SafetyActionOpt: Any = typer.Option(None, "--safety-action", metavar="ACTION", help=(
    "What a reply with a filtered word gets: mask (****), regenerate (again with the word banned, then "
    "refuse), refuse (the run's safety.refusal). Default: the run's safety.action."))
SafetyWordsOpt: Any = typer.Option(None, "--safety-words", metavar="FILE", help=(
    "More words or phrases to filter, one a line (UTF-8; # comments); turns the filter on (words) where "
    "the run's is off."))
FallbackThresholdOpt: Any = typer.Option(None, "--fallback-threshold", metavar="X", help=(
    "Answer with the run's chat.fallback.reply when a reply's confidence (mean log-prob per token; the "
    "beam score with beams) is below X; off for no fallback. Default: the run's chat.fallback.threshold."))

OFF = ("off", "none", "null")


def reply_policy(config: Any, safety: str | None = None, action: str | None = None, words: str | None = None,
                 threshold: str | None = None) -> Any:
    """The run config's `seqlab.safety.ReplyPolicy` with the flags given (None = keep the run's)."""
    from seqlab.config import parse_value
    from seqlab.safety import ReplyPolicy

    overrides: dict[str, Any] = {}
    if safety is not None:
        overrides["safety.filter"] = safety
    if action is not None:
        overrides["safety.action"] = action
    if words is not None:
        overrides["safety.words"] = words
        if safety is None and config.safety.filter == "off":
            overrides["safety.filter"] = "words"
    if threshold is not None:
        off = threshold.strip().lower() in OFF
        overrides["chat.fallback.threshold"] = None if off else parse_value(threshold, "--fallback-threshold")
    return ReplyPolicy.from_config(config, overrides)
