"""Sentence sentiment that holds up beyond the critics it was trained on.

Raw text goes into the deployed model. Its first layer is the normaliser (``normalise.py``:
text as people write it, tweets included) inside a word vocabulary adapted on the training
part *plus* the most frequent GloVe words, so an unseen word keeps its pretrained vector. The
network (``network.py``) reads those ids: frozen GloVe 6B 50d vectors plus a trainable
per-word correction, word dropout, bidirectional recurrent layers (``--cell``),
``AttentionPooling`` and one sigmoid unit.

Training texts are the data set's training part plus, for the packaged sets
(``--extra-training tweets``), 5,000 tweets rated by people that are not in the proxy below and
are not about airlines: text as people write it, of another kind than critics' snippets.

The deployed model is a fixed weighted average of the network and fixed experts fitted on the
training part (``--experts``): a lexicon expert (``lexicon.py``: people's word polarities,
a few learned weights) and an NB-SVM over word uni+bigrams (``expert.py``). The weights are
chosen after training on held-out data only (``--ensemble-weights auto``): the validation part
and the *dev* half of a proxy for other domains (``--proxy tweets``: tweets rated by people,
shipped in a package), never on test texts. Test metrics are reported for the deployed model
and each part alone, in domain (``test_accuracy`` ...) and on the proxy's *test* half
(``test_tweets_accuracy`` ...; ``test_tweets_airlines_*`` its airline tweets, a topic no
training text was about), side by side in one run, so a change that only helps on the
training domain is visible.

Every word is explained by leave-one-out occlusion: how much deleting its whitespace-separated
piece of the raw text moves the deployed model's probability (faithful by construction).

``--split films`` holds out whole films (``rotten_tomatoes``); ``--folds K`` trains K
stratified folds as child runs (``Task.folds``), the parent reporting mean, min and max.
"""

from __future__ import annotations

import html
import itertools
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.model_selection import GroupShuffleSplit

from models.recurrent import CELL_NAMES
from pipelines.core import (
    ConfigError,
    DataError,
    Prediction,
    Report,
    SearchSpace,
    Splits,
    Task,
    TaskConfig,
    new_default,
    option,
)
from pipelines.core.embeddings import embedding_matrix, pretrained_dim, pretrained_vectors
from pipelines.core.inference import LoggedModel
from pipelines.core.plotting import figure
from pipelines.core.text import (
    OOV_ID,
    encode_labels,
    read_labelled_csv,
    read_texts,
    stratified_folds,
    stratified_holdout,
    stratified_split,
    vocabulary,
    word_vectorizer,
)
from pipelines.core.training import make_optimizer
from pipelines.datasets.text_builders import TEXTS, load_groups, load_labelled_texts, proxy_tweets
from pipelines.sentiment.expert import fit_nbsvm
from pipelines.sentiment.lexicon import fit_lexicon_expert
from pipelines.sentiment.network import (
    WORDS,
    NetworkShape,
    deployed,
    mixing_weights,
    network,
    normalised,
    part_names,
    parts,
)
from pipelines.sentiment.normalise import SPECIAL_TOKENS

CLASSES_ARTIFACT = "classes"
EXPERTS = ("lexicon", "nbsvm")
SENTIMENT_SETS = ("rotten_tomatoes", "tfds:imdb_reviews")  # class 1 is the positive one


@dataclass
class SentimentConfig(TaskConfig):
    data: str = option("rotten_tomatoes", "rotten_tomatoes, tfds:NAME (imdb_reviews), or a CSV")
    text_column: str = option("text", "CSV column holding the text")
    label_column: str = option("label", "CSV column holding the two class labels")
    max_tokens: int = option(20000, "largest training vocabulary (most frequent words kept)")
    min_count: int = option(2, "training words seen fewer times are left to GloVe or [UNK]")
    glove_words: int = option(
        50000, "most frequent GloVe words added to the vocabulary, so unseen words keep their "
        "pretrained vector (0: training words only)",
    )  # fmt: skip
    max_length: int = option(60, "tokens kept per text (longer texts are cut)")
    embedding_dim: int = option(50, "word embedding size (50 with --embeddings glove)")
    embeddings: str = option(
        "glove", "embedding init: glove (GloVe 6B 50d vectors) or none (random)",
        choices=("glove", "none"),
    )  # fmt: skip
    embedding_training: str = option(
        "correction",
        "correction (frozen vectors + a trainable per-word correction), full (fine-tune the "
        "vectors), or frozen",
        choices=("correction", "full", "frozen"),
    )
    word_dropout: float = option(0.1, "share of words replaced by [UNK] in training")
    embedding_noise: float = option(0.0, "std of Gaussian noise on the embeddings in training")
    experts: str = option(
        "lexicon,nbsvm",
        "fixed experts averaged with the network: comma list of lexicon, nbsvm; or none",
    )
    ensemble_weights: str = option(
        "auto",
        "weights of network,experts...: auto (chosen on validation + proxy dev) or numbers",
    )
    proxy: str = option(
        "auto",
        "other-domain proxy reported beside the test metrics: tweets, none, or auto (tweets "
        "for the packaged sentiment sets)",
        choices=("auto", "tweets", "none"),
    )
    extra_training: str = option(
        "auto",
        "labelled text added to every training part: tweets (the proxy's other tweets, none "
        "about airlines), none, or auto (tweets for the packaged sentiment sets)",
        choices=("auto", "tweets", "none"),
    )
    split: str = option(
        "random", "random (stratified) or films (hold out whole rotten_tomatoes films)",
        choices=("random", "films"),
    )  # fmt: skip
    attention_units: int = option(64, "hidden size of the attention-pooling score")
    head_dropout: float = option(0.5, "dropout before the classifier unit")
    embedding_dropout: float = option(0.0, "dropout of whole embedding channels")
    units: int = option(64, "units per direction of each recurrent layer")
    dropout: float = new_default("dropout", 0.5)
    learning_rate: float = option(1e-3, "AdamW learning rate")
    weight_decay: float = new_default("weight_decay", 0.05)
    epochs: int = new_default("epochs", 10)
    patience: int = new_default("patience", 3)
    validation_fraction: float = option(0.1, "share of examples for early stopping")
    test_fraction: float = option(0.2, "share of examples held out for the test metrics")
    folds: int = option(1, "K > 1: stratified K-fold, each fold a child run")
    fold: int = option(0, "train only fold N of --folds K (1..K; 0: all of them)")
    explain: int = option(
        6, "test sentences whose word effects are rendered; with --predict, > 0 adds each "
        "text's top words (leave-one-out occlusion) to predictions.csv",
    )  # fmt: skip

    def validate(self) -> None:
        super().validate()
        self.require_positive("max_tokens", "max_length", "embedding_dim", "attention_units",
                              "folds")  # fmt: skip
        self.require_non_negative("glove_words", "fold", "embedding_noise")
        self.require_rate("head_dropout", "embedding_dropout", "word_dropout")
        self.require_split()
        if self.fold > self.folds:
            raise ConfigError(f"--fold {self.fold} is outside --folds {self.folds}")
        if self.embeddings != "none" and self.embedding_dim != pretrained_dim(self.embeddings):
            raise ConfigError(
                f"--embeddings {self.embeddings} needs --embedding-dim "
                f"{pretrained_dim(self.embeddings)} (the vectors' size), got "
                f"{self.embedding_dim}; or use --embeddings none"
            )
        if self.embeddings == "none" and self.embedding_training != "full":
            raise ConfigError("--embeddings none needs --embedding-training full")
        unknown = sorted(set(self.expert_names) - set(EXPERTS))
        if unknown:
            raise ConfigError(
                f"unknown --experts {', '.join(unknown)}; known: {', '.join(EXPERTS)}"
            )
        if self.split == "films" and self.data != "rotten_tomatoes":
            raise ConfigError("--split films needs --data rotten_tomatoes (films are its groups)")
        if self.ensemble_weights != "auto":
            weights = self.fixed_weights
            if len(weights) != 1 + len(self.expert_names) or min(weights) < 0 or sum(weights) <= 0:
                raise ConfigError(
                    f"--ensemble-weights needs {1 + len(self.expert_names)} non-negative numbers "
                    f"(network, {', '.join(self.expert_names) or 'no experts'}), got "
                    f"{self.ensemble_weights!r}"
                )

    @property
    def expert_names(self) -> list[str]:
        names = [n.strip() for n in self.experts.split(",") if n.strip()]
        return [] if names == ["none"] else names

    @property
    def fixed_weights(self) -> list[float]:
        try:
            return [float(w) for w in self.ensemble_weights.split(",")]
        except ValueError:
            raise ConfigError(
                f"--ensemble-weights must be auto or numbers, got {self.ensemble_weights!r}"
            ) from None

    @property
    def uses_proxy(self) -> bool:
        return self.proxy == "tweets" or (self.proxy == "auto" and self.data in SENTIMENT_SETS)

    @property
    def trains_on_tweets(self) -> bool:
        packaged = self.data in SENTIMENT_SETS
        return self.extra_training == "tweets" or (self.extra_training == "auto" and packaged)


class SentimentTask(Task):
    """Sentiment of sentences that holds up on other domains: normalised text, GloVe network,
    lexicon and NB-SVM experts, weights chosen on held-out data, occlusion explanations."""

    name = "sentiment"
    config_class = SentimentConfig

    def predict(self, logged: LoggedModel, source: str, cfg: SentimentConfig) -> Prediction:
        """Label and probability of a text, or of every text of a file (one per line, or the
        ``--text-column`` of a CSV), in batches of ``--batch-size``; a single text also gets
        each word's effect."""
        texts = read_texts(source, cfg.text_column)
        return classify(logged, texts, cfg.explain > 0, cfg.batch_size)

    def folds(self, cfg: SentimentConfig) -> list[tuple[str, SentimentConfig]]:
        """``--folds K``: each stratified fold as the test part of its own child run."""
        if cfg.folds <= 1 or cfg.fold:
            return []
        return [(f"fold{k}", replace(cfg, fold=k)) for k in range(1, cfg.folds + 1)]

    # ---- data -------------------------------------------------------------------------------
    def data(self, cfg: SentimentConfig) -> Splits:
        texts, labels, classes, groups = self.load(cfg)
        parts = self.split(cfg, labels, groups)
        tweets = proxy_tweets() if cfg.uses_proxy or cfg.trains_on_tweets else {}
        if cfg.trains_on_tweets:
            texts, labels, parts = with_training_texts(texts, labels, parts, *tweets["train"])
        splits = self.make_splits(cfg, texts, labels, parts)
        splits.info.update(classes=classes, proxy=tweets if cfg.uses_proxy else {})
        return splits

    def load(
        self, cfg: SentimentConfig
    ) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray | None]:
        """Texts, 0/1 labels (1 = the positive class), the two class names, and each text's
        group (its film) when the data set has one."""
        groups = None
        if cfg.data in TEXTS or cfg.data.startswith("tfds:"):
            texts, names, classes = load_labelled_texts(cfg.data)
            if cfg.split == "films":
                groups = np.array(load_groups(cfg.data, "movie"), dtype=object)
        else:
            texts, names = read_labelled_csv(cfg.data, cfg.text_column, cfg.label_column)
            classes = None
        labels, classes = encode_labels(names, classes)
        if len(classes) != 2:
            raise DataError(
                f"sentiment needs exactly two classes, {Path(cfg.data).name} has {len(classes)}: "
                f"{', '.join(classes[:10])}"
            )
        return np.array(texts, dtype=object), labels, classes, groups

    def split(
        self, cfg: SentimentConfig, labels: np.ndarray, groups: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Train/validation/test indices: one fold of ``--folds``, whole films, or stratified."""
        if cfg.fold:
            rest, test = stratified_folds(labels, cfg.folds, cfg.seed)[cfg.fold - 1]
            share = cfg.validation_fraction / (1 - 1 / cfg.folds)
            train, validation = stratified_holdout(labels[rest], share, cfg.seed)
            return rest[train], rest[validation], test
        if groups is not None:
            index = np.arange(len(labels))
            rest, test = _group_holdout(index, groups, cfg.test_fraction, cfg.seed)
            share = cfg.validation_fraction / (1 - cfg.test_fraction)
            train, validation = _group_holdout(rest, groups[rest], share, cfg.seed)
            return train, validation, test
        return stratified_split(labels, cfg.validation_fraction, cfg.test_fraction, cfg.seed)

    def make_splits(
        self,
        cfg: SentimentConfig,
        texts: np.ndarray,
        labels: np.ndarray,
        parts: tuple[np.ndarray, np.ndarray, np.ndarray],
    ) -> Splits:
        """Token-id datasets of one split, with the vocabulary, the embedding init and the
        experts fitted on its training texts only."""
        train, validation, test = parts
        vectorizer = words_vectorizer(cfg, texts[train])
        datasets = [
            id_dataset(vectorizer, texts[idx], labels[idx], cfg.batch_size, seed)
            for idx, seed in ((train, cfg.seed), (validation, None), (test, None))
        ]
        experts = []
        for name in cfg.expert_names:
            if name == "lexicon":
                experts.append(fit_lexicon_expert(texts[train], labels[train]))
            else:
                experts.append(fit_nbsvm(texts[train], labels[train]).expert())
        vectors = initial_vectors(cfg, vocabulary(vectorizer))
        info = {"vectorizer": vectorizer, "texts": texts, "labels": labels, "parts": parts,
                "experts": experts, "vectors": vectors}  # fmt: skip
        return Splits(*datasets, info)

    def input_example(self, splits: Splits) -> Any:
        return np.array(splits.info["texts"][splits.info["parts"][2][:2]], dtype=object)

    # ---- model ------------------------------------------------------------------------------
    def build_model(self, cfg: SentimentConfig, splits: Splits, hp: Any = None) -> keras.Model:
        space = SearchSpace(cfg, hp)
        shape = NetworkShape(
            cell=space.choice("cell", CELL_NAMES),
            units=space.int("units", 32, 128, step=32),
            layers=space.int("layers", 1, 2),
            dropout=space.float("dropout", 0.0, 0.5, step=0.1),
            head_dropout=space.float("head_dropout", 0.0, 0.6, step=0.1),
            attention_units=cfg.attention_units,
            word_dropout=space.float("word_dropout", 0.0, 0.3, step=0.05),
            embedding_noise=cfg.embedding_noise,
            embedding_dropout=space.float("embedding_dropout", 0.0, 0.5, step=0.1),
            trainable_embedding=cfg.embedding_training,
        )
        model = network(splits.info["vectors"], shape, seed=cfg.seed)
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
        """Raw text in: the vocabulary, the trained network and the experts, averaged with
        weights chosen on the validation part and the proxy's dev half (or the given ones)."""
        info = splits.info
        experts = info["experts"]
        whole = deployed(info["vectorizer"], model, experts, [1.0] + [0.0] * len(experts))
        if not experts:
            return whole
        weights = cfg.fixed_weights if cfg.ensemble_weights != "auto" else None
        if weights is None:
            held_out = [(info["texts"][info["parts"][1]], info["labels"][info["parts"][1]])]
            if info["proxy"]:
                held_out.append(info["proxy"]["dev"])
            view = parts(whole)
            weights = choose_weights(
                [predict_texts(view, texts) for texts, _ in held_out], [y for _, y in held_out]
            )
        weights = np.asarray(weights, float) / np.sum(weights)
        return deployed(info["vectorizer"], model, experts, weights)

    # ---- evaluation -------------------------------------------------------------------------
    def evaluate(self, model: keras.Model, splits: Splits, cfg: SentimentConfig) -> Report:
        info = splits.info
        test = info["parts"][2]
        labels = info["labels"][test]
        metrics, probability = part_metrics(model, info["texts"][test], labels)
        majority = int(info["labels"][info["parts"][0]].mean() >= 0.5)  # of the training part
        metrics["baseline_majority_accuracy"] = float(np.mean(labels == majority))
        if info["proxy"]:
            texts, proxy_labels = info["proxy"]["test"]
            proxy, _ = part_metrics(model, np.array(texts, dtype=object), proxy_labels)
            metrics |= {f"tweets_{name}": value for name, value in proxy.items()}
            airline = info["proxy"]["airline"]
            airline_texts = np.array(texts, dtype=object)[airline]
            unseen, _ = part_metrics(model, airline_texts, proxy_labels[airline])
            metrics |= {f"tweets_airlines_{name}": value for name, value in unseen.items()}
        names = part_names(model)
        metrics |= {
            f"ensemble_weight_{name}": float(w)
            for name, w in zip(names, mixing_weights(model), strict=True)
        }
        classes = info["classes"]
        report = Report(metrics=metrics, artifacts={CLASSES_ARTIFACT: {"classes": classes}})
        explained = explain(model, info["texts"][test], labels, probability, cfg.explain)
        if explained:
            report.figures = {"word_effects": effect_figure(explained, classes)}
            report.tables = {"explanations": explanation_table(explained, classes)}
            report.texts = {"explanations.html": explanation_html(explained, classes)}
        return report


def with_training_texts(
    texts: np.ndarray,
    labels: np.ndarray,
    parts: tuple[np.ndarray, np.ndarray, np.ndarray],
    extra_texts: list[str],
    extra_labels: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``texts`` and ``labels`` with the extra ones appended, and the extra ones in the
    training part only (validation and test keep their own texts)."""
    train, validation, test = parts
    added = np.arange(len(texts), len(texts) + len(extra_texts))
    texts = np.concatenate([texts, np.array(extra_texts, dtype=object)])
    labels = np.concatenate([labels, np.asarray(extra_labels, labels.dtype)])
    return texts, labels, (np.concatenate([train, added]), validation, test)


def _group_holdout(
    index: np.ndarray, groups: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``index`` split into (kept, held out) so that no group is on both sides."""
    splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    kept, held = next(splitter.split(index, groups=groups))
    return np.sort(index[kept]), np.sort(index[held])


def words_vectorizer(cfg: SentimentConfig, texts: np.ndarray) -> keras.layers.TextVectorization:
    """Normalised tokens of the training texts seen ``min_count`` times, then the most frequent
    GloVe words (``--glove-words``) and the normaliser's marks, so no word the vectors know
    collapses into ``[UNK]``."""
    layer = word_vectorizer(texts, cfg.max_tokens, cfg.max_length, standardize=normalised,
                            min_count=cfg.min_count, name=WORDS)  # fmt: skip
    words = vocabulary(layer)[2:]
    extra = [*SPECIAL_TOKENS]
    if cfg.embeddings != "none" and cfg.glove_words:
        rows, _ = pretrained_vectors(cfg.embeddings)
        extra += sorted(rows, key=rows.__getitem__)[: cfg.glove_words]
    seen = set(words)
    return keras.layers.TextVectorization(
        standardize=normalised,
        output_sequence_length=cfg.max_length,
        vocabulary=words + [w for w in dict.fromkeys(extra) if w not in seen],
        name=WORDS,
    )


def initial_vectors(cfg: SentimentConfig, words: list[str]) -> np.ndarray:
    """The embedding's starting ``[V, d]`` matrix: pretrained vectors where known, small
    random rows elsewhere (seeded)."""
    rng = np.random.default_rng(cfg.seed)
    initial = rng.uniform(-0.05, 0.05, (len(words), cfg.embedding_dim)).astype("float32")
    if cfg.embeddings == "none":
        return initial
    return embedding_matrix(words, initial, cfg.embeddings)


def id_dataset(
    vectorizer: keras.layers.TextVectorization,
    texts: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    shuffle_seed: int | None,
) -> tf.data.Dataset:
    """``(token ids, label)`` batches, normalised once and cached (the network trains on ids;
    the deployed model puts the same vectorizer in front of it)."""
    ids = vectorizer(tf.constant([str(t) for t in texts], tf.string))
    ds = tf.data.Dataset.from_tensor_slices((tf.cast(ids, tf.int64), labels.astype("float32")))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(texts), seed=shuffle_seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def choose_weights(
    probabilities: list[np.ndarray], labels: list[np.ndarray], step: float = 0.1
) -> list[float]:
    """Ensemble weights (on a ``step`` grid of the simplex) with the best mean accuracy over
    held-out sets, given each set's ``[N, parts]`` probabilities and its labels; ties go to
    the most weight on the first part (the network)."""
    n = probabilities[0].shape[1]
    ticks = int(round(1 / step))
    best, best_score = None, -1.0
    for combo in itertools.product(range(ticks, -1, -1), repeat=n - 1):
        rest = ticks - sum(combo)
        if rest < 0:
            continue
        weights = np.array([rest, *combo], float) / ticks
        score = np.mean([
            accuracy_score(y, p @ weights >= 0.5)
            for p, y in zip(probabilities, labels, strict=True)
        ])  # fmt: skip
        if score > best_score + 1e-12 or (
            abs(score - best_score) <= 1e-12 and weights[0] > best[0]
        ):
            best, best_score = weights, score
    return best.tolist()


def predict_texts(model: keras.Model, texts: Any) -> np.ndarray:
    """``model``'s outputs on raw texts, ``[N, outputs]``."""
    texts = np.asarray(texts, dtype=object)
    return np.asarray(model.predict(texts, batch_size=256, verbose=0)).reshape(len(texts), -1)


def part_probabilities(model: keras.Model, texts: Any) -> dict[str, np.ndarray]:
    """p(positive) of the deployed model (key ``""``) and of each part alone
    (``"network_"``, ``"lexicon_"``, ``"nbsvm_"``), from one pass over ``texts``."""
    names = part_names(model)
    each = predict_texts(parts(model), texts)
    probabilities = {f"{name}_": each[:, i] for i, name in enumerate(names)}
    return {"": each @ mixing_weights(model)} | probabilities


def part_metrics(
    model: keras.Model, texts: Any, labels: np.ndarray
) -> tuple[dict[str, float], np.ndarray]:
    """Classification metrics of the deployed model and of each part (``network_accuracy``
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
    """One text's words (its whitespace-separated pieces, as written) and their leave-one-out
    occlusion effects: p(positive) minus p(positive) with that piece deleted, so a positive
    effect pushes towards the positive class; faithful by construction."""

    text: str
    words: list[str]
    effects: list[float]
    probability: float
    label: int | None = None


def explain_texts(model: keras.Model, texts: list[str]) -> list[Explanation]:
    """Probability of the positive class and the occlusion effect of every piece of each text.

    All variants of all texts (each with one piece deleted) go through the deployed model in
    one batched call, so every part, the network's normalised words and the experts' n-grams
    alike, reads the text as if that piece had never been written."""
    if not texts:  # --explain 0: nothing to explain (Keras cannot predict an empty batch)
        return []
    pieces = [str(text).split() for text in texts]
    variants = [
        variant
        for text, words in zip(texts, pieces, strict=True)
        for variant in [str(text)]
        + [" ".join(words[:k] + words[k + 1 :]) for k in range(len(words))]
    ]
    scores = predict_texts(model, variants)[:, 0]
    out, start = [], 0
    for text, words in zip(texts, pieces, strict=True):
        whole, rest = scores[start], scores[start + 1 : start + 1 + len(words)]
        out.append(Explanation(str(text), words, (whole - rest).tolist(), float(whole)))
        start += len(words) + 1
    return out


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
    """Occlusion effect of every word (green: towards the positive class, red: away from it)."""
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
    return fig


def explanation_table(explained: list[Explanation], classes: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "text": [e.text for e in explained],
            "label": [classes[e.label] for e in explained],
            "predicted": [classes[int(e.probability >= 0.5)] for e in explained],
            "probability": [e.probability for e in explained],
            "top_words": [" ".join(decisive_words(e, 3)) for e in explained],
        }
    )


def explanation_html(explained: list[Explanation], classes: list[str]) -> str:
    """Each sentence with words shaded by occlusion effect: green towards the positive class,
    red towards the negative one; hovering shows the effect."""
    rows = []
    for item in explained:
        peak = max(map(abs, item.effects), default=1.0) or 1.0
        words = " ".join(
            f'<span style="background: rgba({"0,160,0" if e >= 0 else "220,0,0"},'
            f'{abs(e) / peak:.2f})" title="effect {e:+.3f}">{html.escape(word)}</span>'
            for word, e in zip(item.words, item.effects, strict=True)
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


def decisive_words(item: Explanation, k: int) -> list[str]:
    """The ``k`` words whose deletion lowers the predicted class's probability most."""
    sign = 1.0 if item.probability >= 0.5 else -1.0
    scores = [sign * e for e in item.effects]
    return [item.words[i] for i in np.argsort(scores, kind="stable")[::-1][:k]]


# ---- predict mode ------------------------------------------------------------------------------
def known_words(model: keras.Model, texts: list[str], batch_size: int = 1024) -> np.ndarray:
    """How many of the normalised words of each text the deployed model's vocabulary knows
    (the normaliser's marks, such as ``xxelong``, are no words)."""
    layer = model.get_layer(WORDS)
    marks = [i for i, token in enumerate(layer.get_vocabulary()) if token in SPECIAL_TOKENS]
    counts = []
    for start in range(0, len(texts), batch_size):
        ids = np.asarray(layer(tf.constant(texts[start : start + batch_size], tf.string)))
        counts.append(np.sum((ids > OOV_ID) & ~np.isin(ids, marks), axis=1))
    return np.concatenate(counts)


def classify(
    logged: LoggedModel, texts: list[str], top_words: bool = True, batch_size: int = 256
) -> Prediction:
    """Every text's probability and label (``predictions`` table, with its three most decisive
    words when ``top_words``), batch by batch with a progress bar on stderr; a single text is
    printed word by word. A text none of whose words the model knows is refused: its label
    would be the model's guess from nothing."""
    classes = logged.artifact(CLASSES_ARTIFACT)["classes"]
    unknown = np.flatnonzero(known_words(logged.model, texts) == 0)
    if unknown.size:
        where = f"text {unknown[0] + 1} of {len(texts)}: " if len(texts) > 1 else ""
        raise DataError(
            f"{where}none of the words of {texts[unknown[0]]!r} are in the model's vocabulary"
        )
    rows = []
    for start in range(0, len(texts), batch_size):
        batch = texts[start : start + batch_size]
        if top_words or len(texts) == 1:
            explained = explain_texts(logged.model, batch)
            probability = [item.probability for item in explained]
            words = [" ".join(decisive_words(item, 3)) for item in explained]
        else:
            explained, probability = [], predict_texts(logged.model, batch)[:, 0].tolist()
            words = [""] * len(batch)
        rows += [
            {"text": t, "probability": p, "label": classes[int(p >= 0.5)], "top_words": w}
            for t, p, w in zip(batch, probability, words, strict=True)
        ]
        if len(texts) > batch_size:  # a progress bar on stderr, stdout keeps the answers
            done = min(start + batch_size, len(texts))
            bar = "#" * (30 * done // len(texts))
            print(f"\rclassified {done}/{len(texts)} [{bar:<30}]", end="", file=sys.stderr,
                  flush=True)  # fmt: skip
    if len(texts) > batch_size:
        print(file=sys.stderr)
    table = pd.DataFrame(rows)
    if not top_words:
        table = table.drop(columns="top_words")
    if len(texts) > 1:
        lines = [f"{r.label}\t{r.probability:.4f}\t{r.text}" for r in table.itertuples()]
        return Prediction(lines, {"predictions": table})
    (item,) = explained
    lines = [
        f"label: {table.label[0]}",
        f"probability ({classes[1]}): {item.probability:.4f}",
        f"  {'word':<20} {'effect':>8}",
    ]
    lines += [f"  {word:<20} {e:+8.4f}" for word, e in zip(item.words, item.effects, strict=True)]
    return Prediction(lines, {"predictions": table})
