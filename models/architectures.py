"""Former home of the task architectures, kept so ``from models.architectures import ...`` still
works. They now live by domain: `models.timeseries`, `models.speech`, `models.vision`,
`models.text` and the shared `models.stacks`; import them from ``models``."""

from models.speech import (
    BlankPadding,
    FrameMask,
    UtteranceNormalization,
    ZeroPadding,
    ctc_acoustic_model,
    recurrent_classifier,
)
from models.stacks import bidirectional_stack, normalizer, recurrent_stack
from models.text import (
    PUNCTUATION,
    NonPadding,
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
    SeasonalDifference,
    SeasonalReference,
    SortedQuantiles,
    multi_step_forecaster,
    next_step_predictor,
    sequence_autoencoder,
)
from models.vision import captioner, conv_grid, mobilenet_grid

__all__ = [
    "PUNCTUATION",
    "BlankPadding",
    "FrameMask",
    "NonPadding",
    "PinballLoss",
    "SeasonalDifference",
    "SeasonalReference",
    "SortedQuantiles",
    "UtteranceNormalization",
    "ZeroPadding",
    "attention_explainer",
    "bidirectional_stack",
    "captioner",
    "conv_grid",
    "ctc_acoustic_model",
    "language_model",
    "lower_and_space_punctuation",
    "mobilenet_grid",
    "multi_step_forecaster",
    "next_step_predictor",
    "normalizer",
    "recurrent_classifier",
    "recurrent_stack",
    "seq2seq_translator",
    "sequence_autoencoder",
    "stateful_twin",
    "text_classifier",
    "with_linear_expert",
]
