"""mnist_vae/data.py: IDX and .npz files load exactly or fail in one line naming the file (random files
included), the test-split-only folder is divided, binarization is seeded and the validation slice is disjoint."""
import gzip
import os
import tempfile
import tracemalloc
import zlib

import numpy as np
import pytest
from conftest import (
    TINY,
    run_main,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnist_vae import data, pipeline
from mnist_vae.data import DataError

pytestmark = pytest.mark.backend_core  # CI runs these on PyTorch too (pytest.ini)


def _digits(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8), rng.integers(0, 10, size=n, dtype=np.uint8)


def _write_split(folder, split, images, labels, gz=True):
    stem = {"train": "train", "test": "t10k"}[split]
    ext = ".gz" if gz else ""
    data.write_idx(os.path.join(folder, f"{stem}-images-idx3-ubyte{ext}"), images)
    data.write_idx(os.path.join(folder, f"{stem}-labels-idx1-ubyte{ext}"), labels)


def _idx_bytes(array):
    path_bytes = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return path_bytes + array.tobytes()


MNIST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


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


DTYPES = st.sampled_from([np.uint8, np.int16, np.int64, np.float32, np.float64, np.bool_, np.complex64])


def unique_images(n):
    """n images whose first pixels spell their index: each one can be told apart."""
    images = np.zeros((n, 28, 28, 1), np.uint8)
    images[:, 0, 0, 0], images[:, 0, 1, 0] = np.arange(n) % 256, np.arange(n) // 256
    return images


@pytest.mark.backend_independent
@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip_is_exact(tmp_path, gz):
    x_train, y_train = _digits(50, 1)
    x_test, y_test = _digits(20, 2)
    _write_split(str(tmp_path), "train", x_train, y_train, gz)
    _write_split(str(tmp_path), "test", x_test, y_test, gz)
    found = data.load_idx_folder(str(tmp_path))
    np.testing.assert_array_equal(found["train"][0][..., 0], x_train)
    np.testing.assert_array_equal(found["train"][1], y_train)
    np.testing.assert_array_equal(found["test"][0][..., 0], x_test)
    assert found["test"][0].shape == (20, 28, 28, 1) and found["test"][0].dtype == np.uint8
    splits = data.load(str(tmp_path))
    assert len(splits.x_train) == 50 and len(splits.x_test) == 20 and splits.note == ""


@pytest.mark.backend_independent
def test_bad_magic_is_reported_with_the_file_name(tmp_path):
    x, y = _digits(5)
    _write_split(str(tmp_path), "test", x, y, gz=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    raw = bytearray(path.read_bytes())
    raw[2] = 0x0D  # float32 type code: not MNIST
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: bad magic number 0x00000d03"):
        data.load_idx_folder(str(tmp_path))


@pytest.mark.backend_independent
def test_truncated_file_is_reported(tmp_path):
    x, y = _digits(5)
    _write_split(str(tmp_path), "test", x, y, gz=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(_idx_bytes(x)[:-100]))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz: truncated: header says \(5, 28, 28\)"):
        data.load_idx_folder(str(tmp_path))


@pytest.mark.backend_independent
def test_cut_gzip_stream_is_reported(tmp_path):
    x, y = _digits(5)
    _write_split(str(tmp_path), "test", x, y, gz=True)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz: cannot read"):
        data.load_idx_folder(str(tmp_path))


@pytest.mark.backend_independent
def test_random_bytes_named_gz_are_reported(tmp_path):
    x, y = _digits(5)
    _write_split(str(tmp_path), "test", x, y, gz=True)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(os.urandom(500))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz: cannot read"):
        data.load_idx_folder(str(tmp_path))


@pytest.mark.backend_independent
def test_mismatched_counts_are_reported(tmp_path):
    x, y = _digits(5)
    _write_split(str(tmp_path), "test", x, y[:4])
    with pytest.raises(DataError, match=r"4 labels for 5 images"):
        data.load_idx_folder(str(tmp_path))


@pytest.mark.backend_independent
def test_images_without_labels_load_with_a_note_and_an_empty_folder_is_reported(tmp_path):
    with pytest.raises(DataError, match="no MNIST IDX files found"):
        data.load_idx_folder(str(tmp_path))
    x, y = _digits(5)
    data.write_idx(str(tmp_path / "t10k-labels-idx1-ubyte.gz"), y)
    with pytest.raises(DataError, match=r"has the test labels but not t10k-images-idx3-ubyte"):
        data.load_idx_folder(str(tmp_path))
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    data.write_idx(str(tmp_path / "t10k-images-idx3-ubyte.gz"), x)
    splits = data.load(str(tmp_path), val_split=0.4)
    assert splits.y_train is None and splits.y_test is None and len(splits.x_train) == 3
    assert "no labels" in splits.note and "--conditional needs them" in splits.note


@pytest.mark.backend_independent
def test_npz_loading_and_its_errors(tmp_path):
    x, y = _digits(30)
    good = str(tmp_path / "good.npz")
    np.savez(good, x_train=x[:20], y_train=y[:20], x_test=x[20:], y_test=y[20:])
    splits = data.load(good)
    np.testing.assert_array_equal(splits.x_test[..., 0], x[20:])
    np.testing.assert_array_equal(splits.y_train, y[:20])

    pickled = str(tmp_path / "pickled.npz")
    np.savez(pickled, x_train=np.array([{"a": 1}], dtype=object), y_train=y[:1])
    with pytest.raises(DataError, match="not a readable .npz"):
        data.load(pickled)  # object arrays would need pickle, which is never allowed
    junk = tmp_path / "junk.npz"
    junk.write_bytes(os.urandom(300))
    with pytest.raises(DataError, match="junk.npz: not a readable .npz"):
        data.load(str(junk))
    wrong_keys = str(tmp_path / "keys.npz")
    np.savez(wrong_keys, images=x)
    with pytest.raises(DataError, match=r"none of the keys x_train.*has: images"):
        data.load(wrong_keys)


@pytest.mark.backend_independent
@pytest.mark.parametrize("images, labels, message", [
    (np.zeros((3, 28, 27), np.uint8), np.zeros(3, np.uint8), r"expected images shaped \(N, 28, 28\)"),
    (np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8), "no images"),
    (np.zeros((3, 28, 28), np.float32), np.zeros(3, np.uint8), "expected integer values"),
    (np.full((3, 28, 28), 300, np.int32), np.zeros(3, np.uint8), r"values must lie in 0..255, found 300..300"),
    (np.zeros((3, 28, 28), np.uint8), np.full(3, 10, np.uint8), r"values must lie in 0..9"),
    (np.zeros((3, 28, 28), np.uint8), np.zeros((3, 2), np.uint8), r"expected labels shaped \(N,\)"),
])
def test_bad_arrays_are_refused(images, labels, message):
    with pytest.raises(DataError, match=message):
        data.check_arrays(images, labels, "images", "labels")


@pytest.mark.backend_independent
def test_missing_path_is_reported(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        data.load(str(tmp_path / "absent"))


@pytest.mark.backend_independent
def test_real_mnist_test_split(mnist_test_split):
    images, labels = mnist_test_split
    assert images.shape == (10000, 28, 28, 1) and images.dtype == np.uint8
    assert np.bincount(labels, minlength=10).tolist() == MNIST_LABEL_COUNTS
    assert images.mean() == pytest.approx(33.79, abs=0.01)  # the figure in the data's README


@pytest.mark.backend_independent
def test_single_split_folder_is_divided_into_train_and_test(mnist_test_split):
    from conftest import MNIST_DIR

    splits = data.load(MNIST_DIR, val_split=0.2)
    assert (len(splits.x_train), len(splits.x_test)) == (8000, 2000)
    np.testing.assert_array_equal(splits.x_test, mnist_test_split[0][8000:])
    assert "last 2000" in splits.note


@pytest.mark.backend_independent
def test_failed_download_says_how_to_work_offline(monkeypatch):
    import keras

    def unreachable(*args, **kwargs):
        raise OSError("URL fetch failure on https://storage.googleapis.com/...: [Errno -3] name resolution")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", unreachable)
    with pytest.raises(DataError) as e:
        data.load(None, "mnist")
    message = str(e.value)
    assert message.startswith("could not download mnist (URL fetch failure") and "--data PATH" in message
    assert "\n" not in message


@pytest.mark.backend_independent
def test_a_gzip_bomb_is_refused_without_inflating_it(tmp_path):
    from mnist_vae import data

    header = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (10, 28, 28))
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip container
    with open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(squeeze.compress(header + bytes(10 * 784)))
        zeros = bytes(1 << 24)
        for _ in range(64):  # a 1 GB tail that compresses to about 1 MB
            f.write(squeeze.compress(zeros))
        f.write(squeeze.flush())
    data.write_idx(str(tmp_path / "t10k-labels-idx1-ubyte.gz"), np.zeros(10, np.uint8))
    assert os.path.getsize(tmp_path / "t10k-images-idx3-ubyte.gz") < 2 << 20
    tracemalloc.start()
    with pytest.raises(data.DataError, match="has trailing bytes"):
        data.load_idx_folder(str(tmp_path))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 32 << 20, peak  # it stopped reading where the header said the data ends


@pytest.mark.backend_independent
@pytest.mark.parametrize("shape, message", [((0, 28, 28), "declares an empty array (0, 28, 28)"),
                                            ((2**31, 28, 28), "more than this machine's memory can hold")])
def test_idx_headers_declaring_empty_or_impossible_arrays_are_one_line(tmp_path, shape, message):
    header = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in shape)
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(header)
    from mnist_vae import data

    data.write_idx(str(tmp_path / "t10k-labels-idx1-ubyte.gz"), np.zeros(1, np.uint8))
    result = run_main("train", "--data", tmp_path, "--out", tmp_path / "out")
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and message in result.stderr


@pytest.mark.backend_independent
@pytest.mark.slow
def test_black_and_white_pixels_stored_as_booleans_are_read_as_0_and_255(tmp_path, digits):
    from mnist_vae import data

    x, y = digits
    path = str(tmp_path / "bool.npz")
    np.savez(path, x_train=x[:300, ..., 0] > 127, y_train=y[:300], x_test=x[-60:, ..., 0] > 127, y_test=y[-60:])
    splits = data.load(path)
    np.testing.assert_array_equal(splits.x_train[..., 0], np.where(x[:300, ..., 0] > 127, 255, 0))
    assert "pixels are only 0 and 1: read as black and white (0 and 255)" in splits.note
    result = run_main("train", "--data", path, "--epochs", "1", *TINY, "--out", tmp_path, "--run-name", "bw")
    assert result.returncode == 0 and "read as black and white" in result.stdout


@pytest.mark.backend_independent
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


@pytest.mark.backend_independent
@settings(max_examples=100, deadline=None)
@given(content=st.binary(max_size=300))
def test_random_bytes_named_npz_fail_cleanly(content):
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "x.npz")
        with open(path, "wb") as f:
            f.write(content)
        assert _load_or_data_error(path) is None


@pytest.mark.backend_independent
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


def test_binarization_is_seeded_and_repeatable():
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, size=(200, 28, 28, 1), dtype=np.uint8)
    a, b, c = data.binarized(images, 1), data.binarized(images, 1), data.binarized(images, 2)
    assert set(np.unique(a)) <= {0, 255} and np.array_equal(a, b) and not np.array_equal(a, c)
    assert abs(a.mean() - images.mean()) < 1.0  # E[Bernoulli(grey/255)] * 255 = grey
    splits = data.Splits(images[:150], np.zeros(150, np.uint8), images[150:], np.zeros(50, np.uint8), "t")
    static1, static2 = data.apply_binarization(splits, "static", 1), data.apply_binarization(splits, "static", 2)
    dynamic = data.apply_binarization(splits, "dynamic", 1)
    assert np.array_equal(static1.x_test, static2.x_test) and np.array_equal(static1.x_test, dynamic.x_test)
    assert not np.array_equal(static1.x_train, static2.x_train)
    assert np.array_equal(dynamic.x_train, images[:150])  # left grey: drawn anew per batch by the pipeline
    assert data.apply_binarization(splits, "none", 1) is splits

    def epochs(seed):
        stream, _ = pipeline.train_batches(images[:150], 50, seed, epochs=2, dynamic_binarization=True)
        return [batch["image"] for (batch,) in stream]
    first, repeat, other = epochs(3), epochs(3), epochs(4)
    assert all(np.array_equal(p, q) for p, q in zip(first, repeat))
    assert set(np.unique(first[0])) <= {0.0, 1.0}
    # Each pixel is on with probability grey / 255: over 2 epochs x 150 images, the on-rate per pixel
    # position matches the grey level within Monte-Carlo error (300 draws: standard error <= 0.029).
    on_rate = np.concatenate(first).reshape(2, 150, -1).mean(axis=0).mean(axis=0)
    grey = images[:150].reshape(150, -1).mean(axis=0) / 255
    assert np.abs(on_rate - grey).max() < 0.15 and abs(on_rate.mean() - grey.mean()) < 0.005
    assert not all(np.array_equal(p, q) for p, q in zip(first, other))
    resumed, _ = pipeline.train_batches(images[:150], 50, 3, epochs=2, initial_epoch=1, dynamic_binarization=True)
    assert all(np.array_equal(p, q["image"]) for p, (q,) in zip(first[3:], resumed))


def test_the_validation_slice_is_disjoint_from_training_and_fixed_by_the_seed():
    images = unique_images(1000)
    splits = data.Splits(images, np.arange(1000) % 10, unique_images(7), np.zeros(7, int), "synthetic")
    held = data.hold_out_validation(splits, 40, seed=3)
    index = lambda x: x[:, 0, 0, 0].astype(int) + 256 * x[:, 0, 1, 0].astype(int)  # noqa: E731
    train_ids, valid_ids = index(held.x_train), index(held.x_valid)
    assert (len(train_ids), len(valid_ids)) == (960, 40)
    assert not set(train_ids) & set(valid_ids) and set(train_ids) | set(valid_ids) == set(range(1000))
    assert np.all(np.diff(train_ids) > 0)  # the rest keep their order
    np.testing.assert_array_equal(held.y_valid, valid_ids % 10)  # labels follow their images
    assert held.x_test is splits.x_test
    np.testing.assert_array_equal(index(data.hold_out_validation(splits, 40, seed=3).x_valid), valid_ids)
    assert set(index(data.hold_out_validation(splits, 40, seed=4).x_valid)) != set(valid_ids)
    with pytest.raises(data.DataError, match="leaves none"):
        data.hold_out_validation(splits, 1000, seed=3)
