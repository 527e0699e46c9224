"""The shared text layer: read text and labelled CSVs, build vocabularies, pad, split.

Every text pipeline (sentiment, translation, text generation) reads and tokenises through
here, so a bad file fails the same way everywhere (one ``DataError`` line naming the file and
the fix) and a vocabulary means the same thing everywhere: a Keras ``TextVectorization`` layer
whose index 0 is padding (masked by ``Embedding(mask_zero=True)``) and index 1 is ``[UNK]``.
Putting the vectorizer inside a model lets raw strings go in; it saves with the model.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from sklearn.model_selection import StratifiedKFold, train_test_split

from pipelines.core.errors import DataError
from pipelines.core.tables import check_row_width

PAD_ID, OOV_ID = 0, 1
_DECOMPRESS = {".gz": gzip.decompress, ".bz2": bz2.decompress, ".xz": lzma.decompress}


# ---- reading ------------------------------------------------------------------------------------
def decode_utf8(data: bytes, source: str) -> str:
    """Strict UTF-8 decoding; the error names the first bad byte and its line, so the user can
    find it (silently replacing bytes would train on mojibake). A byte-order mark (Notepad and
    Excel's "UTF-8" save one) is dropped: it would be a character of the first text."""
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{source} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}, "
            f"line {line}); re-save it as UTF-8"
        ) from None


def read_text(path: str | Path) -> str:
    """A whole UTF-8 text file (``.gz``/``.bz2``/``.xz`` decompressed); DataError if it is
    missing, not UTF-8, or has no non-whitespace character."""
    path = Path(path)
    text = decode_utf8(_read_bytes(path), path.name)
    if not text.strip():
        raise DataError(f"{path.name} contains no text")
    return text


def read_texts(source: str, text_column: str = "") -> list[str]:
    """Texts to apply a model to (``--predict``): the lines of a text file, the ``text_column``
    of a CSV (default: ``text``, or its only column), or ``source`` itself when it names no
    file. DataError for an empty, binary or column-less file and for a blank text."""
    path = Path(source)
    if not path.is_file():
        if not source.strip():
            raise DataError("--predict got an empty text")
        return [source]
    content = decode_utf8(_read_bytes(path), path.name)
    if "\x00" in content:
        raise DataError(f"{path.name} is a binary file, not text")
    if path.suffix.lower() == ".csv":
        frame = _csv_frame(content, path.name)
        column = text_column or ("text" if len(frame.columns) != 1 else frame.columns[0])
        _require_columns(frame, [column], path.name, hint="; name it with --text-column")
        lines = frame[column].tolist()
    else:
        lines = content.splitlines()
    texts = [line.strip() for line in lines if line.strip()]
    if not texts:
        raise DataError(f"{path.name} contains no text")
    return texts


def read_labelled_csv(
    path: str | Path, text_column: str, label_column: str
) -> tuple[list[str], list[str]]:
    """``(texts, labels)`` from a UTF-8 CSV, labels as strings.

    Rows whose text is blank or whose label is missing are dropped (a scraped corpus has a
    few); a file with none left, or without the named columns, is a DataError.
    """
    path = Path(path)
    frame = _csv_frame(decode_utf8(_read_bytes(path), path.name), path.name)
    _require_columns(frame, [text_column, label_column], path.name)
    texts = frame[text_column].str.strip()
    labels = frame[label_column].str.strip()
    keep = (texts != "") & (labels != "")
    if not keep.any():
        raise DataError(f"{path.name} has no row with both {text_column!r} and {label_column!r}")
    return texts[keep].tolist(), labels[keep].tolist()


def _csv_frame(content: str, name: str) -> pd.DataFrame:
    try:
        frame = pd.read_csv(io.StringIO(content), dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{name} is empty") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"cannot parse {name} as CSV: {exc}") from None
    check_row_width(frame, name, hint=": put a text with commas in double quotes")
    return frame


def _require_columns(frame: pd.DataFrame, columns: list[str], name: str, hint: str = "") -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"{name} has no column(s) {', '.join(missing)}; "
            f"columns are {', '.join(map(str, frame.columns))}{hint}"
        )


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    data = path.read_bytes()
    decompress = _DECOMPRESS.get(path.suffix)
    if decompress is None:
        return data
    try:
        return decompress(data)
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise DataError(f"cannot decompress {path.name}: {exc}") from None


# ---- labels and splits -------------------------------------------------------------------------
def encode_labels(
    labels: Sequence[str], classes: Sequence[str] | None = None
) -> tuple[np.ndarray, list[str]]:
    """``(ids int32, classes)``; classes sorted unless given. DataError for a single class or
    a label outside the given ``classes``."""
    found = sorted(set(labels))
    classes = list(classes) if classes is not None else found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(f"unexpected label(s) {', '.join(map(repr, unknown[:5]))}")
    if len(found) < 2:
        raise DataError(
            f"all {len(labels)} examples have the label {found[0]!r}; a classifier needs at "
            "least two classes"
        )
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[label] for label in labels], np.int32), classes


def stratified_holdout(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(kept, held_out)`` index arrays, ``fraction`` held out with the class balance kept."""
    try:
        kept, held = train_test_split(
            np.arange(len(labels)), test_size=fraction, stratify=labels, random_state=seed
        )
    except ValueError as exc:  # a class too small to appear on both sides
        raise DataError(f"cannot split {len(labels)} examples by class: {exc}") from None
    return np.sort(kept), np.sort(held)


def stratified_split(
    labels: np.ndarray, validation_fraction: float, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train/validation/test index arrays with the class balance of ``labels`` in each."""
    rest, test = stratified_holdout(labels, test_fraction, seed)
    train, validation = stratified_holdout(
        labels[rest], validation_fraction / (1.0 - test_fraction), seed
    )
    return rest[train], rest[validation], test


def stratified_folds(
    labels: np.ndarray, folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``folds`` (train, test) index pairs; every example is tested exactly once."""
    smallest = np.bincount(labels)[np.unique(labels)].min()
    if smallest < folds:
        raise DataError(f"the smallest class has {smallest} examples, fewer than --folds {folds}")
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels))


def text_dataset(
    texts: Sequence[str], targets: np.ndarray, batch_size: int, shuffle_seed: int | None = None
) -> tf.data.Dataset:
    """Batched ``(string, target)`` pairs for a model that starts with a vectorizer; shuffled
    once per epoch when ``shuffle_seed`` is given (training)."""
    ds = tf.data.Dataset.from_tensor_slices((tf.constant(list(texts), tf.string), targets))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(texts), seed=shuffle_seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


# ---- vocabularies --------------------------------------------------------------------------------
def word_vectorizer(
    texts: Sequence[str],
    max_tokens: int | None = 20000,
    sequence_length: int | None = None,
    standardize: str | Callable | None = "lower_and_strip_punctuation",
    min_count: int = 1,
    name: str = "words",
) -> keras.layers.TextVectorization:
    """A word vocabulary adapted on ``texts`` (the training part only: a held-out word must be
    unknown, as it will be for a user). Words seen fewer than ``min_count`` times map to [UNK].

    ``sequence_length`` pads/truncates to a fixed length; None pads to the longest in a batch.
    A callable ``standardize`` must be ``keras.saving.register_keras_serializable`` to save.
    """
    layer = keras.layers.TextVectorization(
        max_tokens=max_tokens,
        standardize=standardize,
        output_sequence_length=sequence_length,
        name=name,
    )
    layer.adapt(tf.constant(list(texts), tf.string))
    if min_count > 1:
        layer.set_vocabulary(_frequent(layer, texts, min_count))
    return layer


def char_vectorizer(
    texts: Sequence[str], sequence_length: int | None = None, name: str = "chars"
) -> keras.layers.TextVectorization:
    """A character vocabulary (case, spaces and newlines kept: a language model must write
    them), most frequent first."""
    layer = keras.layers.TextVectorization(
        standardize=None,
        split="character",
        output_sequence_length=sequence_length,
        name=name,
    )
    layer.adapt(tf.constant(list(texts), tf.string))
    return layer


def vectorizer_from_vocabulary(
    vocabulary: Sequence[str], level: str = "word", **kwargs: Any
) -> keras.layers.TextVectorization:
    """Rebuild a vectorizer from a saved ``vocabulary(layer)`` list (``level`` word or char);
    ``kwargs`` as for ``keras.layers.TextVectorization``."""
    if level == "char":
        kwargs = {"standardize": None, "split": "character"} | kwargs
    layer = keras.layers.TextVectorization(**kwargs)
    layer.set_vocabulary(list(vocabulary)[2:])  # padding and [UNK] are implied
    return layer


def vocabulary(layer: keras.layers.TextVectorization) -> list[str]:
    """Index -> token, with ``""`` (padding) at 0 and ``"[UNK]"`` at 1; plain Python strings."""
    return [str(token) for token in layer.get_vocabulary()]


def unknown_tokens(layer: keras.layers.TextVectorization, units: Sequence[str]) -> list[str]:
    """The ``units`` (characters or words of a user's input) the vocabulary does not know.

    Each unit is vectorised alone, so the answer names what the user typed rather than its
    standardised form; a unit that standardises to nothing (lone punctuation) is not unknown.
    """
    units = list(units)
    if not units:
        return []
    ids = np.asarray(layer(tf.constant(units, tf.string)))
    ids = ids.reshape(len(units), -1)
    return [unit for unit, row in zip(units, ids, strict=True) if (row == OOV_ID).any()]


def tokens(ids: np.ndarray, vocab: Sequence[str]) -> list[str]:
    """Token strings of one id sequence, padding dropped."""
    return [vocab[i] for i in np.asarray(ids).ravel() if i != PAD_ID]


def pad(sequences: Sequence[Sequence[int]], length: int | None = None) -> np.ndarray:
    """``[N, length]`` int32 id matrix padded (and cut) at the end with PAD_ID; ``length``
    defaults to the longest sequence."""
    length = length or max((len(s) for s in sequences), default=0)
    out = np.full((len(sequences), length), PAD_ID, np.int32)
    for row, seq in enumerate(sequences):
        seq = list(seq)[:length]
        out[row, : len(seq)] = seq
    return out


def _frequent(
    layer: keras.layers.TextVectorization, texts: Sequence[str], min_count: int
) -> list[str]:
    ids = np.asarray(layer(tf.constant(list(texts), tf.string))).ravel()
    counts = np.bincount(ids, minlength=layer.vocabulary_size())
    vocab = vocabulary(layer)
    return [vocab[i] for i in range(2, len(vocab)) if counts[i] >= min_count]
