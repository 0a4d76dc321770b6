"""seqlab.safety: the output filter and the reply policy (the confidence fallback, then the filter's action).

    from seqlab.safety import ReplyPolicy, WordFilter
    WordFilter(["darn"]).mask("oh d4rn it")                     # "oh **** it"
    policy = ReplyPolicy(filter="words", action="regenerate")   # or ReplyPolicy.from_config(run_config)
    reply = policy.reply(model, tokenizer, "hello", max_new_tokens=40)
    reply.text, reply.action_taken          # action_taken: none | masked | regenerated | refused | fallback

See seqlab.safety.policy for the order of things and streams, seqlab.safety.filter for what matches.
"""

from seqlab.safety.filter import Offence, WordFilter
from seqlab.safety.policy import Generation, Reply, ReplyPolicy, ReplyStream
from seqlab.safety.streaming import mask_stream

__all__ = ["Generation", "Offence", "Reply", "ReplyPolicy", "ReplyStream", "WordFilter", "mask_stream"]
