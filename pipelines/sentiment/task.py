"""Sentence sentiment with a bidirectional recurrent network and attention pooling.

Raw text goes into the model: its first layer is the word vocabulary (``TextVectorization``
adapted on the training part only), then a masked embedding, bidirectional recurrent layers
(``--cell``), ``AttentionPooling`` and one sigmoid unit. Each word is explained by leave-one-out
occlusion (how much deleting it moves the probability), which is faithful by construction; the
attention weights are shown beside it but are not an explanation: over BiLSTM states they learn
a position bias. Evaluation renders both for sample test sentences (figure and HTML), and
``--predict TEXT --model-uri URI`` prints them for any sentence.

The embedding starts from GloVe 6B 50d vectors (``--embeddings glove``, the default; fine-tuned;
words GloVe lacks keep their random init), read from a pinned data package
(``pipelines/core/embeddings.py``).

The deployed model is an ensemble (``--expert nbsvm``, the default): the trained network's
probability averaged with an NB-SVM (Wang & Manning 2012) over word uni+bigrams, fitted on the
training part like the vocabulary and fixed while the network trains alone (trained jointly,
the expert, which fits its training data almost perfectly, would leave the network no gradient).
Both read the raw text inside the saved model; test metrics are the ensemble's, with
``recurrent_*`` (network alone) and ``expert_*`` (NB-SVM alone) beside them. See ``expert.py``.

``--pretrain-epochs N`` first trains the embedding and encoder as a bidirectional language model
on unlabelled text (the training texts and, for ``rotten_tomatoes``, the package's plot synopses;
never test texts), as in Dai & Le 2015; see ``pretrain.py``.

Evaluation is a stratified train/validation/test split; ``--folds K`` also trains the other
K-1 folds of a stratified K-fold and reports the mean and standard deviation over all K.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from models.architectures import (
    PUNCTUATION,
    attention_explainer,
    text_classifier,
    with_linear_expert,
)
from models.recurrent import CELL_NAMES
from pipelines.core import (
    ConfigError,
    DataError,
    Prediction,
    Report,
    RunOptions,
    SearchSpace,
    Splits,
    Task,
    TaskConfig,
    new_default,
    option,
)
from pipelines.core.embeddings import embedding_matrix, pretrained_dim
from pipelines.core.fitting import fit
from pipelines.core.inference import LoggedModel
from pipelines.core.plotting import figure
from pipelines.core.text import (
    encode_labels,
    read_labelled_csv,
    read_texts,
    stratified_folds,
    stratified_holdout,
    stratified_split,
    text_dataset,
    tokens,
    word_vectorizer,
)
from pipelines.core.training import make_optimizer
from pipelines.datasets.text_builders import TEXTS, load_labelled_texts
from pipelines.sentiment.expert import fit_nbsvm
from pipelines.sentiment.pretrain import plot_synopses, pretrain

VECTORIZER = "words"
CLASSES_ARTIFACT = "classes"


@dataclass
class SentimentConfig(TaskConfig):
    data: str = option("rotten_tomatoes", "rotten_tomatoes, tfds:NAME (imdb_reviews), or a CSV")
    text_column: str = option("text", "CSV column holding the text")
    label_column: str = option("label", "CSV column holding the two class labels")
    max_tokens: int = option(20000, "largest word vocabulary (most frequent words kept)")
    min_count: int = option(2, "words seen fewer times in training become [UNK]")
    max_length: int = option(50, "words kept per text (longer texts are cut)")
    embedding_dim: int = option(50, "word embedding size (50 with --embeddings glove)")
    embeddings: str = option(
        "glove",
        "embedding init: glove (GloVe 6B 50d vectors, fine-tuned) or none (random)",
        choices=("glove", "none"),
    )
    expert: str = option(
        "nbsvm",
        "fixed expert averaged with the trained network in the deployed model: nbsvm "
        "(NB-SVM over word uni+bigrams, fitted on the training part) or none",
        choices=("nbsvm", "none"),
    )
    attention_units: int = option(64, "hidden size of the attention-pooling score")
    head_dropout: float = option(0.5, "dropout before the classifier unit")
    embedding_dropout: float = option(0.0, "dropout of whole embedding channels")
    units: int = option(64, "units per direction of each recurrent layer")
    dropout: float = new_default("dropout", 0.5)
    learning_rate: float = option(1e-3, "AdamW learning rate")
    weight_decay: float = new_default("weight_decay", 0.05)
    pretrain_epochs: int = option(
        0, "epochs of language-model pretraining on unlabelled text before training (0: none)"
    )
    epochs: int = new_default("epochs", 10)
    patience: int = new_default("patience", 3)
    validation_fraction: float = option(0.1, "share of examples for early stopping")
    test_fraction: float = option(0.2, "share of examples held out for the test metrics")
    folds: int = option(1, "K > 1: stratified K-fold, also train the other K-1 folds")
    explain: int = option(6, "test sentences whose word effects are rendered")

    def validate(self) -> None:
        super().validate()
        self.require_positive("max_tokens", "max_length", "embedding_dim", "attention_units",
                              "folds")  # fmt: skip
        self.require_non_negative("pretrain_epochs")
        self.require_rate("head_dropout", "embedding_dropout")
        self.require_split()
        if self.embeddings != "none" and self.embedding_dim != pretrained_dim(self.embeddings):
            raise ConfigError(
                f"--embeddings {self.embeddings} needs --embedding-dim "
                f"{pretrained_dim(self.embeddings)} (the vectors' size), got "
                f"{self.embedding_dim}; or use --embeddings none"
            )


class SentimentTask(Task):
    """Sentiment of sentences: bidirectional LSTM + attention pooling, word-weight explanations."""

    name = "sentiment"
    config_class = SentimentConfig

    def predict(self, logged: LoggedModel, source: str, cfg: SentimentConfig) -> Prediction:
        """Label and probability of a text, or of every text of a file (one per line, or the
        ``--text-column`` of a CSV); a single text also gets each word's effect and attention."""
        return classify(logged, read_texts(source, cfg.text_column))

    # ---- data -------------------------------------------------------------------------------
    def data(self, cfg: SentimentConfig) -> Splits:
        texts, labels, classes = self.load(cfg)
        if cfg.folds > 1:
            folds = stratified_folds(labels, cfg.folds, cfg.seed)
            train, validation, test = self.fold_parts(cfg, labels, folds[0])
        else:
            folds = []
            train, validation, test = stratified_split(
                labels, cfg.validation_fraction, cfg.test_fraction, cfg.seed
            )
        splits = self.make_splits(cfg, texts, labels, (train, validation, test))
        with_plots = cfg.pretrain_epochs and cfg.data == "rotten_tomatoes"
        unlabelled = plot_synopses(cfg.max_length) if with_plots else []
        splits.info.update(classes=classes, folds=folds, unlabelled=unlabelled)
        return splits

    def load(self, cfg: SentimentConfig) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Texts, 0/1 labels (1 = the positive class) and the two class names."""
        if cfg.data in TEXTS or cfg.data.startswith("tfds:"):
            texts, names, classes = load_labelled_texts(cfg.data)
        else:
            texts, names = read_labelled_csv(cfg.data, cfg.text_column, cfg.label_column)
            classes = None
        labels, classes = encode_labels(names, classes)
        if len(classes) != 2:
            raise DataError(
                f"sentiment needs exactly two classes, {Path(cfg.data).name} has {len(classes)}: "
                f"{', '.join(classes[:10])}"
            )
        return np.array(texts, dtype=object), labels, classes

    def make_splits(
        self,
        cfg: SentimentConfig,
        texts: np.ndarray,
        labels: np.ndarray,
        parts: tuple[np.ndarray, np.ndarray, np.ndarray],
    ) -> Splits:
        """Datasets of one split, and a vocabulary (and the expert) fitted on its training
        texts only."""
        train, validation, test = parts
        vectorizer = word_vectorizer(
            texts[train], cfg.max_tokens, cfg.max_length, min_count=cfg.min_count, name=VECTORIZER
        )
        datasets = [
            text_dataset(texts[idx], labels[idx].astype("float32"), cfg.batch_size, seed)
            for idx, seed in ((train, cfg.seed), (validation, None), (test, None))
        ]
        expert = fit_nbsvm(texts[train], labels[train]) if cfg.expert == "nbsvm" else None
        info = {"vectorizer": vectorizer, "texts": texts, "labels": labels, "parts": parts,
                "expert": expert}  # fmt: skip
        return Splits(*datasets, info)

    def fold_parts(
        self, cfg: SentimentConfig, labels: np.ndarray, fold: tuple[np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Train/validation/test indices of one fold: validation comes out of its train part."""
        rest, test = fold
        share = cfg.validation_fraction / (1 - 1 / cfg.folds)
        train, validation = stratified_holdout(labels[rest], share, cfg.seed)
        return rest[train], rest[validation], test

    def input_example(self, splits: Splits) -> Any:
        return np.array(splits.info["texts"][splits.info["parts"][2][:2]], dtype=object)

    # ---- model ------------------------------------------------------------------------------
    def build_model(self, cfg: SentimentConfig, splits: Splits, hp: Any = None) -> keras.Model:
        space = SearchSpace(cfg, hp)
        pretrained = cfg.embeddings != "none"  # its size is the vectors', not searched
        model = text_classifier(
            splits.info["vectorizer"],
            cell=space.choice("cell", CELL_NAMES),
            units=space.int("units", 32, 128, step=32),
            layers=space.int("layers", 1, 2),
            embedding_dim=(
                cfg.embedding_dim if pretrained else space.choice("embedding_dim", (64, 128, 256))
            ),
            dropout=space.float("dropout", 0.0, 0.5, step=0.1),
            head_dropout=space.float("head_dropout", 0.0, 0.6, step=0.1),
            attention_units=cfg.attention_units,
            embedding_dropout=space.float("embedding_dropout", 0.0, 0.5, step=0.1),
        )
        if pretrained:  # before pretraining, which then starts from the vectors
            embedding = model.get_layer("embedding")
            vocabulary = splits.info["vectorizer"].get_vocabulary()
            initial = embedding.get_weights()[0]
            embedding.set_weights([embedding_matrix(vocabulary, initial, cfg.embeddings)])
        if cfg.pretrain_epochs:
            info = splits.info
            texts = [*info["texts"][info["parts"][0]], *info["unlabelled"]]
            pretrain(model, VECTORIZER, texts, cfg.pretrain_epochs, cfg.batch_size, cfg.seed)
        model.compile(
            optimizer=make_optimizer(
                space.float("learning_rate", 3e-4, 3e-3, sampling="log"),
                space.float("weight_decay", 0.0, 0.05, step=0.01),
            ),
            loss="binary_crossentropy",
            metrics=[keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")],
        )
        return model

    def deployable(self, model: keras.Model, splits: Splits, cfg: SentimentConfig) -> keras.Model:
        """The trained network averaged with the split's fixed expert (unchanged without one)."""
        expert = splits.info.get("expert")
        if expert is None:
            return model
        return with_linear_expert(model, expert.vectorizer, expert.weights, expert.bias)

    # ---- evaluation -------------------------------------------------------------------------
    def evaluate(self, model: keras.Model, splits: Splits, cfg: SentimentConfig) -> Report:
        info = splits.info
        test = info["parts"][2]
        labels = info["labels"][test]
        metrics, probability = part_metrics(model, info["texts"][test], labels)
        majority = int(info["labels"][info["parts"][0]].mean() >= 0.5)  # of the training part
        metrics["baseline_majority_accuracy"] = float(np.mean(labels == majority))
        if info["folds"]:
            metrics |= self.cross_validate(cfg, info, metrics)
        explained = explain(model, info["texts"][test], labels, probability, cfg.explain)
        classes = info["classes"]
        return Report(
            metrics=metrics,
            figures={"word_effects": effect_figure(explained, classes)},
            tables={"explanations": explanation_table(explained, classes)},
            artifacts={CLASSES_ARTIFACT: {"classes": classes}},
            texts={"explanations.html": explanation_html(explained, classes)},
        )

    def cross_validate(
        self, cfg: SentimentConfig, info: dict, first: dict[str, float]
    ) -> dict[str, float]:
        """Train folds 2..K like the main model (fold 1); mean and std over all K folds."""
        scores = [first]
        for k, fold in enumerate(info["folds"][1:], start=2):
            parts = self.fold_parts(cfg, info["labels"], fold)
            splits = self.make_splits(cfg, info["texts"], info["labels"], parts)
            model = self.build_model(cfg, splits)
            fit(self, cfg, model, splits, RunOptions(), metrics_prefix=f"fold{k}_")
            model = self.deployable(model, splits, cfg)
            scores.append(part_metrics(model, info["texts"][parts[2]], info["labels"][parts[2]])[0])
        summary = {}
        for name in [n for n in first if not n.startswith("baseline_")]:
            values = [s[name] for s in scores]
            summary[f"cv_{name}_mean"] = float(np.mean(values))
            summary[f"cv_{name}_std"] = float(np.std(values, ddof=1))
        return summary


def _probabilities(model: keras.Model, texts: np.ndarray) -> np.ndarray:
    return model.predict(np.asarray(texts, dtype=object), batch_size=256, verbose=0).ravel()


def part_probabilities(model: keras.Model, texts: np.ndarray) -> dict[str, np.ndarray]:
    """p(positive) of the deployed model (key ""), of its network alone ("recurrent_") and,
    in an ensemble, of its expert alone ("expert_"), from one pass over ``texts``."""
    texts = np.asarray(texts, dtype=object)
    if not any(layer.name == "expert" for layer in model.layers):  # the network is the model
        probability = _probabilities(model, texts)
        return {"": probability, "recurrent_": probability}
    names = {
        "": model.outputs[0],
        "recurrent_": model.get_layer("probability").output,
        "expert_": model.get_layer("expert").output,
    }
    outputs = keras.Model(model.inputs, list(names.values())).predict(
        texts, batch_size=256, verbose=0
    )
    return {name: np.asarray(p).ravel() for name, p in zip(names, outputs, strict=True)}


def part_metrics(
    model: keras.Model, texts: np.ndarray, labels: np.ndarray
) -> tuple[dict[str, float], np.ndarray]:
    """Classification metrics of the deployed model and of each part (``recurrent_accuracy``
    ...), and the deployed model's probabilities."""
    probabilities = part_probabilities(model, texts)
    metrics = {
        prefix + name: value
        for prefix, probability in probabilities.items()
        for name, value in classification_metrics(labels, probability).items()
    }
    return metrics, probabilities[""]


def classification_metrics(labels: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    predicted = (probability >= 0.5).astype(int)
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "f1": float(f1_score(labels, predicted, zero_division=0)),
        "roc_auc": float(roc_auc_score(labels, probability)),
    }


# ---- explanations ------------------------------------------------------------------------------
@dataclass
class Explanation:
    """One text's words with two readings of them. ``effects`` is leave-one-out occlusion:
    p(positive) minus p(positive) with that word deleted, so a positive effect pushes towards
    the positive class; faithful by construction. ``weights`` are the attention-pooling weights
    (sum 1): what the pooling looked at, which need not be what decided."""

    text: str
    words: list[str]
    weights: list[float]
    effects: list[float]
    probability: float
    label: int | None = None


def explain_texts(model: keras.Model, texts: list[str]) -> list[Explanation]:
    """Probability of the positive class, attention weight and occlusion effect per word."""
    vocab = [str(t) for t in model.get_layer(VECTORIZER).get_vocabulary()]
    probability, weights, ids = attention_explainer(model, VECTORIZER).predict(
        np.array(texts, dtype=object), verbose=0
    )
    effects = occlusion_effects(model, texts, ids)
    return [
        Explanation(text, tokens(row, vocab), w[row != 0].tolist(), e.tolist(), float(p[0]))
        for text, p, w, e, row in zip(texts, probability, weights, effects, ids, strict=True)
    ]


def occlusion_effects(model: keras.Model, texts: list[str], ids: np.ndarray) -> list[np.ndarray]:
    """Per text, p(positive) of the whole text minus p(positive) without each of its words
    (the ``ids`` the vocabulary gave it, [UNK] included).

    A word is deleted from the text itself: the whitespace-separated piece of the raw text it
    came from is removed (the vocabulary's standardisation only lowercases and strips
    punctuation, so each piece gives at most one word), so every part of the model, the network
    and the expert's n-grams alike, reads the text as if that word had never been written. All
    variants of all texts go through the model in one batched call."""
    standardize = model.get_layer(VECTORIZER).get_config()["standardize"]
    pieces = [
        [w.decode() for w in row] for row in tf.strings.split(list(map(str, texts))).to_list()
    ]
    flat = standardized([piece for row in pieces for piece in row], standardize)
    variants, owners, start = [], [], 0
    for i, (row, text) in enumerate(zip(ids, pieces, strict=True)):
        words, start = flat[start : start + len(text)], start + len(text)
        n = int(np.count_nonzero(row))  # the first n words (the vocabulary cuts at max_length)
        spoken = [k for k, word in enumerate(words) if word][:n]  # the pieces that are words
        variants += [str(texts[i])] + [" ".join(text[:k] + text[k + 1 :]) for k in spoken]
        owners += [i] * (len(spoken) + 1)
    scores = _probabilities(model, np.array(variants, dtype=object))
    bounds = np.cumsum([0, *np.bincount(owners, minlength=len(ids))])
    return [scores[a] - scores[a + 1 : b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def standardized(pieces: list[str], standardize: str | None) -> list[str]:
    """Each piece after a built-in ``TextVectorization`` standardisation (Keras' lowercasing
    and punctuation pattern); "" where nothing is left."""
    if not pieces:
        return []
    inputs = tf.constant(pieces, tf.string)
    if standardize in ("lower", "lower_and_strip_punctuation"):
        inputs = tf.strings.lower(inputs)
    if standardize in ("strip_punctuation", "lower_and_strip_punctuation"):
        inputs = tf.strings.regex_replace(inputs, PUNCTUATION, "")
    elif standardize not in (None, "lower"):
        raise ValueError(f"occlusion needs a built-in standardize, got {standardize!r}")
    return [w.decode().strip() for w in inputs.numpy()]


def explain(
    model: keras.Model, texts: np.ndarray, labels: np.ndarray, probability: np.ndarray, n: int
) -> list[Explanation]:
    """``n`` short test sentences: the most confident right answers and the most confident
    mistakes, so the figure shows both what the model learned and where it fails."""
    short = np.array([len(str(t).split()) <= 25 for t in texts])
    confidence = np.abs(probability - 0.5)
    wrong = (probability >= 0.5) != (labels == 1)
    order = np.argsort(-confidence)
    mistakes = [i for i in order if short[i] and wrong[i]][: n // 2]
    right = [i for i in order if short[i] and not wrong[i]][: n - len(mistakes)]
    chosen = right + mistakes
    explained = explain_texts(model, [str(texts[i]) for i in chosen])
    for item, i in zip(explained, chosen, strict=True):
        item.label = int(labels[i])
    return explained


def effect_figure(explained: list[Explanation], classes: list[str]) -> Any:
    """Occlusion effect of every word (green: towards the positive class, red: away from it)
    with the attention weights as dots on their own axis, to compare the two."""
    fig, axes = figure(rows=max(len(explained), 1), height=1.8)
    for ax, item in zip(axes, explained, strict=False):
        positions = range(len(item.words))
        colours = ["tab:green" if e >= 0 else "tab:red" for e in item.effects]
        ax.bar(positions, item.effects, color=colours)
        ax.axhline(0, color="black", linewidth=0.5)
        ax.set_xticks(positions, item.words, rotation=45, ha="right", fontsize=8)
        truth = f", true {classes[item.label]}" if item.label is not None else ""
        ax.set_title(f"p({classes[1]}) = {item.probability:.2f}{truth}", fontsize=9)
        ax.set_ylabel(f"\u0394p({classes[1]})")
        ax.twinx().plot(positions, item.weights, "o", color="tab:orange", markersize=3)
    return fig


def explanation_table(explained: list[Explanation], classes: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "text": [e.text for e in explained],
            "label": [classes[e.label] for e in explained],
            "predicted": [classes[int(e.probability >= 0.5)] for e in explained],
            "probability": [e.probability for e in explained],
            "top_words": [" ".join(_decisive_words(e, 3)) for e in explained],
            "top_attended": [" ".join(_top(e.words, e.weights, 3)) for e in explained],
        }
    )


def explanation_html(explained: list[Explanation], classes: list[str]) -> str:
    """Each sentence with words shaded by occlusion effect: green towards the positive class,
    red towards the negative one; hovering shows the effect and the attention weight."""
    rows = []
    for item in explained:
        peak = max(map(abs, item.effects), default=1.0) or 1.0
        words = " ".join(
            f'<span style="background: rgba({"0,160,0" if e >= 0 else "220,0,0"},'
            f'{abs(e) / peak:.2f})" title="effect {e:+.3f}, attention {w:.3f}">'
            f"{html.escape(word)}</span>"
            for word, w, e in zip(item.words, item.weights, item.effects, strict=True)
        )
        truth = f"true {classes[item.label]}, " if item.label is not None else ""
        verdict = f"{truth}predicted {classes[int(item.probability >= 0.5)]}"
        rows.append(f"<p>{words}<br><small>{verdict}, p={item.probability:.3f}</small></p>")
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Word effects</title></head>"
        f"<body><h1>Which words moved the prediction</h1><div>Green: towards {classes[1]}, "
        f"red: towards {classes[0]} (deleting the word changes p({classes[1]}) by that much)."
        "</div>\n" + "\n".join(rows) + "\n</body></html>"
    )


def _decisive_words(item: Explanation, k: int) -> list[str]:
    """The ``k`` words whose deletion lowers the predicted class's probability most."""
    sign = 1.0 if item.probability >= 0.5 else -1.0
    return _top(item.words, [sign * e for e in item.effects], k)


def _top(words: list[str], scores: list[float], k: int) -> list[str]:
    return [words[i] for i in np.argsort(scores, kind="stable")[::-1][:k]]


# ---- predict mode ------------------------------------------------------------------------------
def classify(logged: LoggedModel, texts: list[str]) -> Prediction:
    """Every text's label and probability (``predictions`` table); the word-by-word view of a
    single text. A text none of whose words the model knows is refused: its label would be the
    model's guess from nothing."""
    classes = logged.artifact(CLASSES_ARTIFACT)["classes"]
    explained = explain_texts(logged.model, texts)
    for item in explained:
        if not item.words or all(w == "[UNK]" for w in item.words):
            raise DataError(f"none of the words of {item.text!r} are in the model's vocabulary")
    table = pd.DataFrame(
        {
            "text": texts,
            "probability": [item.probability for item in explained],
            "label": [classes[int(item.probability >= 0.5)] for item in explained],
        }
    )
    if len(explained) > 1:
        lines = [f"{row.label}\t{row.probability:.4f}\t{row.text}" for row in table.itertuples()]
        return Prediction(lines, {"predictions": table})
    (item,) = explained
    lines = [
        f"label: {table.label[0]}",
        f"probability ({classes[1]}): {item.probability:.4f}",
        f"  {'word':<20} {'effect':>8} {'attention':>9}",
    ]
    lines += [
        f"  {word:<20} {e:+8.4f} {w:9.4f}"
        for word, w, e in zip(item.words, item.weights, item.effects, strict=True)
    ]
    return Prediction(lines, {"predictions": table})
