"""mnist_vae/pipeline.py: training batches shuffled by seed and epoch, and padding that carries no weight."""
import numpy as np
import pytest

from mnist_vae import pipeline

pytestmark = pytest.mark.backend_independent


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


