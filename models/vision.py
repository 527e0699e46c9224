"""Image captioning: CNN (or frozen MobileNetV2) feature grids and the attention captioner."""

from __future__ import annotations

from typing import Any

import keras

from models.attention import AttentionDecoder


def conv_grid(image: Any, filters: int = 16, name: str = "cnn") -> Any:
    """Small CNN from raw pixels (0-255) to a feature grid at 1/8 resolution.

    A strided first conv, two conv-pool blocks and one more conv (widths f, 2f, 4f, 4f), so each
    grid cell sees about 40 pixels: enough to recognise a digit-sized object from its own cell.
    BatchNorm momentum 0.9 lets the inference statistics keep up during short trainings.
    """
    x = keras.layers.Rescaling(1.0 / 255.0, name=f"{name}_rescale")(image)
    for i, width in enumerate((filters, 2 * filters, 4 * filters, 4 * filters)):
        x = keras.layers.Conv2D(
            width, 3, strides=2 if i == 0 else 1, padding="same", use_bias=False,
            name=f"{name}_conv{i}",
        )(x)  # fmt: skip
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn{i}")(x)
        x = keras.layers.ReLU(name=f"{name}_relu{i}")(x)
        if i in (1, 2):
            x = keras.layers.MaxPooling2D(name=f"{name}_pool{i}")(x)
    return x


def mobilenet_grid(image: Any, weights: str) -> Any:
    """A frozen ImageNet MobileNetV2 feature grid (1/32 resolution) from a local weights file.

    Grey images are repeated to three channels; pixels are mapped to [-1, 1] as it expects.
    """
    x = image
    if image.shape[-1] == 1:
        x = keras.layers.Concatenate(name="grey_to_rgb")([image, image, image])
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="mobilenet_rescale")(x)
    backbone = keras.applications.MobileNetV2(
        input_shape=tuple(x.shape[1:]), include_top=False, weights=weights
    )
    backbone.trainable = False
    return backbone(x, training=False)


def captioner(
    image_shape: tuple[int, int, int],
    vocab_size: int,
    cell: str = "lstm",
    units: int = 128,
    embedding_dim: int = 32,
    attention: str = "bahdanau",
    dropout: float = 0.0,
    filters: int = 32,
    encoder_weights: str | None = None,
) -> keras.Model:
    """Show, Attend and Tell (Xu et al. 2015): CNN grid encoder + attention LSTM decoder.

    Inputs ``{"image": [B, H, W, C] raw pixels, "tokens": [B, T] teacher-forced ids}``; output
    logits ``[B, T, V]``. The grid ``[B, h*w, units]`` (layer ``grid``) is what the decoder
    attends over; its mean seeds the decoder state (layers ``init_state_<i>``). Inference
    builds an encoder sub-model from these layers and runs `models.decoding` on ``decoder``.
    With ``encoder_weights`` (a local ``.h5`` file) the grid comes from a frozen MobileNetV2.
    """
    image = keras.Input(image_shape, name="image")
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    grid = mobilenet_grid(image, encoder_weights) if encoder_weights else conv_grid(image, filters)
    rows, cols, channels = grid.shape[1:]
    features = keras.layers.Reshape((rows * cols, channels), name="flatten_grid")(grid)
    features = keras.layers.Dense(units, activation="relu", name="grid")(features)
    decoder = AttentionDecoder(
        vocab_size, embedding_dim, units, cell=cell, attention=attention, dropout=dropout,
        name="decoder",
    )  # fmt: skip
    pooled = keras.layers.GlobalAveragePooling1D(name="mean_feature")(features)
    sizes = decoder.cell.state_size
    sizes = list(sizes) if isinstance(sizes, list | tuple) else [sizes]
    state = [
        keras.layers.Dense(int(size), activation="tanh", name=f"init_state_{i}")(pooled)
        for i, size in enumerate(sizes)
    ]
    logits = decoder((tokens, features), initial_state=state)
    return keras.Model({"image": image, "tokens": tokens}, logits, name="captioner")
