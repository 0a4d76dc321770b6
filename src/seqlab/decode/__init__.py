"""One decoding engine for every model: greedy, beam search, sampling, streaming."""
