"""seqlab.eval."""
