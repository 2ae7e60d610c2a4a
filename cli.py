"""Command-line plumbing shared by train.py, evaluate.py and bench.py: range-checked argparse types, the
--backend flag and choosing the Keras backend before Keras starts, and one-line errors for the user.

Imports nothing heavy: everything here runs before Keras or any backend is loaded.
"""
import argparse
import contextlib
import importlib.util
import json
import os
import re
import sys
import tempfile

BACKENDS = ("tensorflow", "jax", "torch")
INSTALL = {  # what to run when a backend's package is missing
    "tensorflow": 'pip install "tensorflow>=2.16"',
    "jax": "pip install jax",
    "torch": "pip install torch",
}


class UserError(Exception):
    """Something the user can fix (message: one line); data.DataError and runs.RunError are kinds of it."""


def number_in_range(kind, low, low_ok=True, high=None):
    """An argparse type: kind(text) within [low, high) (low itself excluded unless low_ok)."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a{'n integer' if kind is int else ' number'}, got {text!r}")
        if not (value >= low) or (value == low and not low_ok) or (high is not None and not value < high) \
                or value == float("inf"):
            bound = f">= {low}" if low_ok else f"> {low}"
            raise argparse.ArgumentTypeError(f"must be {bound}{f' and < {high}' if high else ''}, got {text}")
        return value
    return parse


def default_backend():
    """KERAS_BACKEND if set, else the backend that Keras' own keras.json names, else TensorFlow."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json")) as f:
            named = json.load(f).get("backend")
    except (OSError, ValueError, AttributeError):
        named = None
    return named if isinstance(named, str) and named else "tensorflow"


def folder_name(text):
    """An argparse type: a plain folder name (no path), so a run folder always lands inside --out."""
    if not text or text in (".", "..") or "/" in text or os.sep in text or (os.altsep and os.altsep in text):
        raise argparse.ArgumentTypeError(f"must be a folder name without '/' (it goes inside --out), got {text!r}")
    return text


def add_backend_flag(parser, default=None):
    kwargs = {} if default is argparse.SUPPRESS else {"default": default}
    parser.add_argument("--backend", choices=BACKENDS, **kwargs,
                        help="Keras backend to run on (default: $KERAS_BACKEND, else keras.json's backend, else tensorflow)")


def select_backend(name, device="auto"):
    """Make `name` the Keras backend of this process; call before Keras is imported.

    Raises UserError (one line) when the backend's package is missing or Keras already runs on another."""
    if name not in BACKENDS:
        raise UserError(f"unknown Keras backend {name!r} (KERAS_BACKEND?); choose from {', '.join(BACKENDS)}")
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


# What native libraries print while they start, whatever TF_CPP_MIN_LOG_LEVEL says: absl's notice, its
# info and warning lines, and the two errors a GPU build prints on a machine without a GPU (the failed
# cuInit probe, the duplicate CUDA library factories). Any other error line, a real CUDA problem on a
# GPU machine included, reaches the user.
START_UP_CHATTER = re.compile(r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
                              r"|[IW]\d{4} \d\d:\d\d:\S+ +\d+ \S+:\d+\] .*"
                              r"|E\d{4} \d\d:\d\d:\S+ +\d+ \S+:\d+\] .*(failed call to cuInit"
                              r"|Unable to register cu(DNN|FFT|BLAS) factory).*")


@contextlib.contextmanager
def quiet_start_up():
    """Hold back the native start-up lines written to stderr inside the block (importing Keras and its
    backend, finding devices); every other line written meanwhile is passed on when the block ends."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode(errors="replace").splitlines(keepends=True)
                    if not START_UP_CHATTER.fullmatch(line.rstrip("\n"))]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


def exit_on_user_error(run, *args):
    """run(*args), with problems the user can fix (bad data, a bad run folder, a full or read-only disk,
    a missing backend) reported as one line on stderr and exit code 1 instead of a traceback."""
    try:
        return run(*args)
    except UserError as e:  # data.DataError and runs.RunError among them
        print(f"error: {e}", file=sys.stderr)
    except OSError as e:
        print(f"error: {e.filename + ': ' if e.filename else ''}{e.strerror or e}", file=sys.stderr)
    return 1
