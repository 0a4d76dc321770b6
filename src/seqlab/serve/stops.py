"""OpenAI's stop sequences on a stream of text pieces: the text ends *before* the first stop string.

The engine (seqlab.decode.stopping) ends a choice once its text holds a stop string, matched across
token boundaries, and gives the text up to and including it, as Hugging Face does. OpenAI's clients
expect the stop string left out, and a stream must not show the start of one before it is known to
be one: a piece that ends with a proper prefix of a stop string ("\\n" of "\\n\\nUser:") is held back
until the next piece settles it.

    trimmer = StopTrimmer(["\\n\\n"])
    trimmer.push("Hi.\\n") == "Hi."    # "\\n" held back
    trimmer.push("\\nBye") == ""        # the stop string: nothing more, ever
    trimmer.flush() == ""
"""

from __future__ import annotations

from collections.abc import Sequence


class StopTrimmer:
    def __init__(self, stops: Sequence[str]):
        self.stops = [s for s in stops if s]
        self.held = ""  # the end of the text so far that may start a stop string
        self.stopped = False

    def push(self, piece: str) -> str:
        """The part of `piece` (after what was held back) that is surely text before any stop string."""
        if self.stopped:
            return ""
        text = self.held + piece
        ends = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if ends:
            self.stopped, self.held = True, ""
            return text[:min(ends)]
        keep = max((k for s in self.stops for k in range(min(len(s) - 1, len(text)), 0, -1)
                    if text.endswith(s[:k])), default=0)
        self.held = text[len(text) - keep:]
        return text[:len(text) - keep]

    def flush(self) -> str:
        """At the end of the text: what was held back never became a stop string."""
        rest, self.held = ("" if self.stopped else self.held), ""
        return rest
