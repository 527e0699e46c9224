"""Training pieces every task compiles with."""

from __future__ import annotations

import keras


def make_optimizer(learning_rate: float, weight_decay: float = 0.0) -> keras.optimizers.Optimizer:
    """AdamW when weight decay is asked for (decoupled decay, Loshchilov & Hutter), else Adam.

    Gradients are clipped by global norm: recurrent nets explode now and then.
    """
    if weight_decay > 0:
        return keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay, global_clipnorm=1.0)
    return keras.optimizers.Adam(learning_rate, global_clipnorm=1.0)
