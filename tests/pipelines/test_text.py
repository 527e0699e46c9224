"""Unit tests of the shared text layer: reading, vocabularies, padding, splits."""

from __future__ import annotations

import bz2

import numpy as np
import pytest

from pipelines.core.errors import DataError
from pipelines.core.text import (
    OOV_ID,
    PAD_ID,
    char_vectorizer,
    decode_utf8,
    encode_labels,
    pad,
    read_labelled_csv,
    read_text,
    read_texts,
    stratified_folds,
    stratified_split,
    text_dataset,
    tokens,
    unknown_tokens,
    vectorizer_from_vocabulary,
    vocabulary,
    word_vectorizer,
)


def test_read_text_plain_and_compressed(tmp_path):
    (tmp_path / "a.txt").write_text("To be, or not to be\n", encoding="utf-8")
    (tmp_path / "a.txt.bz2").write_bytes(bz2.compress("Ophélie".encode()))
    assert read_text(tmp_path / "a.txt").startswith("To be")
    assert read_text(tmp_path / "a.txt.bz2") == "Ophélie"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b" \n\t", "contains no text"),
        (b"ok\n\xffbad", "not UTF-8 text (byte 0xff at offset 3, line 2)"),
    ],
)
def test_read_text_rejects(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_text(path)


def test_read_text_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_text(tmp_path / "nope.txt")


def test_decode_utf8_names_source():
    with pytest.raises(DataError, match="upload.csv is not UTF-8"):
        decode_utf8(b"caf\xe9", "upload.csv")


def test_a_byte_order_mark_is_not_part_of_the_first_text(tmp_path):
    (tmp_path / "t.txt").write_bytes(b"\xef\xbb\xbfhello world\nsecond line\n")
    assert read_texts(str(tmp_path / "t.txt")) == ["hello world", "second line"]
    assert decode_utf8(b"\xef\xbb\xbfcaf\xc3\xa9", "t.txt") == "caf\u00e9"


def test_read_labelled_csv(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text('text,label,x\n"good, fun",pos,1\n  ,neg,2\nbad,neg,3\nmeh,,4\n')
    texts, labels = read_labelled_csv(path, "text", "label")
    assert texts == ["good, fun", "bad"]
    assert labels == ["pos", "neg"]
    with pytest.raises(DataError, match="no column.s. review; columns are text, label, x"):
        read_labelled_csv(path, "review", "label")
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(DataError, match="is empty"):
        read_labelled_csv(tmp_path / "e.csv", "text", "label")


def test_texts_with_unquoted_commas_are_refused_not_shifted(tmp_path):
    """pandas read `great movie, loved it,pos` as the text ' loved it' (its index `great movie`)."""
    path = tmp_path / "r.csv"
    path.write_text("text,label\ngreat movie, loved it,pos\nawful, hated it,neg\n")
    message = r"rows of r.csv have more fields than its header \(2, split by ','\): put a text"
    with pytest.raises(DataError, match=message):
        read_labelled_csv(path, "text", "label")
    with pytest.raises(DataError, match=message):
        read_texts(str(path), "text")


def test_encode_labels():
    ids, classes = encode_labels(["pos", "neg", "pos"])
    assert classes == ["neg", "pos"] and ids.tolist() == [1, 0, 1]
    ids, classes = encode_labels(["fresh", "rotten"], classes=["rotten", "fresh"])
    assert ids.tolist() == [1, 0]
    with pytest.raises(DataError, match="least two classes"):
        encode_labels(["pos", "pos"])
    with pytest.raises(DataError, match="unexpected label"):
        encode_labels(["pos", "plot"], classes=["neg", "pos"])


def test_stratified_split_keeps_balance_and_is_disjoint():
    labels = np.array([0] * 80 + [1] * 20)
    train, validation, test = stratified_split(labels, 0.1, 0.2, seed=0)
    assert sorted(np.concatenate([train, validation, test]).tolist()) == list(range(100))
    assert len(test) == 20 and labels[test].sum() == 4
    assert labels[validation].sum() == 2
    with pytest.raises(DataError, match="cannot split"):
        stratified_split(np.array([0, 0, 0, 1]), 0.25, 0.25, seed=0)


def test_stratified_folds_test_each_example_once():
    labels = np.array([0, 1] * 10)
    folds = stratified_folds(labels, 5, seed=0)
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested.tolist()) == list(range(20))
    assert all(labels[test].sum() == 2 for _, test in folds)
    with pytest.raises(DataError, match="fewer than --folds 5"):
        stratified_folds(np.array([0] * 10 + [1] * 3), 5, seed=0)


def test_word_vectorizer_pads_with_zero_and_maps_unknown_to_one():
    layer = word_vectorizer(["a good film", "a bad film!", "a film"], min_count=2)
    vocab = vocabulary(layer)
    assert vocab[:2] == ["", "[UNK]"] and set(vocab[2:]) == {"a", "film"}
    ids = np.asarray(layer(["A film", "good"]))
    assert ids.shape == (2, 2) and ids[1, 0] == OOV_ID and ids[1, 1] == PAD_ID
    assert tokens(ids[0], vocab) == ["a", "film"]
    assert unknown_tokens(layer, ["a", "superb", "film", "!"]) == ["superb"]


def test_char_vectorizer_keeps_case_spaces_and_newlines():
    layer = char_vectorizer(["To be\nor not"])
    vocab = vocabulary(layer)
    assert {" ", "\n", "T", "o"} <= set(vocab)
    assert unknown_tokens(layer, list("Tox")) == ["x"]
    rebuilt = vectorizer_from_vocabulary(vocab, level="char")
    assert vocabulary(rebuilt) == vocab
    np.testing.assert_array_equal(rebuilt(["not be"]), layer(["not be"]))


def test_pad_right_and_truncate():
    ids = pad([[5, 6, 7], [8]])
    np.testing.assert_array_equal(ids, [[5, 6, 7], [8, 0, 0]])
    np.testing.assert_array_equal(pad([[5, 6, 7]], length=2), [[5, 6]])


def test_text_dataset_batches_strings():
    ds = text_dataset(["a", "b", "c"], np.array([0, 1, 0]), batch_size=2, shuffle_seed=1)
    batches = list(ds.as_numpy_iterator())
    assert [len(x) for x, _ in batches] == [2, 1]
    assert sorted(s.decode() for x, _ in batches for s in x) == ["a", "b", "c"]
