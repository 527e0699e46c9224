"""Training pieces every task compiles with."""

from __future__ import annotations

import keras
import numpy as np


def make_optimizer(learning_rate: float, weight_decay: float = 0.0) -> keras.optimizers.Optimizer:
    """AdamW when weight decay is asked for (decoupled decay, Loshchilov & Hutter), else Adam.

    Gradients are clipped by global norm: recurrent nets explode now and then.
    """
    if weight_decay > 0:
        return keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay, global_clipnorm=1.0)
    return keras.optimizers.Adam(learning_rate, global_clipnorm=1.0)


class WeightAveraging(keras.callbacks.Callback):
    """Stochastic weight averaging (Izmailov et al. 2018): the trained model gets the mean of
    its weights at the end of every epoch from ``start`` (1-based) on.

    With a constant learning rate the weights keep circling a wide minimum and the held-out
    score swings from epoch to epoch (isolated words on a new voice: 73-85 % across epochs
    11-19 of one run); their mean sits nearer the centre of that minimum. If training ends
    before ``start`` the weights are left as they are.
    """

    def __init__(self, start: int):
        super().__init__()
        self.start = start
        self.averaged: list | None = None
        self.count = 0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.averaged, self.count = None, 0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if epoch + 1 < self.start:
            return
        weights = self.model.get_weights()
        self.count += 1
        if self.averaged is None:
            self.averaged = [np.array(w, copy=True) for w in weights]
            return
        for mean, current in zip(self.averaged, weights):
            if np.issubdtype(mean.dtype, np.floating):  # counters and other ints: the last
                mean += (current - mean) / self.count
            else:
                mean[...] = current

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.averaged is not None:
            self.model.set_weights(self.averaged)
