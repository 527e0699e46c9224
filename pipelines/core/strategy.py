"""tf.distribute strategy selection by name."""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from pipelines.core.errors import ConfigError


def select_strategy(name: str) -> tf.distribute.Strategy:
    """``auto`` picks multi-worker under TF_CONFIG, mirrored with several GPUs, else the default."""
    if name == "auto":
        if cluster_config():
            name = "multiworker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if not cluster_config():
            raise ConfigError("--strategy multiworker needs TF_CONFIG describing the cluster")
        _patch_keras_multiworker()
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.NotFoundError) as exc:
            raise ConfigError(f"--strategy tpu: no TPU found ({exc})") from None
        return tf.distribute.TPUStrategy(resolver)
    raise ConfigError(f"unknown strategy {name!r}")


def is_chief() -> bool:
    """True on the one process that should log to MLflow and write outputs."""
    config = cluster_config()
    task = config.get("task", {})
    return task.get("type", "chief") == "chief" or (
        task.get("type") == "worker"
        and task.get("index", 0) == 0
        and "chief" not in config.get("cluster", {})
    )


def cluster_config() -> dict:
    """``$TF_CONFIG`` parsed and checked (``{}`` when unset): a malformed one is one line."""
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return {}
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({exc.msg} at char {exc.pos})") from None
    task = config.get("task", {}) if isinstance(config, dict) else None
    if not (
        isinstance(config, dict)
        and isinstance(config.get("cluster", {}), dict)
        and isinstance(task, dict)
        and isinstance(task.get("index", 0), int)
    ):
        raise ConfigError(
            'TF_CONFIG must be a JSON object like {"cluster": {"worker": ["host:port", ...]}, '
            '"task": {"type": "worker", "index": 0}}'
        )
    return config


def spans_workers(strategy: tf.distribute.Strategy) -> bool:
    """True when replicas may live in other processes, so a collective op needs every worker."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def _patch_keras_multiworker() -> None:
    """Work around keras-team/keras#20585 (Keras 3 ``fit`` fails under multi-worker training).

    Two places in Keras' TensorFlow trainer assume one process:
    - the model is built from a *cross-worker mean* of the first batch, a nested eager reduce
      that MultiWorkerMirroredStrategy rejects (``PerReplica ... to a Tensor``); building needs
      only shapes and dtypes, which this worker's own slice has;
    - the per-step logs (scalars) are averaged over workers with ``axis=0``, invalid for a
      scalar; the mean over replicas is ``axis=None``.
    """
    from keras.src.backend.tensorflow import trainer

    if getattr(trainer, "patched_for_multiworker", False):
        return
    original_build = trainer.TensorFlowTrainer._maybe_symbolic_build
    original_reduce = trainer.reduce_per_replica

    def build(self, iterator=None, data_batch=None):
        if iterator is not None and data_batch is None:
            local = self.distribute_strategy.experimental_local_results
            for _, _, batches in iterator:
                data_batch = keras.tree.map_structure(lambda v: local(v)[0], next(batches))
                break
        return original_build(self, data_batch=data_batch)

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and spans_workers(strategy):
            return keras.tree.map_structure(
                lambda v: (
                    strategy.reduce("MEAN", v, axis=None)
                    if isinstance(v, tf.distribute.DistributedValues)
                    else v
                ),
                values,
            )
        return original_reduce(values, strategy, reduction)

    trainer.TensorFlowTrainer._maybe_symbolic_build = build
    trainer.reduce_per_replica = reduce_per_replica
    trainer.patched_for_multiworker = True
