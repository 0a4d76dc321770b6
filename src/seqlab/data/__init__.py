"""seqlab.data: tokenizers, corpora (files and built-ins), splits, and the prepare step.

    from seqlab.data.corpora import load_corpus, list_builtins
    from seqlab.data.tokenizers import train_tokenizer, load_tokenizer
    from seqlab.data.prepare import prepare_data
"""
