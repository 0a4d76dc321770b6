"""ReplyPolicy on scripted generations: the fallback, mask, refuse and regenerate, on complete replies and
streams, and its construction from a run's config."""

from __future__ import annotations

import pytest

from seqlab.config import Config
from seqlab.errors import ConfigError, SeqlabError
from seqlab.safety import Generation, ReplyPolicy


class Script:
    """Stands in for the model: `start(banned)` streams the first scripted text the ban list allows (a text
    allowed when it holds none of the banned words), in pieces of `size` characters."""

    def __init__(self, *texts: str, confidence: float = -0.5, size: int = 3):
        self.texts, self.confidence, self.size = texts, confidence, size
        self.bans: list[list[str]] = []

    def text(self, banned: list[str]) -> str:
        self.bans.append(list(banned))
        return next((t for t in self.texts if not any(b in t for b in banned)), self.texts[-1])

    def start(self, banned: list[str]) -> Stream:
        text = self.text(banned)
        return Stream([text[i:i + self.size] for i in range(0, len(text), self.size)], self.confidence)

    def generation(self, banned: list[str]) -> Generation:
        return Generation(self.text(banned), "stop", self.confidence)


class Stream:
    def __init__(self, pieces: list[str], confidence: float):
        self.pieces, self.finish_reason, self.confidence, self._confidence = pieces, None, None, confidence

    def __iter__(self):
        yield from self.pieces
        self.finish_reason, self.confidence = "stop", self._confidence


def streamed(policy: ReplyPolicy, script: Script, **kw):
    replies = policy.apply_stream(script.start, **kw)
    pieces = list(replies)
    assert "".join(pieces) == replies.reply.text
    return pieces, replies.reply


def test_an_inactive_policy_passes_the_stream_through():
    pieces, reply = streamed(ReplyPolicy(), Script("oh fuck it"))
    assert pieces == ["oh ", "fuc", "k i", "t"]
    assert (reply.action_taken, reply.finish_reason, reply.confidence) == ("none", "stop", -0.5)


def test_mask_streams_and_masks():
    pieces, reply = streamed(ReplyPolicy("words"), Script("oh fuck it"))
    assert "".join(pieces) == "oh **** it" and pieces[0] == "oh "
    assert (reply.action_taken, reply.flagged, reply.finish_reason) == ("masked", ["fuck"], "stop")
    assert ReplyPolicy("words").apply(Generation("oh f.u.c.k it")).text == "oh ******* it"


def test_a_clean_reply_is_left_alone():
    for action in ("mask", "refuse", "regenerate"):
        pieces, reply = streamed(ReplyPolicy("words", action), Script("all is well"))
        assert "".join(pieces) == "all is well" and reply.action_taken == "none" and reply.tries == 1


def test_refuse_holds_the_reply_back_and_gives_the_refusal():
    policy = ReplyPolicy("words", "refuse", refusal="No.")
    pieces, reply = streamed(policy, Script("oh fuck it"))
    assert pieces == ["No."]
    assert (reply.action_taken, reply.finish_reason, reply.flagged) == ("refused", "content_filter", ["fuck"])
    assert policy.apply(Generation("oh shit", "stop", -1.0)).text == "No."


def test_regenerate_bans_the_word_and_the_stream_goes_on_after_what_was_sent():
    script = Script("you are a fuck up", "you are a mess up")
    pieces, reply = streamed(ReplyPolicy("words", "regenerate"), script)
    assert "".join(pieces) == "you are a mess up" and pieces[0] == "you"
    assert (reply.action_taken, reply.tries, reply.flagged) == ("regenerated", 2, ["fuck"])
    assert script.bans == [[], ["fuck"]]


def test_regenerate_bans_the_spelling_found_as_well_as_the_listed_word():
    script = Script("you are a f.u.c.k up", "you are fine")
    reply = ReplyPolicy("words", "regenerate").apply(script.generation([]), script.generation)
    assert reply.text == "you are fine" and script.bans[-1] == ["fuck", "f.u.c.k"]


def test_regenerate_refuses_after_max_tries():
    script = Script("oh fuck", "oh shit", "oh cunt", "oh fine")
    pieces, reply = streamed(ReplyPolicy("words", "regenerate", max_tries=3, refusal="No."), script)
    assert "".join(pieces) == "oh No." and len(script.bans) == 3  # "oh " was sent before the first word
    assert (reply.action_taken, reply.finish_reason, reply.tries) == ("refused", "content_filter", 3)
    assert reply.flagged == ["fuck", "shit", "cunt"]
    complete = Script("oh fuck", "oh shit", "oh cunt", "oh fine")
    policy = ReplyPolicy("words", "regenerate", max_tries=4)
    reply = policy.apply(complete.generation([]), complete.generation)
    assert (reply.text, reply.action_taken, reply.tries) == ("oh fine", "regenerated", 4)


def test_a_retry_that_does_not_repeat_what_was_sent_is_refused():
    script = Script("you are a fuck up", "they are nice")
    pieces, reply = streamed(ReplyPolicy("words", "regenerate", refusal="No."), script)
    assert "".join(pieces) == "you are a No." and reply.action_taken == "refused"


def test_without_exact_retries_regenerate_holds_the_reply_back():
    script = Script("you are a fuck up", "they are nice")
    pieces, reply = streamed(ReplyPolicy("words", "regenerate"), script, exact_retries=False)
    assert pieces == ["they are nice"] and reply.action_taken == "regenerated"


def test_regenerate_without_a_way_to_retry_refuses():
    reply = ReplyPolicy("words", "regenerate").apply(Generation("oh shit"))
    assert reply.action_taken == "refused" and reply.tries == 1


def test_the_fallback_below_the_threshold():
    policy = ReplyPolicy(fallback_threshold=-1.0, fallback_reply="I don't know.")
    pieces, reply = streamed(policy, Script("paris is in spain", confidence=-2.5))
    assert pieces == ["I don't know."]
    assert (reply.action_taken, reply.confidence, reply.finish_reason) == ("fallback", -2.5, "stop")
    pieces, reply = streamed(policy, Script("paris is in france", confidence=-0.2))
    assert pieces == ["paris is in france"] and reply.action_taken == "none"  # held back: known at the end
    assert policy.apply(Generation("x", "stop", None)).action_taken == "none"  # no confidence: no fallback


def test_the_fallback_comes_before_the_filter():
    policy = ReplyPolicy("words", "refuse", fallback_threshold=-1.0, fallback_reply="?")
    assert policy.apply(Generation("oh shit", "stop", -3.0)).action_taken == "fallback"
    assert policy.apply(Generation("oh shit", "stop", -0.1)).action_taken == "refused"


def test_from_config_and_its_overrides():
    config = Config()
    assert not ReplyPolicy.from_config(config).active
    policy = ReplyPolicy.from_config(config, {"safety.filter": "words", "safety.action": "refuse",
                                              "chat.fallback.threshold": "-1.5", "safety.max_tries": 2})
    assert (policy.filter, policy.action, policy.fallback_threshold) == ("words", "refuse", -1.5)
    assert policy.max_tries == 2
    assert policy.describe() == "safety filter words (action refuse), fallback below confidence -1.5"


def test_from_config_reads_the_words_file(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("frack\n", encoding="utf-8")
    policy = ReplyPolicy.from_config(Config(), {"safety.filter": "words", "safety.words": str(path)})
    assert policy.apply(Generation("oh frack")).text == "oh *****"
    off = ReplyPolicy.from_config(Config(), {"safety.words": str(tmp_path / "missing.txt")})  # off: not read
    assert not off.active


@pytest.mark.parametrize(("overrides", "message"), [
    ({"safety.action": "explode"}, "safety.action: 'explode' is not a valid choice"),
    ({"safety.filter": "all"}, "safety.filter: 'all' is not a valid choice"),
    ({"chat.fallback.threshold": "high"}, "chat.fallback.threshold: expected float"),
    ({"chat.fallback.threshold": float("nan")}, "chat.fallback.threshold must be a finite number"),
    ({"safety.max_tries": 0}, "safety.max_tries must be > 0"),
    ({"safety.colour": "red"}, "unknown config key safety.colour"),
    ({"decode.top_k": 3}, "a reply policy override must be a safety.* or chat.fallback.* key"),
])
def test_bad_overrides_are_one_line_errors(overrides, message):
    with pytest.raises(SeqlabError) as error:
        ReplyPolicy.from_config(Config(), overrides)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_bad_arguments():
    for kwargs in ({"filter": "all"}, {"action": "explode"}, {"max_tries": 0}, {"fallback_threshold": "low"}):
        with pytest.raises(SeqlabError):
            ReplyPolicy(**kwargs)
    assert issubclass(ConfigError, SeqlabError)
