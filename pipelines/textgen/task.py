"""Character- (or word-) level language model with stacked recurrent layers.

The text is split in order: the model trains on the first 80 %, stops early on the next 10 %
and is scored on the last 10 % in bits per character (perplexity for words), read in one pass
from a cold state. An interpolated Kneser-Ney n-gram model fitted on the same training part
and scored on the same tokens is the baseline. Generation copies the trained weights into a
stateful twin (batch 1) and feeds one token per step, sampling with temperature, top-k and
top-p; ``--generate PROMPT --model-uri URI`` does it for a logged model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from models import language_model, stateful_twin
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
from pipelines.core.inference import LoggedModel
from pipelines.core.plotting import figure
from pipelines.core.text import (
    OOV_ID,
    PAD_ID,
    char_vectorizer,
    read_text,
    read_texts,
    unknown_tokens,
    vectorizer_from_vocabulary,
    vocabulary,
    word_vectorizer,
)
from pipelines.core.tokenizer import detokenize, tokenize
from pipelines.core.training import make_optimizer
from pipelines.datasets.text_builders import TEXTS, load_text
from pipelines.textgen.ngram import KneserNey
from pipelines.textgen.sampling import sample

LEVELS = ("char", "word")
SCHEDULES = ("cosine", "constant")
VOCABULARY_ARTIFACT = "vocabulary"


@dataclass
class TextgenConfig(TaskConfig):
    data: str = option("hamlet", "hamlet, tfds:NAME, or a UTF-8 text file")
    level: str = option("char", "model characters or words", choices=LEVELS)
    seq_length: int = option(64, "training window length in tokens")
    stride: int = option(32, "tokens between consecutive training windows")
    embedding_dim: int = option(64, "token embedding size")
    max_tokens: int = option(10000, "largest word vocabulary (--level word)")
    min_count: int = option(2, "words seen fewer times in training become [UNK]")
    ngram_order: int = option(5, "order of the Kneser-Ney n-gram baseline")
    validation_fraction: float = option(
        0.1, "share of the text, before the test part, for early stopping"
    )
    test_fraction: float = option(0.1, "share at the end of the text held out for the metrics")
    units: int = new_default("units", 128)
    layers: int = new_default("layers", 2)
    dropout: float = option(0.2, "dropout on the inputs of every recurrent layer")
    output_dropout: float = option(0.2, "dropout on the last recurrent layer's outputs")
    learning_rate: float = option(4e-3, "peak Adam(W) learning rate")
    lr_schedule: str = option("cosine", "learning-rate schedule over the epochs", choices=SCHEDULES)
    epochs: int = new_default("epochs", 30)
    batch_size: int = option(32, "training batch size (small: more updates per epoch)")
    patience: int = new_default("patience", 4)
    temperature: float = option(0.8, "sampling temperature for --predict (0 = argmax)")
    top_k: int = option(0, "sample among the k likeliest tokens (0 = all)")
    top_p: float = option(1.0, "sample from the smallest set with this probability (1 = all)")
    length: int = option(300, "tokens to generate")
    sample_temperatures: list[float] = option(
        [0.2, 0.5, 0.8, 1.0], "temperatures of logged samples"
    )

    def validate(self) -> None:
        super().validate()
        self.require_positive("seq_length", "stride", "embedding_dim", "max_tokens",
                              "ngram_order", "length")  # fmt: skip
        self.require_split()
        self.require_rate("output_dropout")
        if self.temperature < 0 or self.top_k < 0 or not 0 < self.top_p <= 1:
            raise ConfigError("need --temperature >= 0, --top-k >= 0 and 0 < --top-p <= 1")


@dataclass
class Codec:
    """Text <-> token ids at one level, through the shared TextVectorization vocabulary."""

    level: str
    layer: keras.layers.TextVectorization

    @classmethod
    def fit(cls, level: str, text: str, cfg: TextgenConfig) -> Codec:
        if level == "char":
            return cls(level, char_vectorizer([text]))
        words = " ".join(tokenize(text))
        layer = word_vectorizer([words], cfg.max_tokens, standardize=None, min_count=cfg.min_count)
        return cls(level, layer)

    @classmethod
    def from_vocabulary(cls, level: str, tokens: list[str]) -> Codec:
        return cls(level, vectorizer_from_vocabulary(tokens, level, standardize=None))

    @property
    def vocabulary(self) -> list[str]:
        return vocabulary(self.layer)

    def units(self, text: str) -> list[str]:
        return list(text) if self.level == "char" else tokenize(text)

    def encode(self, text: str) -> np.ndarray:
        units = self.units(text)
        joined = "".join(units) if self.level == "char" else " ".join(units)
        return np.asarray(self.layer(tf.constant([joined]))[0], np.int32)

    def decode(self, ids: list[int]) -> str:
        vocab = self.vocabulary
        if self.level == "char":
            return "".join(vocab[i] for i in ids)
        return detokenize(vocab[i] for i in ids)


class TextgenTask(Task):
    """Recurrent language model (characters or words), n-gram baseline, sampled text."""

    name = "textgen"
    config_class = TextgenConfig

    def predict(self, logged: LoggedModel, source: str, cfg: TextgenConfig) -> Prediction:
        """Continue a prompt (or every line of a text file) with ``--length`` sampled tokens."""
        vocab = logged.artifact(VOCABULARY_ARTIFACT)
        codec = Codec.from_vocabulary(vocab["level"], vocab["tokens"])
        prompts = read_texts(source) if Path(source).is_file() else [source]
        twin = stateful_twin(logged.model)
        texts = []
        for prompt in prompts:
            check_prompt(codec, prompt)
            sampled = generate(twin, codec, prompt, cfg.length, cfg.temperature, cfg.top_k,
                               cfg.top_p, cfg.seed)  # fmt: skip
            texts.append(prompt + sampled)
        table = pd.DataFrame({"prompt": prompts, "text": texts})
        return Prediction(texts, {"generated": table})

    # ---- data -------------------------------------------------------------------------------
    def data(self, cfg: TextgenConfig) -> Splits:
        text = self.load(cfg)
        train_end = int(len(text) * (1 - cfg.validation_fraction - cfg.test_fraction))
        validation_end = int(len(text) * (1 - cfg.test_fraction))
        codec = Codec.fit(cfg.level, text[:train_end], cfg)
        parts = [text[:train_end], text[train_end:validation_end], text[validation_end:]]
        ids = [codec.encode(part) for part in parts]
        for name, part in zip(("train", "validation", "test"), ids, strict=True):
            if len(part) < cfg.seq_length + 1:
                raise DataError(
                    f"the {name} part has {len(part)} {cfg.level}s, fewer than one window "
                    f"({cfg.seq_length} + 1); use a longer text or a smaller --seq-length"
                )
        datasets = [
            _windows(part, cfg.seq_length, stride, cfg.batch_size, seed)
            for part, stride, seed in zip(
                ids, (cfg.stride, cfg.seq_length, cfg.seq_length), (cfg.seed, None, None)
            )
        ]
        info = {"codec": codec, "ids": ids, "test_text": parts[2]}
        return Splits(*datasets, info)

    def load(self, cfg: TextgenConfig) -> str:
        if cfg.data in TEXTS or cfg.data.startswith("tfds:"):
            return load_text(cfg.data)
        return read_text(cfg.data)

    # ---- model ------------------------------------------------------------------------------
    def build_model(self, cfg: TextgenConfig, splits: Splits, hp: Any = None) -> keras.Model:
        space = SearchSpace(cfg, hp)
        model = language_model(
            len(splits.info["codec"].vocabulary),
            cell=space.choice("cell", CELL_NAMES),
            units=space.int("units", 128, 512, step=128),
            layers=space.int("layers", 1, 3),
            embedding_dim=space.choice("embedding_dim", (32, 64, 128)),
            dropout=space.float("dropout", 0.0, 0.3, step=0.1),
            recurrent_dropout=space.float("recurrent_dropout", 0.0, 0.3, step=0.1),
            output_dropout=space.float("output_dropout", 0.0, 0.3, step=0.1),
        )
        learning_rate = space.float("learning_rate", 1e-3, 1e-2, sampling="log")
        model.compile(
            optimizer=make_optimizer(
                learning_schedule(learning_rate, cfg, splits.train), cfg.weight_decay
            ),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        return model

    # ---- evaluation -------------------------------------------------------------------------
    def evaluate(self, model: keras.Model, splits: Splits, cfg: TextgenConfig) -> Report:
        codec: Codec = splits.info["codec"]
        train, _, test = splits.info["ids"]
        model_bits = model_log2_loss(model, test)
        ngram = KneserNey(cfg.ngram_order, len(codec.vocabulary)).fit(train)
        ngram_bits = -np.log2(ngram.probabilities(test, first=1))
        metrics = _metrics(cfg.level, model_bits.mean(), ngram_bits.mean())
        metrics["unknown_rate"] = float(np.mean(test == OOV_ID))
        prompt = _first_line(splits.info["test_text"])
        samples = sample_texts(model, codec, prompt, cfg)
        return Report(
            metrics=metrics,
            figures={"test_bits": bits_figure(model_bits, ngram_bits, cfg)},
            artifacts={
                "samples": {"prompt": prompt, "samples": samples},
                VOCABULARY_ARTIFACT: {"level": codec.level, "tokens": codec.vocabulary},
            },
            texts={"samples.txt": _samples_text(prompt, samples)},
        )


def learning_schedule(
    learning_rate: float, cfg: TextgenConfig, train: tf.data.Dataset
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """Cosine decay to 5 % over all ``cfg.epochs``: the late small steps are where a small
    corpus's validation loss keeps improving after a constant rate has stalled."""
    if cfg.lr_schedule == "constant":
        return learning_rate
    steps = int(train.cardinality()) * cfg.epochs
    return keras.optimizers.schedules.CosineDecay(learning_rate, steps, alpha=0.05)


def _windows(
    ids: np.ndarray, length: int, stride: int, batch_size: int, seed: int | None
) -> tf.data.Dataset:
    """(inputs, next-token targets) windows of ``length``; shuffled when ``seed`` is given."""
    starts = np.arange(0, len(ids) - length, stride)
    inputs = np.stack([ids[s : s + length] for s in starts])
    targets = np.stack([ids[s + 1 : s + length + 1] for s in starts])
    ds = tf.data.Dataset.from_tensor_slices((inputs, targets))
    if seed is not None:
        ds = ds.shuffle(len(starts), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def model_log2_loss(model: keras.Model, ids: np.ndarray) -> np.ndarray:
    """-log2 P of ids[1:], each given every id before it (one pass, no window boundaries)."""
    logits = np.asarray(model.predict(ids[None, :-1], verbose=0)[0], np.float64)
    log_probs = logits - _logsumexp(logits)
    return -log_probs[np.arange(len(ids) - 1), ids[1:]] / np.log(2)


def _logsumexp(logits: np.ndarray) -> np.ndarray:
    peak = logits.max(axis=-1, keepdims=True)
    return peak + np.log(np.exp(logits - peak).sum(axis=-1, keepdims=True))


def _metrics(level: str, model_bits: float, ngram_bits: float) -> dict[str, float]:
    if level == "char":
        return {
            "bits_per_char": float(model_bits),
            "baseline_ngram_test_bits_per_char": float(ngram_bits),
        }
    return {
        "perplexity": float(2**model_bits),
        "baseline_ngram_test_perplexity": float(2**ngram_bits),
    }


def bits_figure(model_bits: np.ndarray, ngram_bits: np.ndarray, cfg: TextgenConfig) -> Any:
    """Running mean of the surprise along the held-out text: where each model struggles."""
    fig, (ax,) = figure(height=3.5)
    span = max(1, min(500, len(model_bits) // 20))
    kernel = np.ones(span) / span
    for bits, label in (
        (model_bits, f"{cfg.cell} model"),
        (ngram_bits, f"{cfg.ngram_order}-gram KN"),
    ):
        ax.plot(np.convolve(bits, kernel, mode="valid"), label=f"{label}: {bits.mean():.3f}")
    ax.set_xlabel(f"{cfg.level} position in the held-out text")
    ax.set_ylabel(f"bits per {cfg.level} (running mean of {span})")
    ax.legend()
    return fig


# ---- generation --------------------------------------------------------------------------------
def generate(
    twin: keras.Model,
    codec: Codec,
    prompt: str,
    length: int,
    temperature: float,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
) -> str:
    """``length`` tokens continuing ``prompt`` from a stateful twin of a language model."""
    ids = codec.encode(prompt)
    for layer in twin.layers:
        if getattr(layer, "stateful", False):
            layer.reset_state()
    step = tf.function(twin, reduce_retracing=True)
    rng = np.random.default_rng(seed)
    logits = np.array(step(ids[None])[0, -1])
    out: list[int] = []
    for _ in range(length):
        logits[[PAD_ID, OOV_ID]] = -np.inf
        out.append(sample(logits, rng, temperature, top_k, top_p))
        logits = np.array(step(np.array([[out[-1]]], np.int32))[0, -1])
    return codec.decode(out)


def check_prompt(codec: Codec, prompt: str) -> None:
    """One clear error for a prompt the vocabulary cannot encode."""
    if not prompt.strip():
        raise DataError("--predict needs a non-empty prompt")
    unknown = sorted(set(unknown_tokens(codec.layer, codec.units(prompt))))
    if unknown:
        kind = "characters" if codec.level == "char" else "words"
        listed = ", ".join(repr(u) for u in unknown[:10])
        raise DataError(f"the prompt has {kind} never seen in training: {listed}")


def sample_texts(
    model: keras.Model, codec: Codec, prompt: str, cfg: TextgenConfig
) -> list[dict[str, Any]]:
    twin = stateful_twin(model)
    settings = [(t, 0, 1.0) for t in cfg.sample_temperatures] + [(1.0, 0, 0.9), (1.0, 10, 1.0)]
    return [
        {
            "temperature": t,
            "top_k": k,
            "top_p": p,
            "text": generate(twin, codec, prompt, cfg.length, t, k, p, cfg.seed),
        }
        for t, k, p in settings
    ]


def _first_line(text: str) -> str:
    """The first whole non-blank line (at most 40 characters) of a text, to prompt samples."""
    lines = [line for line in text.split("\n")[1:] if line.strip()]
    return lines[0][:40] + "\n" if lines else text[:40]


def _samples_text(prompt: str, samples: list[dict[str, Any]]) -> str:
    blocks = [
        f"--- temperature {s['temperature']}, top-k {s['top_k']}, top-p {s['top_p']} ---\n"
        f"{prompt}{s['text']}"
        for s in samples
    ]
    return "\n\n".join(blocks) + "\n"
