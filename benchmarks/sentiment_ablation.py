"""What each ingredient of the sentiment default contributes, measured in one run.

Every row is scored on the same Rotten Tomatoes test split (in domain) and on the test half of
the tweet proxy (its airline tweets a topic no training text was about), beside a TF-IDF +
logistic regression baseline on the same training part. Rows that change training (the
tweets, the normaliser, the GloVe vocabulary extension, fine-tuned instead of corrected
vectors, word dropout) retrain the network through the runner; rows that change only the
deployed ensemble (which experts, how the weights are chosen) re-mix the parts of the default
run's own model, so they differ in that alone. Weights are always chosen on held-out data
(validation part, proxy dev half), never on test.

    python benchmarks/sentiment_ablation.py [--epochs 10] [--rows default,plain,...]
        [--output benchmarks/results/sentiment_ablation.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

import pipelines  # noqa: F401  (quiet TensorFlow start-up)
from pipelines.core import RunOptions, run
from pipelines.datasets.text_builders import proxy_tweets
from pipelines.sentiment import network as network_module
from pipelines.sentiment.network import parts
from pipelines.sentiment.task import (
    SentimentConfig,
    SentimentTask,
    choose_weights,
    classification_metrics,
    predict_texts,
    with_training_texts,
)

_PUNCTUATION = re.compile(r"[^\w\s]")


def plain(text: str, negation: bool = False) -> str:
    """Keras' default standardisation (lowercase, punctuation stripped), no other rule."""
    return _PUNCTUATION.sub("", text.lower())


@contextlib.contextmanager
def plain_normaliser() -> Iterator[None]:
    """Train and score with :func:`plain` in place of the normaliser (network and experts)."""
    kept = network_module.normalise
    network_module.normalise = plain
    try:
        yield
    finally:
        network_module.normalise = kept


RETRAINED = {
    "default": ({}, contextlib.nullcontext),
    "plain": ({}, plain_normaliser),
    "no_glove_words": ({"glove_words": 0}, contextlib.nullcontext),
    "fine_tuned_vectors": ({"embedding_training": "full"}, contextlib.nullcontext),
    "frozen_vectors": ({"embedding_training": "frozen"}, contextlib.nullcontext),
    "no_word_dropout": ({"word_dropout": 0.0}, contextlib.nullcontext),
    "no_tweets": ({"extra_training": "none"}, contextlib.nullcontext),
}
LABELS = {
    "default": "default (tweets in training, normaliser, GloVe + 50k words, correction, "
    "lexicon + NB-SVM, auto)",
    "plain": "plain lowercase tokens instead of the normaliser",
    "no_glove_words": "training words only (no GloVe vocabulary extension)",
    "fine_tuned_vectors": "GloVe vectors fine-tuned instead of frozen + correction",
    "frozen_vectors": "GloVe vectors frozen, no correction",
    "no_word_dropout": "no word dropout",
    "no_tweets": "trained on the critics alone (no tweets)",
}
# Re-mixes of the default run's parts: (columns of network, lexicon, nbsvm; weight rule).
MIXES = {
    "network alone": ([0], "fixed"),
    "lexicon alone": ([1], "fixed"),
    "NB-SVM alone": ([2], "fixed"),
    "network + NB-SVM, auto": ([0, 2], "auto"),
    "network + lexicon, auto": ([0, 1], "auto"),
    "all three, equal weights": ([0, 1, 2], "equal"),
    "all three, weights on validation only": ([0, 1, 2], "validation"),
    "all three, weights on validation + proxy dev (default)": ([0, 1, 2], "auto"),
}


def held_out(cfg: SentimentConfig) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Texts and labels of the run's training, validation and test parts (the training part
    with the default's tweets) and of the proxy's halves."""
    task = SentimentTask()
    texts, labels, _, groups = task.load(cfg)
    proxy = proxy_tweets()
    parts = task.split(cfg, labels, groups)
    if cfg.trains_on_tweets:
        texts, labels, parts = with_training_texts(texts, labels, parts, *proxy["train"])
    train, validation, test = parts
    return {
        "train": (texts[train], labels[train]),
        "validation": (texts[validation], labels[validation]),
        "test": (texts[test], labels[test]),
        "proxy_dev": (np.array(proxy["dev"][0], dtype=object), proxy["dev"][1]),
        "proxy_test": (np.array(proxy["test"][0], dtype=object), proxy["test"][1]),
    }


def scores(probability: np.ndarray, sets, name: str) -> dict[str, float]:
    return {
        f"{name}_{k}": v
        for k, v in classification_metrics(sets[name][1], probability).items()
        if k in ("accuracy", "roc_auc")
    }


def remixed(model, sets) -> list[dict]:
    """Each mix of the trained parts, weights chosen on held-out sets only."""
    view = parts(model)
    probabilities = {name: predict_texts(view, sets[name][0]) for name in sets if name != "train"}
    rows = []
    for label, (columns, rule) in MIXES.items():
        if rule == "fixed":
            weights = [1.0]
        elif rule == "equal":
            weights = [1.0 / len(columns)] * len(columns)
        else:
            chosen = ["validation"] + (["proxy_dev"] if rule == "auto" else [])
            weights = choose_weights(
                [probabilities[n][:, columns] for n in chosen], [sets[n][1] for n in chosen]
            )
        row = {"row": label, "weights": [round(w, 2) for w in weights]}
        for name in ("test", "proxy_test"):
            row |= scores(probabilities[name][:, columns] @ np.asarray(weights), sets, name)
        rows.append(row)
    return rows


def tfidf_row(sets) -> dict:
    """TF-IDF uni+bigrams + logistic regression on the same training part."""
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)
    features = vectorizer.fit_transform(sets["train"][0])
    regression = LogisticRegression(C=4.0, max_iter=2000).fit(features, sets["train"][1])
    row = {"row": "TF-IDF 1-2 grams + logistic regression"}
    for name in ("test", "proxy_test"):
        probability = regression.predict_proba(vectorizer.transform(sets[name][0]))[:, 1]
        row |= scores(probability, sets, name)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=SentimentConfig.epochs)
    parser.add_argument("--rows", default=",".join(RETRAINED))
    parser.add_argument("--tracking-uri", default="sqlite:///benchmarks/results/ablation.db")
    parser.add_argument("--output", default="benchmarks/results/sentiment_ablation.json")
    args = parser.parse_args()
    base = SentimentConfig(epochs=args.epochs)
    sets = held_out(base)
    rows = [tfidf_row(sets)]
    for name in args.rows.split(","):
        flags, context = RETRAINED[name]
        cfg = replace(base, **flags)
        started = time.perf_counter()
        with context():
            opts = RunOptions(tracking_uri=args.tracking_uri, experiment="sentiment-ablation",
                              run_name=name, log_model=False)  # fmt: skip
            result = run(SentimentTask(), cfg, opts)
            if name == "default":
                rows += remixed(result.model, sets)
        m = result.metrics
        rows.append({
            "row": LABELS[name],
            "test_accuracy": m["test_accuracy"], "test_roc_auc": m["test_roc_auc"],
            "proxy_test_accuracy": m["test_tweets_accuracy"],
            "proxy_test_roc_auc": m["test_tweets_roc_auc"],
            "proxy_airlines_test_accuracy": m["test_tweets_airlines_accuracy"],
            "network_test_accuracy": m["test_network_accuracy"],
            "network_proxy_test_accuracy": m["test_tweets_network_accuracy"],
            "weights": [round(m[f"test_ensemble_weight_{p}"], 2)
                        for p in ("network", "lexicon", "nbsvm")],
            "seconds": round(time.perf_counter() - started),
        })  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n{'row':<60} {'RT acc':>7} {'RT AUC':>7} {'proxy':>7} {'p AUC':>7}")
    for row in rows:
        print(
            f"{row['row'][:60]:<60} {row['test_accuracy']:7.3f} {row['test_roc_auc']:7.3f} "
            f"{row['proxy_test_accuracy']:7.3f} {row['proxy_test_roc_auc']:7.3f}"
        )
    Path(args.output).write_text(json.dumps(
        {"epochs": args.epochs, "machine": platform.platform(), "rows": rows}, indent=2
    ))  # fmt: skip


if __name__ == "__main__":
    main()
