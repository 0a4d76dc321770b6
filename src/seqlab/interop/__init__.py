"""seqlab.interop."""
