"""English profanity from `alt-profanity-check`, an offline classifier that ships its model (imported lazily).

The model is a linear SVM, calibrated to probabilities, over a bag of words: TF-IDF unigrams
(15,442 words, English stop words dropped), each text's vector l2-normalised. A one-word text's vector is
that word's unit vector, so the probability the model gives a word alone is its own weight, in context or
not; a longer text only averages its words' weights, down-weighting one profane word among many. The
filter therefore uses the model word by word: the words it scores as profane on their own,

    P(profane | word) >= THRESHOLD,

join the word lists (and so match as whole words, with their leetspeak, repeated-letter and spelled-out
forms). Scoring whole replies instead would let a long reply hide a word, and could not decide a streamed
reply before its end.

THRESHOLD was chosen by measurement (2026-12, alt-profanity-check 1.9.1), counting the lines that hold a
word the model flags at it (a line that says "ass" or "bastard" meaning the animal or the child counts as
a false positive):

    threshold  words  tinyshakespeare lines (24,015)  chatterbot English (1,874)  most flagged
    0.95       104    185 (0.77%)                     8 (0.43%)                   fool, hell, coward, shut
    0.99        63     89 (0.37%)                     6 (0.32%)                   hell (38 lines)
    0.995       52     38 (0.16%)                     5 (0.27%)                   bastard, ass, cock, suck

Below 0.99 the model flags ordinary words (fool, coward, liar, shut, hate, kill, die, sick, fat) and
identity words (gay, homosexual); 0.995 drops "hell" as well. Words shorter than 3 letters (the fragment
"ck") are not used, which leaves 51. With seqlab's word lists and their variants (filter "profanity"),
47 Shakespeare lines (0.20%) and 5 chatterbot ones (0.27%) are flagged, and none of chatterbot's 878
Chinese utterances; tests/safety/test_classifier.py keeps these figures and the lines it must catch.
"""

from __future__ import annotations

from functools import lru_cache

THRESHOLD = 0.995
MIN_LETTERS = 3


@lru_cache(maxsize=4)
def classifier_words(threshold: float = THRESHOLD) -> tuple[str, ...]:
    """The words of the classifier's vocabulary it scores P(profane) >= `threshold` on their own."""
    import scipy.sparse
    from profanity_check.profanity_check import model, vectorizer

    words = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.get)  # column order
    alone = scipy.sparse.identity(len(words), format="csr")  # (V, V): row i = word i's text, l2-normalised
    profane = model.predict_proba(alone)[:, 1]  # (V,)
    return tuple(w for w, p in zip(words, profane, strict=True)
                 if p >= threshold and len(w) >= MIN_LETTERS and w.isalpha())

