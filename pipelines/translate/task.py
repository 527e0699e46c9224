"""English→French translation: bidirectional recurrent encoder + attention decoder.

Data (``--data``):

* ``gettext_en_fr`` (default): interface messages and their French translations from the
  gettext catalogs Debian packages install (``--locale-dir``/fr/LC_MESSAGES/*.mo), cleaned and
  deduplicated by `pipelines.datasets.translation_builders`.
* an Anki/Tatoeba file (``fra.txt``: ``english<TAB>french[<TAB>attribution]`` per line).

Pairs with more than ``--max-words`` words on a side are dropped; the rest is shuffled and
split 80/10/10. Tokens are BPE subwords (``--vocab subword``, merges learned on the training
part) or words. Training is teacher-forced with padding masked out of the loss; inference is
greedy or beam search (``--beam-width``). The test set is scored with sacrebleu BLEU and chrF
against two baselines measured in the same run: copying the English input, and retrieving the
French of the most similar training sentence (TF-IDF cosine).
"""

from __future__ import annotations

import itertools
import sys
import textwrap
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from models import seq2seq_translator
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
from pipelines.core.text import read_texts
from pipelines.core.training import make_optimizer
from pipelines.datasets.translation_builders import (
    SYSTEM_LOCALE_DIR,
    load_gettext_pairs,
    read_anki,
)
from pipelines.translate.inference import VOCABULARY, translate_ids, translate_known
from pipelines.translate.metrics import copy_baseline, retrieval_baseline, scores
from pipelines.translate.vocab import LEVELS, Vocabularies, normalize

DATA_NAME = "gettext_en_fr"
ATTENTIONS = ("bahdanau", "luong")
SPLIT_FRACTIONS = (0.8, 0.1)  # train, validation; the rest is test
MIN_PAIRS = 10


@dataclass
class TranslateConfig(TaskConfig):
    data: str = option(
        DATA_NAME, f"{DATA_NAME} (the system's French gettext catalogs) or an Anki/Tatoeba file"
    )
    locale_dir: str = option(SYSTEM_LOCALE_DIR, f"where {DATA_NAME} looks for fr/LC_MESSAGES/*.mo")
    max_words: int = option(8, "drop pairs with more words than this on either side")
    max_pairs: int = option(0, "use at most this many pairs (0 = all)")
    vocab: str = option("subword", "token unit: BPE subwords or whole words", choices=LEVELS)
    merges: int = option(2000, "BPE merges learned per language (--vocab subword)")
    min_count: int = option(2, "tokens seen fewer times in training become [UNK]")
    attention: str = option("bahdanau", "decoder attention", choices=ATTENTIONS)
    units: int = option(64, "encoder units per direction (the decoder has twice as many)")
    embedding_dim: int = option(64, "token embedding size (both languages)")
    dropout: float = option(0.1, "dropout on embeddings and decoder outputs")
    beam_width: int = option(1, "beam width at inference (1 = greedy)")
    learning_rate: float = new_default("learning_rate", 4e-3)
    epochs: int = new_default("epochs", 30)
    patience: int = new_default("patience", 3)

    def validate(self) -> None:
        super().validate()
        self.require_positive("max_words", "merges", "min_count", "embedding_dim", "beam_width")
        self.require_non_negative("max_pairs")
        if self.layers != 1 or self.recurrent_dropout:
            raise ConfigError(
                "the translator has one bidirectional encoder layer and no recurrent dropout "
                "(the decoder steps in a loop that cannot carry dropout masks); use --dropout"
            )


class TranslateTask(Task):
    """English→French translation with a recurrent encoder-decoder and attention."""

    name = "translate"
    config_class = TranslateConfig

    def predict(self, logged: LoggedModel, source: str, cfg: TranslateConfig) -> Prediction:
        """Translate an English sentence, or every line of a text file, with ``--beam-width``.

        Words never seen in training are noted on stderr (they become [UNK]); a sentence of
        only unknown words is refused.
        """
        vocab = Vocabularies.from_json(logged.artifact(VOCABULARY))
        sentences = read_texts(source)
        translations, unknown = translate_known(logged.model, vocab, sentences, cfg.beam_width)
        if unknown:
            print(f"note: words never seen in training: {', '.join(unknown)}", file=sys.stderr)
        table = pd.DataFrame({"source": sentences, "translation": translations})
        return Prediction(translations, {"translations": table})

    # ---- data -------------------------------------------------------------------------------
    def data(self, cfg: TranslateConfig) -> Splits:
        pairs, source = self.load(cfg)
        pairs = [p for p in pairs if max(len(p[0].split()), len(p[1].split())) <= cfg.max_words]
        if len(pairs) < MIN_PAIRS:
            raise DataError(
                f"only {len(pairs)} sentence pairs of at most {cfg.max_words} words; "
                f"need {MIN_PAIRS} (raise --max-words or add data)"
            )
        order = np.random.default_rng(cfg.seed).permutation(len(pairs))[: cfg.max_pairs or None]
        n = len(order)
        cuts = [int(n * SPLIT_FRACTIONS[0]), int(n * sum(SPLIT_FRACTIONS))]
        parts = dict(zip(("train", "validation", "test"), np.split(order, cuts)))
        sets = {split: [pairs[i] for i in idx] for split, idx in parts.items()}
        vocab = Vocabularies.fit(sets["train"], cfg.vocab, cfg.merges, cfg.min_count)
        datasets = {
            split: pairs_dataset(
                part, vocab, cfg.batch_size, cfg.seed if split == "train" else None
            )
            for split, part in sets.items()
        }
        facts = source | {
            "pairs": n,
            **{f"{split}_pairs": len(part) for split, part in sets.items()},
            "source_vocab": len(vocab.source),
            "target_vocab": len(vocab.target),
        }
        info = {"vocab": vocab, "pairs": sets, "facts": facts}
        return Splits(datasets["train"], datasets["validation"], datasets["test"], info)

    def load(self, cfg: TranslateConfig) -> tuple[list[tuple[str, str]], dict]:
        """All pairs and where they came from."""
        if cfg.data in (DATA_NAME, f"tfds:{DATA_NAME}"):
            pairs, catalogs = load_gettext_pairs(cfg.locale_dir)
            return pairs, {"data": DATA_NAME, "locale_dir": cfg.locale_dir} | catalogs
        if cfg.data.startswith("tfds:") or not ("/" in cfg.data or "." in cfg.data):
            raise DataError(
                f"unknown data set {cfg.data!r}; use {DATA_NAME} or a tab-separated file"
            )
        return read_anki(cfg.data), {"data": cfg.data}

    # ---- model ------------------------------------------------------------------------------
    def build_model(self, cfg: TranslateConfig, splits: Splits, hp: Any = None) -> keras.Model:
        space = SearchSpace(cfg, hp)
        vocab: Vocabularies = splits.info["vocab"]
        model = seq2seq_translator(
            len(vocab.source),
            len(vocab.target),
            cell=space.choice("cell", CELL_NAMES),
            units=space.int("units", 64, 256, step=64),
            embedding_dim=space.int("embedding_dim", 32, 128, step=32),
            attention=space.choice("attention", ATTENTIONS),
            dropout=space.float("dropout", 0.0, 0.3, step=0.1),
        )
        learning_rate = space.float("learning_rate", 5e-4, 1e-2, sampling="log")
        weight_decay = space.float("weight_decay", 0.0, 1e-3)
        model.compile(
            optimizer=make_optimizer(learning_rate, weight_decay),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0),
        )
        return model

    # ---- evaluation -------------------------------------------------------------------------
    def evaluate(self, model: keras.Model, splits: Splits, cfg: TranslateConfig) -> Report:
        vocab: Vocabularies = splits.info["vocab"]
        test = splits.info["pairs"]["test"]
        sources = [en for en, _ in test]
        source_ids = vocab.encode_source(sources)
        tokens, attention = translate_ids(model, source_ids, vocab, cfg.beam_width)
        translations = [vocab.decode(row) for row in tokens]
        references = [normalize(fr) for _, fr in test]
        copied = copy_baseline(sources)
        retrieved = retrieval_baseline(splits.info["pairs"]["train"], sources)
        metrics = scores(translations, references)
        for name, outputs in (("copy", copied), ("retrieval", retrieved)):
            metrics |= {
                f"baseline_{name}_test_{k}": v for k, v in scores(outputs, references).items()
            }
        table = pd.DataFrame(
            {"english": sources, "reference": references, "translation": translations,
             "retrieval": retrieved}
        )  # fmt: skip
        return Report(
            metrics=metrics,
            figures={"attention": plot_alignments(vocab, sources, source_ids, tokens, attention)},
            tables={"translations": table},
            artifacts={VOCABULARY: vocab.to_json(), "data": splits.info["facts"]},
        )


def pairs_dataset(
    pairs: list[tuple[str, str]], vocab: Vocabularies, batch_size: int, shuffle_seed: int | None
) -> tf.data.Dataset:
    """Teacher-forcing batches ``({"source", "target": ids[:-1]}, ids[1:])``, each padded to its
    longest sentence (ragged until batched, so short batches run short decoder loops)."""
    source = vocab.encode_source(en for en, _ in pairs)
    target = vocab.encode_target(fr for _, fr in pairs)
    dataset = tf.data.Dataset.from_tensor_slices(
        (
            tf.RaggedTensor.from_tensor(source, padding=0),
            tf.RaggedTensor.from_tensor(target, padding=0),
        )
    )
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(pairs), seed=shuffle_seed, reshuffle_each_iteration=True)

    def to_batch(source, target):
        target = target.to_tensor()
        return {"source": source.to_tensor(), "target": target[:, :-1]}, target[:, 1:]

    return (
        dataset.ragged_batch(batch_size)
        .map(to_batch, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


def plot_alignments(
    vocab: Vocabularies,
    sources: list[str],
    source_ids: np.ndarray,
    tokens: np.ndarray,
    attention: np.ndarray,
    count: int = 4,
):
    """Attention of each output piece (rows) over the source pieces (columns) for the first
    test sentences of 4-10 source pieces: a good model shows a near-diagonal with reorderings
    where French word order differs."""
    chosen = [i for i in range(len(sources)) if 4 <= (source_ids[i] != 0).sum() <= 10][:count]
    chosen = chosen or list(range(min(count, len(sources))))
    fig, axes = figure(1, len(chosen), width=4.2 * len(chosen), height=4.2)
    for ax, i in zip(np.ravel(axes), chosen):
        columns = vocab.source_labels(sources[i])
        rows = [
            vocab.target[t] for t in itertools.takewhile(lambda t: t != vocab.end_id, tokens[i])
        ]
        rows.append(vocab.target[vocab.end_id])
        weights = attention[i, : len(rows), : len(columns)]
        ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(columns)), columns, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(rows)), rows, fontsize=8)
        ax.set_title("\n".join(textwrap.wrap(sources[i], 40)), fontsize=9)
    fig.suptitle("attention alignment (rows: French output, columns: English source)")
    return fig
