"""ReplyPolicy pushed (`open`): a decoder that makes many replies at once feeds each generation's pieces and
says when it ends; the session says what may be sent, when a generation may stop, and what to retry."""

from __future__ import annotations

from seqlab.safety import ReplyPolicy


def fed(session, text: str, size: int = 1) -> list[str]:
    """What the session lets out while `text` is fed `size` characters at a time (stopping where it says)."""
    out = []
    for i in range(0, len(text), size):
        out.append(session.feed(text[i:i + size]))
        if session.stopped:
            break
    return out


def test_an_inactive_policy_lets_every_piece_out():
    session = ReplyPolicy().open()
    assert fed(session, "oh fuck", size=3) == ["oh ", "fuc", "k"]
    outcome = session.finish("length", -0.5)
    assert outcome.text == "" and outcome.retry is None
    assert (outcome.reply.text, outcome.reply.finish_reason, outcome.reply.confidence) == ("oh fuck", "length", -0.5)


def test_mask_holds_back_only_while_a_listed_word_could_begin():
    session = ReplyPolicy("words", "mask").open()
    out = fed(session, "oh fuck it")  # a character a step, as from a character model
    assert out == ["o", "h", " ", "", "", "", "", "**** ", "i", "t"]  # "fuck" waits for what follows it
    outcome = session.finish("stop", -1.0)
    assert "".join(out) + outcome.text == "oh **** it" == outcome.reply.text
    assert (outcome.reply.action_taken, outcome.reply.flagged) == ("masked", ["fuck"])


def test_regenerate_stops_the_generation_at_the_word_and_asks_for_a_retry():
    session = ReplyPolicy("words", "regenerate").open()
    out = fed(session, "you are a fuck up and more")
    assert session.stopped and "".join(out) == "you are a"  # the rest of this generation is not needed
    outcome = session.finish()  # stopped: no finish_reason
    assert outcome.retry == ["fuck"] and outcome.reply is None and outcome.text == ""
    assert not session.stopped
    retry = fed(session, "you are a mess up")
    assert "".join(retry) == " mess up"  # the text already sent is skipped
    outcome = session.finish("stop", -0.3)
    reply = outcome.reply
    assert (reply.text, reply.action_taken, reply.tries, reply.flagged) == ("you are a mess up", "regenerated", 2,
                                                                              ["fuck"])


def test_a_retry_that_does_not_repeat_the_text_sent_is_refused_at_once():
    session = ReplyPolicy("words", "regenerate", refusal="No.").open()
    fed(session, "you are a fuck")
    fed(session, " ")
    assert session.finish().retry == ["fuck"]
    assert set(fed(session, "they")) == {""} and session.stopped
    outcome = session.finish()
    assert outcome.text == " No." and outcome.reply.text == "you are a No."
    assert (outcome.reply.action_taken, outcome.reply.finish_reason) == ("refused", "content_filter")


def test_regenerate_refuses_after_max_tries():
    session = ReplyPolicy("words", "regenerate", max_tries=2, refusal="No.").open()
    for text in ("oh fuck ", "oh shit "):
        fed(session, text)
        outcome = session.finish()
    assert outcome.text == " No." and outcome.reply.tries == 2 and outcome.reply.flagged == ["fuck", "shit"]


def test_without_exact_retries_regenerate_holds_each_generation_back():
    session = ReplyPolicy("words", "regenerate").open(exact_retries=False)
    assert fed(session, "you fuck") == [""] * 8
    assert session.finish("stop", -1.0).retry == ["fuck"]
    fed(session, "you are nice")
    outcome = session.finish("stop", -1.0)
    assert outcome.text == "you are nice" and outcome.reply.action_taken == "regenerated"


def test_refuse_and_the_fallback_hold_the_reply_back_to_its_end():
    refuse = ReplyPolicy("words", "refuse", refusal="No.").open()
    assert set(fed(refuse, "oh fuck it")) == {""}
    outcome = refuse.finish("stop", -1.0)
    assert (outcome.text, outcome.reply.finish_reason) == ("No.", "content_filter")
    unsure = ReplyPolicy(fallback_threshold=-1.0, fallback_reply="?").open()
    assert set(fed(unsure, "paris is in spain")) == {""}
    assert unsure.finish("length", -2.5).reply.text == "?"
    sure = ReplyPolicy(fallback_threshold=-1.0, fallback_reply="?").open()
    fed(sure, "paris is in france")
    outcome = sure.finish("stop", -0.2)
    assert outcome.text == "paris is in france" and outcome.reply.action_taken == "none"
