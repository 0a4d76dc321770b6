"""seqlab: neural text and dialogue generation — data, models, one decoding engine, evaluation, SeqGAN."""

__version__ = "0.1.0"
