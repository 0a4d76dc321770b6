"""seqlab.chat: a multi-turn conversation with a trained run, over the one streaming generator.

    session = ChatSession(model, tokenizer, GenerationOptions(max_new_tokens=40), history_turns=2)
    print("".join(session.reply("hello")))
"""

from seqlab.chat.session import ChatSession

__all__ = ["ChatSession"]
