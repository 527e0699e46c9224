"""Keras 3 recurrent building blocks: fused LSTM layers, attention, decoding, and the small
architectures the tasks build from them (by domain: timeseries, speech, vision, text).

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
from models.speech import ctc_acoustic_model, recurrent_classifier
from models.stacks import bidirectional_stack, normalizer, recurrent_stack
from models.text import (
    attention_explainer,
    language_model,
    lower_and_space_punctuation,
    seq2seq_translator,
    stateful_twin,
    text_classifier,
    with_linear_expert,
)
from models.timeseries import (
    PinballLoss,
    multi_step_forecaster,
    next_step_predictor,
    sequence_autoencoder,
)
from models.vision import captioner

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
    "ctc_acoustic_model",
    "recurrent_classifier",
    "bidirectional_stack",
    "normalizer",
    "recurrent_stack",
    "attention_explainer",
    "language_model",
    "lower_and_space_punctuation",
    "seq2seq_translator",
    "stateful_twin",
    "text_classifier",
    "with_linear_expert",
    "PinballLoss",
    "multi_step_forecaster",
    "next_step_predictor",
    "sequence_autoencoder",
    "captioner",
]
