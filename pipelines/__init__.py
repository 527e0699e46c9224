"""Applied LSTM pipelines: ``python -m pipelines.<task>``."""

import contextlib
import logging
import os


@contextlib.contextmanager
def _stderr_silenced():
    """Mute file descriptor 2 (C++ logging bypasses sys.stderr and TF_CPP_MIN_LOG_LEVEL)."""
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# TensorFlow's start-up chatter (oneDNN, CUDA probing) would bury the one-line errors the CLI
# promises; it is printed while importing and on first device initialisation, so do both here.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if not os.environ.get("PIPELINES_TF_VERBOSE"):
    with _stderr_silenced():
        import tensorflow as _tf

        _tf.config.list_physical_devices()
    # absl warnings (TFDS, TensorFlow) are notes to developers: a line each before an error.
    logging.getLogger("absl").setLevel(logging.ERROR)
