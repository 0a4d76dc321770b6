"""seqlab.gan."""
