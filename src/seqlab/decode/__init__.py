"""One decoding engine for every model: greedy, beam search, sampling, streaming.

    from seqlab.decode import generate, stream
    out = generate(model, input_ids, max_new_tokens=50, num_beams=4, eos_token_id=tok.eos_id)
    for piece in stream(model, tok, "ROMEO:", do_sample=True, top_p=0.9, seed=0):
        print(piece, end="")
"""

from seqlab.decode.generate import GenerateOutput, generate
from seqlab.decode.options import GenerationOptions
from seqlab.decode.prompts import build_prompt_ids, left_pad
from seqlab.decode.stream import IncrementalDetokenizer, stream

__all__ = ["GenerateOutput", "GenerationOptions", "IncrementalDetokenizer", "build_prompt_ids", "generate",
           "left_pad", "stream"]
