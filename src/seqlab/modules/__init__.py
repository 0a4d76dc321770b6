"""seqlab.modules."""
