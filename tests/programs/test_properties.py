"""Random flags and random file contents: each either works or is refused with a clean message."""
import gzip
import io
import os
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnist_vae import data
from mnist_vae import settings as run_settings

pytestmark = pytest.mark.backend_independent

FLAGS = ["--epochs", "--batch-size", "--latent-dim", "--arch", "--hidden", "--lr", "--beta", "--seed",
         "--data", "--dataset", "--val-split", "--limit", "--jit", "--out", "--run-name", "--resume",
         "--deterministic", "--bogus"]
VALUES = st.one_of(st.integers(-10**6, 10**6).map(str), st.floats(allow_nan=True, allow_infinity=True).map(str),
                   st.sampled_from(["dense", "conv", "mnist", "fashion_mnist", "auto", "on", "off", "", "-1",
                                    "1e-3", "0", "nan", "inf", "-inf", "1e400"]),
                   st.text(max_size=8))
ARGV = st.lists(st.one_of(st.sampled_from(FLAGS), VALUES), max_size=8)


@settings(max_examples=300, deadline=None)
@given(ARGV)
def test_random_flags_parse_or_exit_2_with_a_message(argv):
    stderr = io.StringIO()
    from contextlib import redirect_stderr

    try:
        with redirect_stderr(stderr):
            args, given_flags = run_settings.parse_args(argv)
    except SystemExit as e:
        assert e.code == 2
        assert "error: " in stderr.getvalue() and "Traceback" not in stderr.getvalue()
        return
    # Accepted: every value is in its range.
    assert args.epochs >= 1 and args.batch_size >= 1 and args.latent_dim >= 1 and args.hidden >= 1
    assert args.lr > 0 and np.isfinite(args.lr) and args.beta >= 0 and np.isfinite(args.beta)
    assert 0 < args.val_split < 1 and args.arch in ("dense", "conv") and args.seed >= 0
    assert given_flags <= set(vars(args))


def _load_or_data_error(path):
    try:
        splits = data.load(path)
    except data.DataError as e:
        message = str(e)
        assert message and "\n" not in message
        return None
    assert splits.x_train.dtype == np.uint8 and splits.x_train.shape[1:] == (28, 28, 1)
    assert len(splits.x_train) > 0 and len(splits.x_test) > 0
    if splits.y_train is not None:  # images may come without labels, which then are absent for both splits
        assert len(splits.x_train) == len(splits.y_train) and len(splits.x_test) == len(splits.y_test)
    else:
        assert splits.y_test is None and "no labels" in splits.note
    return splits


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(images=st.binary(max_size=400), labels=st.binary(max_size=60), gz=st.booleans(),
       header=st.booleans(), count=st.integers(0, 4), rows=st.integers(0, 30))
def test_random_idx_files_load_or_fail_cleanly(images, labels, gz, header, count, rows):
    with tempfile.TemporaryDirectory() as folder:
        if header:  # a plausible header in front of random bytes reaches the deeper checks
            images = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (count, rows, 28)) + images
            labels = bytes([0, 0, 8, 1]) + count.to_bytes(4, "big") + labels
        for name, raw in (("t10k-images-idx3-ubyte", images), ("t10k-labels-idx1-ubyte", labels)):
            with open(os.path.join(folder, name + (".gz" if gz else "")), "wb") as f:
                f.write(gzip.compress(raw) if gz and header else raw)
        _load_or_data_error(folder)


@settings(max_examples=100, deadline=None)
@given(content=st.binary(max_size=300))
def test_random_bytes_named_npz_fail_cleanly(content):
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "x.npz")
        with open(path, "wb") as f:
            f.write(content)
        assert _load_or_data_error(path) is None


DTYPES = st.sampled_from([np.uint8, np.int16, np.int64, np.float32, np.float64, np.bool_, np.complex64])


@settings(max_examples=150, deadline=None)
@given(n=st.integers(0, 5), shape_tail=st.sampled_from([(28, 28), (28, 28, 1), (28, 27), (784,), ()]),
       x_dtype=DTYPES, y_dtype=DTYPES, label_count=st.integers(0, 6), scale=st.sampled_from([1, 255, 300, -1]),
       keys=st.sampled_from([("x_train", "y_train", "x_test", "y_test"), ("x_test", "y_test"),
                             ("x_train",), ("images", "labels")]))
def test_random_arrays_in_npz_load_or_fail_cleanly(n, shape_tail, x_dtype, y_dtype, label_count, scale, keys):
    rng = np.random.default_rng(n)
    x = (rng.uniform(size=(n,) + shape_tail) * scale).astype(x_dtype)
    y = (rng.integers(0, 12, size=label_count)).astype(y_dtype)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "a.npz")
        np.savez(path, **{k: (x if k.startswith(("x", "images")) else y) for k in keys})
        splits = _load_or_data_error(path)
        if splits is not None:  # only clean MNIST-shaped integer data gets through, with as many labels or none
            labelled = any(k.startswith("y") for k in keys)
            assert x.dtype.kind in "uib" and n >= 1 and shape_tail in ((28, 28), (28, 28, 1))
            assert label_count == n if labelled else splits.y_train is None


@pytest.mark.parametrize("argv", [["--epochs", "nan"], ["--lr", "inf"], ["--val-split", "nan"], ["--beta", "1e400"]])
def test_non_finite_numbers_are_refused(argv):
    with pytest.raises(SystemExit) as e:
        run_settings.parse_args(argv)
    assert e.value.code == 2
