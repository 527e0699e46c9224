"""Keras 3 recurrent building blocks: fused LSTM layers, attention, decoding.

Importing the package registers every layer for ``.keras`` loading.
"""

from models.attention import (
    AttentionDecoder,
    AttentionPooling,
    BahdanauAttention,
    LuongAttention,
    make_attention,
)
from models.decoding import beam_search, greedy_decode
from models.recurrent import (
    CELL_NAMES,
    LSTM,
    LayerNormLSTM,
    LayerNormLSTMCell,
    LSTMCell,
    PeepholeLSTM,
    PeepholeLSTMCell,
    gate_activations,
    make_cell,
    make_recurrent_layer,
)

__all__ = [
    "CELL_NAMES",
    "LSTM",
    "AttentionDecoder",
    "AttentionPooling",
    "BahdanauAttention",
    "LSTMCell",
    "LayerNormLSTM",
    "LayerNormLSTMCell",
    "LuongAttention",
    "PeepholeLSTM",
    "PeepholeLSTMCell",
    "beam_search",
    "gate_activations",
    "greedy_decode",
    "make_attention",
    "make_cell",
    "make_recurrent_layer",
]
