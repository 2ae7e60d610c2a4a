"""IDX and .npz reading, validation messages, the real MNIST test split, and the training pipeline."""
import gzip
import os

import numpy as np
import pytest

from mnist_vae import data, pipeline
from mnist_vae.data import DataError

pytestmark = pytest.mark.backend_independent

MNIST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _digits(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8), rng.integers(0, 10, size=n, dtype=np.uint8)


def _write_split(folder, split, images, labels, gz=True):
    stem = {"train": "train", "test": "t10k"}[split]
    ext = ".gz" if gz else ""
    data.write_idx(os.path.join(folder, f"{stem}-images-idx3-ubyte{ext}"), images)
    data.write_idx(os.path.join(folder, f"{stem}-labels-idx1-ubyte{ext}"), labels)


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


def _idx_bytes(array):
    path_bytes = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return path_bytes + array.tobytes()


def test_bad_magic_is_reported_with_the_file_name(tmp_path):
    x, y = _digits(5)
    _write_split(str(tmp_path), "test", x, y, gz=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    raw = bytearray(path.read_bytes())
    raw[2] = 0x0D  # float32 type code: not MNIST
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: bad magic number 0x00000d03"):
        data.load_idx_folder(str(tmp_path))


def test_truncated_file_is_reported(tmp_path):
    x, y = _digits(5)
    _write_split(str(tmp_path), "test", x, y, gz=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(_idx_bytes(x)[:-100]))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz: truncated: header says \(5, 28, 28\)"):
        data.load_idx_folder(str(tmp_path))


def test_cut_gzip_stream_is_reported(tmp_path):
    x, y = _digits(5)
    _write_split(str(tmp_path), "test", x, y, gz=True)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz: cannot read"):
        data.load_idx_folder(str(tmp_path))


def test_random_bytes_named_gz_are_reported(tmp_path):
    x, y = _digits(5)
    _write_split(str(tmp_path), "test", x, y, gz=True)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(os.urandom(500))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz: cannot read"):
        data.load_idx_folder(str(tmp_path))


def test_mismatched_counts_are_reported(tmp_path):
    x, y = _digits(5)
    _write_split(str(tmp_path), "test", x, y[:4])
    with pytest.raises(DataError, match=r"4 labels for 5 images"):
        data.load_idx_folder(str(tmp_path))


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


def test_missing_path_is_reported(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        data.load(str(tmp_path / "absent"))


def test_real_mnist_test_split(mnist_test_split):
    images, labels = mnist_test_split
    assert images.shape == (10000, 28, 28, 1) and images.dtype == np.uint8
    assert np.bincount(labels, minlength=10).tolist() == MNIST_LABEL_COUNTS
    assert images.mean() == pytest.approx(33.79, abs=0.01)  # the figure in the data's README


def test_single_split_folder_is_divided_into_train_and_test(mnist_test_split):
    from conftest import MNIST_DIR

    splits = data.load(MNIST_DIR, val_split=0.2)
    assert (len(splits.x_train), len(splits.x_test)) == (8000, 2000)
    np.testing.assert_array_equal(splits.x_test, mnist_test_split[0][8000:])
    assert "last 2000" in splits.note


def test_training_batches_shuffle_by_seed_and_epoch():
    images = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1) * np.ones((1, 28, 28, 1), np.uint8)
    stream, steps = pipeline.train_batches(images, batch_size=4, seed=3, epochs=3, noise_dim=2)
    assert steps == 3
    batches = [b for (b,) in stream]
    assert [len(b["image"]) for b in batches] == [4, 4, 2] * 3
    assert batches[0]["image"].dtype == np.float32 and batches[0]["image"].max() <= 9 / 255 + 1e-7
    assert batches[0]["eps"].shape == (4, 2) and batches[0]["eps"].dtype == np.float32
    np.testing.assert_allclose([b["weight"].sum() for b in batches], 1.0, rtol=1e-6)  # 1/B per image
    orders = [np.concatenate([b["image"] for b in batches[3 * e: 3 * e + 3]])[:, 0, 0, 0] * 255 for e in range(3)]
    for order in orders:
        assert sorted(np.rint(order).astype(int)) == list(range(10))  # every image once per epoch
    assert not np.array_equal(orders[0], orders[1])
    # Starting at epoch 2 gives epoch 2's batches: resuming does not depend on the epochs already run.
    resumed, _ = pipeline.train_batches(images, batch_size=4, seed=3, epochs=3, initial_epoch=2, noise_dim=2)
    for (got,), want in zip(resumed, batches[6:]):
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])


def test_padding_for_equal_device_shares_carries_zero_weight():
    images = np.full((5, 28, 28, 1), 255, np.uint8)
    (batch,) = pipeline.make_batch(images, seed=0, epoch=0, step=0, stream=pipeline.NOISE_STREAM, noise_dim=3,
                                   pad_to=4),
    assert len(batch["image"]) == len(batch["eps"]) == len(batch["weight"]) == 8
    np.testing.assert_allclose(batch["weight"], [0.2] * 5 + [0.0] * 3)
    assert not batch["image"][5:].any() and not batch["eps"][5:].any()
    unpadded = pipeline.make_batch(images, seed=0, epoch=0, step=0, stream=pipeline.NOISE_STREAM, noise_dim=3)
    np.testing.assert_array_equal(batch["eps"][:5], unpadded["eps"])  # padding changes no real row


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


def test_tensorflow_pipeline_gives_the_same_batches_as_the_numpy_one():
    """tf.data (how TensorFlow is fed, fast) and the generator (JAX, PyTorch): value for value, dynamic
    binarization and a short last batch included, from a resumed epoch too."""
    pytest.importorskip("tensorflow")
    from mnist_vae import tf_engine

    images = np.random.default_rng(7).integers(0, 256, size=(45, 28, 28, 1), dtype=np.uint8)
    labels = np.arange(45, dtype=np.uint8) % 10
    # One z per image (the ELBO); k = 3 per image with the labels a conditional model reads (IWAE, CVAE).
    for initial_epoch, noise, y in ((0, 4, None), (1, 4, None), (1, (3, 4), labels)):
        stream, steps = pipeline.train_batches(images, 16, seed=5, epochs=3, initial_epoch=initial_epoch,
                                           dynamic_binarization=True, noise_dim=noise, labels=y)
        dataset = tf_engine.train_dataset(images, 16, seed=5, epochs=3, initial_epoch=initial_epoch,
                                           dynamic_binarization=True, noise_dim=noise, labels=y)
        pairs = list(zip(stream, dataset))
        assert len(pairs) == steps * (3 - initial_epoch) and steps == 3
        for (want,), (got,) in pairs:
            assert want["eps"].shape[1:] == tuple(np.atleast_1d(noise))
            assert ("label" in want) == (y is not None)
            assert set(got) == set(want)
            for key in want:
                np.testing.assert_array_equal(got[key].numpy(), want[key], err_msg=key)
