"""Translation quality (sacrebleu BLEU and chrF) and the two baselines every run is compared to.

Hypotheses and references are scored in one normal form (`vocab.normalize`: lower case, our
tokenisation), so BLEU here is case-insensitive and the baselines are scored exactly like the
model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sacrebleu.metrics import BLEU, CHRF
from sklearn.feature_extraction.text import TfidfVectorizer

from pipelines.translate.vocab import normalize


def scores(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Corpus BLEU (sacrebleu's default 13a tokenisation, exponential smoothing) and chrF, 0-100."""
    hypotheses, references = list(hypotheses), [list(references)]
    return {
        "bleu": BLEU().corpus_score(hypotheses, references).score,
        "chrf": CHRF().corpus_score(hypotheses, references).score,
    }


def copy_baseline(sources: Sequence[str]) -> list[str]:
    """Output = input: software messages keep many names, options and numbers untranslated."""
    return [normalize(s) for s in sources]


def retrieval_baseline(train_pairs: Sequence[tuple[str, str]], sources: Sequence[str]) -> list[str]:
    """The French side of the training pair whose English is most similar (TF-IDF over word
    uni- and bigrams, cosine): translation memory, the tool human translators use."""
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"\S+")
    memory = vectorizer.fit_transform([normalize(en) for en, _ in train_pairs])
    queries = vectorizer.transform([normalize(s) for s in sources])
    nearest = np.asarray((queries @ memory.T).argmax(axis=1)).ravel()
    return [normalize(train_pairs[i][1]) for i in nearest]
