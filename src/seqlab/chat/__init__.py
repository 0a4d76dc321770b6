"""seqlab.chat."""
