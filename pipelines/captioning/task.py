"""Image captioning with a CNN grid encoder and an attention LSTM decoder (Show, Attend and Tell).

Data (``--data``):

* ``mnist_scenes`` (default): 1-4 real MNIST digits per 64x64 canvas, captioned from the
  layout ("a small 7 to the left of a large 3", "three digits: 1, 4 and 9"); the digit images
  of test scenes never appear in training scenes. ``fashion_mnist_scenes``: the same with
  Fashion-MNIST items (needs Debian's dataset-fashion-mnist).
* a Flickr8k-style folder: ``captions.txt`` (``image,caption`` header, one caption per line;
  an image may have several) and the images in ``Images/`` or beside it. Images are split
  80/10/10 by image, and every image is resized to ``--image-size`` squared (bilinear, aspect
  ratio not kept).
* ``tfds:coco_captions`` or another prepared TFDS set with ``image`` and ``captions/text``.

Training is teacher-forced with padding masked out of the loss; inference is greedy or beam
search (``--beam-width``) over the encoder's grid. Evaluation: corpus BLEU-1..4 (sacrebleu,
cumulative uniform weights, no smoothing, over our own tokens) against all references of an
image, exact-match rate, and for scenes the precision/recall of the objects a caption names.
"""

from __future__ import annotations

import os
import textwrap
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from sacrebleu.metrics import BLEU

from models import captioner
from models.attention import ATTENTION_NAMES
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
from pipelines.core.decoding import decode_batches
from pipelines.core.inference import LoggedModel
from pipelines.core.plotting import figure
from pipelines.core.tokenizer import END, PAD, START, UNK, Vocabulary, detokenize, tokenize
from pipelines.core.training import make_optimizer
from pipelines.datasets.image_builders import (
    SCENES,
    CaptionSet,
    SceneConfig,
    load_scenes,
    load_tfds_captions,
    read_caption_folder,
    read_images,
)

ENCODERS = ("small-cnn", "mobilenet")
MOBILENET_SIZES = (96, 128, 160, 192, 224)
VOCABULARY = "vocabulary"  # logged as results/vocabulary.json: tokens and max_tokens
SPLIT_FRACTIONS = (0.8, 0.1)  # folder images: train, validation; the rest is test


@dataclass
class CaptioningConfig(TaskConfig):
    data: str = option(
        "mnist_scenes", f"{', '.join(SCENES)}, tfds:NAME, or a Flickr8k-style folder"
    )
    train_scenes: int = option(6000, "training scenes (scene data sets)")
    validation_scenes: int = option(500, "validation scenes (scene data sets)")
    test_scenes: int = option(1000, "test scenes (scene data sets)")
    image_size: int = option(64, "square image side in pixels (scene canvas; others resized)")
    max_images: int = option(0, "use at most this many images of a folder/TFDS set (0 = all)")
    encoder: str = option(
        "small-cnn", "image encoder (mobilenet needs its weights on disk)", choices=ENCODERS
    )
    filters: int = option(16, "width of the first small-cnn block (later blocks 2x, 4x)")
    attention: str = option("bahdanau", "decoder attention", choices=ATTENTION_NAMES)
    units: int = option(128, "decoder cell units (also the grid feature size)")
    embedding_dim: int = option(32, "word embedding size")
    max_tokens: int = option(24, "longest caption in words; longer ones are cut")
    min_count: int = option(1, "words seen fewer times in training captions become <unk>")
    beam_width: int = option(1, "beam width at inference (1 = greedy)")
    learning_rate: float = new_default("learning_rate", 2e-3)
    epochs: int = new_default("epochs", 10)
    patience: int = new_default("patience", 3)

    def validate(self) -> None:
        super().validate()
        self.require_positive("train_scenes", "validation_scenes", "test_scenes", "filters",
                              "embedding_dim", "max_tokens", "min_count", "beam_width")  # fmt: skip
        self.require_non_negative("max_images")
        if self.image_size < 48:
            raise ConfigError(f"--image-size must be at least 48, got {self.image_size}")
        if self.encoder == "mobilenet":
            mobilenet_weights(self.image_size)


def mobilenet_weights(image_size: int) -> str:
    """Path of the local ImageNet MobileNetV2 (no top) weights; never downloads them."""
    rows = image_size if image_size in MOBILENET_SIZES else 224
    name = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5"
    path = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models" / name
    if not path.is_file():
        raise ConfigError(
            f"--encoder mobilenet needs its ImageNet weights at {path} and never downloads them; "
            "copy the file there or use --encoder small-cnn"
        )
    return str(path)


class CaptioningTask(Task):
    """Image captioning: CNN feature grid + attention LSTM decoder, greedy or beam search."""

    name = "captioning"
    config_class = CaptioningConfig

    def predict(self, logged: LoggedModel, source: str, cfg: CaptioningConfig) -> Prediction:
        """Caption a PNG/JPEG file, or every one in a folder, with ``--beam-width``: one line per
        file and ``predictions.csv``. Images are resized (and made grey or RGB) as the model's
        training images were."""
        vocab_artifact = logged.artifact(VOCABULARY)
        vocab = logged_vocabulary(vocab_artifact)
        height, width, channels = logged.model.get_layer("image").output.shape[1:]
        if height != width:
            raise DataError(f"the model takes {height}x{width} images; only square ones are read")
        files, images = read_images(source, height, channels)
        tokens, _ = generate(
            logged.model, images, vocab, vocab_artifact["max_tokens"] + 1, cfg.beam_width
        )
        captions = [detokenize(vocab.decode(row)) for row in tokens]
        names = [f.name for f in files]
        table = pd.DataFrame({"file": names, "caption": captions})
        return Prediction(
            [f"{name}: {caption}".rstrip() for name, caption in zip(names, captions, strict=True)],
            {"predictions": table},
        )

    # ---- data -------------------------------------------------------------------------------
    def data(self, cfg: CaptioningConfig) -> Splits:
        sets = self.load(cfg)
        captions = [tokenize(c) for refs in sets["train"].references for c in refs]
        vocab = Vocabulary.fit(captions, cfg.min_count, markers=True)
        max_tokens = min(cfg.max_tokens, max(map(len, captions)))
        datasets = {
            split: pairs_dataset(
                part, vocab, max_tokens, cfg.batch_size, cfg.seed if split == "train" else None
            )
            for split, part in sets.items()
        }
        info = {
            "vocab": vocab,
            "max_tokens": max_tokens,
            "image_shape": sets["train"].images.shape[1:],
            "test_set": sets["test"],
        }
        return Splits(datasets["train"], datasets["validation"], datasets["test"], info)

    def load(self, cfg: CaptioningConfig) -> dict[str, CaptionSet]:
        if cfg.data in SCENES:
            config = SceneConfig.of(
                cfg.train_scenes, cfg.validation_scenes, cfg.test_scenes, cfg.image_size
            )
            return load_scenes(cfg.data, config)
        if cfg.data.startswith("tfds:"):
            return load_tfds_captions(
                cfg.data.removeprefix("tfds:"), cfg.image_size, cfg.max_images
            )
        if "/" in cfg.data or Path(cfg.data).exists():
            folder = read_caption_folder(cfg.data, cfg.image_size, limit=cfg.max_images)
            return split_images(folder, cfg.seed)
        raise DataError(
            f"unknown data set {cfg.data!r}; known: {', '.join(SCENES)}, tfds:NAME, or a folder"
        )

    # ---- model ------------------------------------------------------------------------------
    def build_model(self, cfg: CaptioningConfig, splits: Splits, hp: Any = None) -> keras.Model:
        space = SearchSpace(cfg, hp)
        model = captioner(
            tuple(splits.info["image_shape"]),
            len(splits.info["vocab"]),
            cell=space.choice("cell", CELL_NAMES),
            units=space.int("units", 64, 256, step=64),
            embedding_dim=space.int("embedding_dim", 16, 64, step=16),
            attention=space.choice("attention", ("bahdanau", "luong")),
            dropout=space.float("dropout", 0.0, 0.3, step=0.1),
            filters=cfg.filters,
            encoder_weights=mobilenet_weights(cfg.image_size)
            if cfg.encoder == "mobilenet"
            else None,
        )
        learning_rate = space.float("learning_rate", 3e-4, 3e-3, sampling="log")
        weight_decay = space.float("weight_decay", 0.0, 1e-3)
        model.compile(
            optimizer=make_optimizer(learning_rate, weight_decay),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0),
        )
        return model

    # ---- evaluation -------------------------------------------------------------------------
    def evaluate(self, model: keras.Model, splits: Splits, cfg: CaptioningConfig) -> Report:
        test: CaptionSet = splits.info["test_set"]
        vocab: Vocabulary = splits.info["vocab"]
        tokens, attention = generate(
            model, test.images, vocab, splits.info["max_tokens"] + 1, cfg.beam_width
        )
        hypotheses = [vocab.decode(row) for row in tokens]
        report = Report(metrics=caption_metrics(hypotheses, test.references))
        if test.objects is not None:
            report.metrics |= object_metrics(hypotheses, test.objects, set(vocab.words))
        table = pd.DataFrame(
            {
                "generated": [detokenize(h) for h in hypotheses],
                "references": [" | ".join(refs) for refs in test.references],
            }
        )
        if test.objects is not None:
            table["objects"] = [" ".join(o) for o in test.objects]
        report.tables["captions"] = table
        report.artifacts[VOCABULARY] = {
            "tokens": vocab.tokens,
            "max_tokens": splits.info["max_tokens"],
        }
        grid = tuple(model.get_layer("flatten_grid").input.shape[1:3])
        report.figures = {
            "samples": plot_samples(test, table["generated"]),
            "attention": plot_attention(test, hypotheses, attention, grid),
        }
        return report


# ---- data helpers ---------------------------------------------------------------------------
def split_images(folder: CaptionSet, seed: int) -> dict[str, CaptionSet]:
    """Shuffled 80/10/10 split by image, so all captions of an image stay in one split."""
    n = len(folder)
    if n < 3:
        raise DataError(f"need at least 3 captioned images to split, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    train_end = max(1, int(n * SPLIT_FRACTIONS[0]))
    validation_end = min(n - 1, max(train_end + 1, int(n * sum(SPLIT_FRACTIONS))))
    parts = np.split(order, [train_end, validation_end])
    return {
        split: CaptionSet(folder.images[idx], [folder.references[i] for i in idx])
        for split, idx in zip(("train", "validation", "test"), parts)
    }


def pairs_dataset(
    part: CaptionSet, vocab: Vocabulary, max_tokens: int, batch_size: int, shuffle_seed: int | None
) -> tf.data.Dataset:
    """Teacher-forcing batches ``({"image", "tokens": ids[:-1]}, ids[1:])``, one per caption."""
    owners = np.array([i for i, refs in enumerate(part.references) for _ in refs], np.int32)
    ids = vocab.encode_batch([tokenize(c) for refs in part.references for c in refs], max_tokens)
    images = tf.constant(part.images)
    dataset = tf.data.Dataset.from_tensor_slices((owners, ids))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(ids), seed=shuffle_seed, reshuffle_each_iteration=True)

    @tf.autograph.experimental.do_not_convert  # no control flow; avoids a closure warning
    def to_batch(owner, sequence):
        image = tf.cast(tf.gather(images, owner), tf.float32)
        return {"image": image, "tokens": sequence[:, :-1]}, sequence[:, 1:]

    return dataset.batch(batch_size).map(to_batch, tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


# ---- inference ------------------------------------------------------------------------------
def encoder_of(model: keras.Model) -> keras.Model:
    """Image -> (grid features, initial decoder states), sharing the captioner's weights."""
    states = sorted(
        (layer for layer in model.layers if layer.name.startswith("init_state_")),
        key=lambda layer: layer.name,
    )
    return keras.Model(
        model.get_layer("image").output,
        [model.get_layer("grid").output, *[layer.output for layer in states]],
    )


def generate(
    model: keras.Model,
    images: np.ndarray,
    vocab: Vocabulary,
    max_length: int,
    beam_width: int = 1,
    batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Caption ids ``[N, max_length]`` and attention ``[N, max_length, grid cells]``."""
    encoder = encoder_of(model)

    def encode(batch):
        features, *state = encoder(batch, training=False)
        return features, None, state

    return decode_batches(
        encode, model.get_layer("decoder"), images, vocab.start_id, vocab.end_id, max_length,
        beam_width, batch_size, dtype=tf.float32,
    )  # fmt: skip


def logged_vocabulary(artifact: dict) -> Vocabulary:
    """The vocabulary a captioning run logged (``results/vocabulary.json``). Runs before the
    shared tokenizer stored only the words, after padding, start, end and unknown at 0-3."""
    if "tokens" in artifact:
        return Vocabulary(artifact["tokens"])
    return Vocabulary([PAD, START, END, UNK, *artifact["words"]])


# ---- metrics --------------------------------------------------------------------------------
def bleu_scores(hypotheses: list[list[str]], references: list[list[str]]) -> dict[str, float]:
    """Corpus BLEU-1..4 in [0, 1] with sacrebleu over our tokens (``tokenize="none"``).

    BLEU-n is the cumulative score with uniform weights over 1..n-grams and the closest-length
    brevity penalty, as in the COCO caption evaluation; images may have different numbers of
    references (missing ones are passed as None).
    """
    hyps = [" ".join(h) for h in hypotheses]
    refs = [[" ".join(tokenize(r)) for r in rs] for rs in references]
    streams = [[rs[k] if k < len(rs) else None for rs in refs] for k in range(max(map(len, refs)))]
    scores = {}
    for n in range(1, 5):
        bleu = BLEU(tokenize="none", smooth_method="none", max_ngram_order=n, force=True)
        scores[f"bleu_{n}"] = bleu.corpus_score(hyps, streams).score / 100.0
    return scores


def caption_metrics(hypotheses: list[list[str]], references: list[list[str]]) -> dict[str, float]:
    """BLEU-1..4 and the share of captions equal (as tokens) to one of their references."""
    exact = [any(h == tokenize(r) for r in refs) for h, refs in zip(hypotheses, references)]
    return bleu_scores(hypotheses, references) | {"exact_match": float(np.mean(exact))}


def object_metrics(
    hypotheses: list[list[str]], objects: list[list[str]], vocabulary: set[str]
) -> dict[str, float]:
    """Do captions name exactly the objects in the image? Counted as multisets over the test set.

    Precision: named objects that are there; recall: objects that are named; ``object_exact``:
    share of images whose caption names exactly their objects.
    """
    names = {name for objs in objects for name in objs} & vocabulary
    hits = named = present = exact = 0
    for hypothesis, truth in zip(hypotheses, objects):
        mentioned, there = Counter(w for w in hypothesis if w in names), Counter(truth)
        hits += sum((mentioned & there).values())
        named += sum(mentioned.values())
        present += sum(there.values())
        exact += mentioned == there
    return {
        "object_precision": hits / named if named else 0.0,
        "object_recall": hits / present if present else 0.0,
        "object_exact": exact / len(objects),
    }


# ---- figures --------------------------------------------------------------------------------
def _show(ax, image: np.ndarray) -> None:
    ax.imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_samples(test: CaptionSet, generated: pd.Series, count: int = 8):
    """Test images with the generated caption (top) and the first reference (bottom)."""
    count = min(count, len(test))
    cols = min(4, count)
    rows = -(-count // cols)
    fig, axes = figure(rows, cols, width=3.0 * cols, height=3.4)
    for k, ax in enumerate(np.ravel(axes)):
        if k >= count:
            ax.set_axis_off()
            continue
        _show(ax, test.images[k])
        ax.set_title("\n".join(textwrap.wrap(f"gen: {generated[k]}", 32)), fontsize=8)
        ax.set_xlabel("\n".join(textwrap.wrap(f"ref: {test.references[k][0]}", 32)), fontsize=8)
    return fig


def plot_attention(
    test: CaptionSet, hypotheses: list[list[str]], attention: np.ndarray, grid: tuple[int, int]
):
    """Where the decoder looked for each generated word of the longest test caption shown."""
    k = int(np.argmax([len(h) for h in hypotheses[:50]]))
    words = (hypotheses[k] + ["<end>"])[: min(16, attention.shape[1])]
    cols = min(4, len(words))
    rows = -(-len(words) // cols)
    fig, axes = figure(rows, cols, width=2.5 * cols, height=2.6)
    height, width = test.images.shape[1:3]
    for t, ax in enumerate(np.ravel(axes)):
        if t >= len(words):
            ax.set_axis_off()
            continue
        _show(ax, test.images[k])
        weights = attention[k, t].reshape(grid)
        ax.imshow(weights, cmap="inferno", alpha=0.6, extent=(0, width, height, 0),
                  interpolation="bilinear")  # fmt: skip
        ax.set_title(words[t], fontsize=10)
    fig.suptitle("attention per generated word")
    return fig
