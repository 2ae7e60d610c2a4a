"""Choosing the Keras backend before Keras starts, starting it quietly, and what each backend can see.

Imports nothing heavy at the top: select_backend runs before Keras or any backend is loaded.
"""
import argparse
import importlib.util
import json
import os
import sys

from mnist_vae.cli import UserError, quiet_start_up

BACKENDS = ("tensorflow", "jax", "torch")


INSTALL = {  # what to run when a backend's package is missing
    "tensorflow": 'pip install "tensorflow>=2.16"',
    "jax": "pip install jax",
    "torch": "pip install torch",
}


def default_backend():
    """KERAS_BACKEND if set, else the backend that Keras' own keras.json names, else TensorFlow."""
    return _default_backend_and_source()[0]


def _default_backend_and_source():
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"], "KERAS_BACKEND"
    path = os.path.join(os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras"), "keras.json")
    try:
        with open(path) as f:
            named = json.load(f).get("backend")
    except (OSError, ValueError, AttributeError):
        named = None
    return (named, path) if isinstance(named, str) and named else ("tensorflow", "the default")


def select_backend(name, device="auto"):
    """Make `name` the Keras backend of this process; call before Keras is imported.

    Raises UserError (one line) when the backend's package is missing or Keras already runs on another."""
    if name not in BACKENDS:
        named, source = _default_backend_and_source()
        where = f" (from {source})" if named == name else ""
        raise UserError(f"unknown Keras backend {name!r}{where}; choose from {', '.join(BACKENDS)}")
    if importlib.util.find_spec(name) is None:
        raise UserError(f"the {name} backend needs the {name} package, which is not installed: {INSTALL[name]}")
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != name:
            raise UserError(f"Keras already runs on {keras.backend.backend()} in this process; "
                            f"cannot switch to {name}")
    os.environ["KERAS_BACKEND"] = name
    if device == "cpu":  # before any backend looks for GPUs
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        os.environ["JAX_PLATFORMS"] = "cpu"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter short
    return name


def start_keras(probe_half_precision=True):
    """Import Keras with the native start-up lines held back (cli.quiet_start_up): Keras loads TensorFlow
    on every backend (for its data tools), and TensorFlow probes for CUDA as it starts; both happen here.
    probe_half_precision=False leaves TensorFlow's first op to later: train.py may need to configure its
    collectives first (distribute.Devices.start then probes)."""
    with quiet_start_up():
        import keras

        if importlib.util.find_spec("tensorflow") is not None:
            from mnist_vae import tf_engine

            tf_engine.has_gpu()
            if probe_half_precision:
                tf_engine.probe_half_precision()
            tf_engine.quiet_retracing_warnings()
    return keras


def has_gpu(backend):
    if backend == "tensorflow":
        from mnist_vae import tf_engine

        return tf_engine.has_gpu()
    if backend == "jax":
        import jax

        return jax.default_backend() == "gpu"
    import torch

    return torch.cuda.is_available()


def add_backend_flag(parser, default=None):
    kwargs = {} if default is argparse.SUPPRESS else {"default": default}
    parser.add_argument("--backend", choices=BACKENDS, **kwargs,
                        help="Keras backend to run on (default: $KERAS_BACKEND, else keras.json's backend, "
                             "else tensorflow)")
