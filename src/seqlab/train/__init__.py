"""seqlab.train."""
