"""The shared word tokenizer and token vocabulary (pipelines/core/tokenizer.py)."""

import numpy as np
import pytest

from pipelines.core.tokenizer import END, PAD, START, UNK, Vocabulary, detokenize, tokenize


def test_tokenize_splits_words_punctuation_and_elisions():
    assert tokenize("L’aide n'est pas prête.") == ["l'", "aide", "n'", "est", "pas", "prête", "."]
    assert tokenize("Three digits: 1, 4 and 9") == [
        "three",
        "digits",
        ":",
        "1",
        ",",
        "4",
        "and",
        "9",
    ]
    assert tokenize("a well-made film, e.g. this") == [
        "a",
        "well-made",
        "film",
        ",",
        "e.g",
        ".",
        "this",
    ]


@pytest.mark.parametrize(
    "text", ["ouvrir l'aide, maintenant.", "three digits: 1, 4 and 9", "don't (see) [this]!"]
)
def test_detokenize_inverts_tokenize(text):
    assert detokenize(tokenize(text)) == text


def test_vocabulary_encodes_with_markers_and_decodes_to_the_end_marker():
    vocab = Vocabulary.fit([tokenize("a small 7"), tokenize("a large 7"), ["a"]], markers=True)
    assert vocab.tokens[:4] == [PAD, UNK, START, END] and vocab.tokens[4:6] == ["a", "7"]
    ids = vocab.encode_batch([tokenize("a small 7"), tokenize("a huge 7 indeed")], max_tokens=3)
    assert ids.shape == (2, 5)
    assert list(ids[1]) == [vocab.start_id, vocab.index["a"], vocab.unk_id, vocab.index["7"],
                            vocab.end_id]  # fmt: skip
    assert vocab.decode([*ids[0], vocab.index["a"]]) == ["a", "small", "7"]
    assert vocab.decode(ids[1]) == ["a", "7"]  # [UNK] dropped
    assert Vocabulary(vocab.tokens).index == vocab.index


def test_vocabulary_min_count_and_ids_read_from_the_list():
    vocab = Vocabulary.fit([["b", "a", "a"], ["c"]], min_count=2)
    assert vocab.tokens == [PAD, UNK, "a"] and vocab.start_id is None
    np.testing.assert_array_equal(vocab.ids(["a", "b"]), [2, 1])
    # a list logged in another order (e.g. markers counted as tokens) keeps its ids
    logged = Vocabulary([PAD, UNK, "de", END, START])
    assert (logged.start_id, logged.end_id) == (4, 3)
    with pytest.raises(ValueError):
        Vocabulary(["a", UNK])
