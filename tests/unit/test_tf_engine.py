"""mnist_vae/tf_engine.py: tf.data gives the NumPy pipeline's batches value for value, and TF_CONFIG names the chief
or is refused in one line."""
import json

import numpy as np
import pytest

from mnist_vae import pipeline

pytestmark = pytest.mark.backend_independent


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


def test_tf_config_names_the_chief_and_bad_cluster_descriptions_are_one_line_errors():
    import pytest

    from mnist_vae.cli import UserError
    from mnist_vae.tf_engine import Worker

    def worker(cluster, task_type, index):
        return Worker(json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}}))

    two = {"worker": ["a:1", "b:2"]}
    assert (worker(two, "worker", 0).chief, worker(two, "worker", 1).chief) == (True, False)
    with_chief = {"chief": ["c:0"], "worker": ["a:1", "b:2"]}
    assert [worker(with_chief, t, i).chief for t, i in (("chief", 0), ("worker", 0), ("worker", 1))] == \
        [True, False, False]
    assert worker(with_chief, "worker", 1).count == 3
    assert Worker(None).chief and Worker(None).count == 1  # no TF_CONFIG: a cluster of one
    for bad, message in (("{bad", "not a valid cluster description"),
                         (json.dumps({"cluster": two}), "not a valid cluster description"),
                         (json.dumps({"cluster": {**two, "ps": ["p:3"]}, "task": {"type": "worker", "index": 0}}),
                          "ps tasks"),
                         (json.dumps({"cluster": two, "task": {"type": "worker", "index": 2}}), "not in its cluster"),
                         (json.dumps({"cluster": two, "task": {"type": "chief", "index": 0}}), "not in its cluster")):
        with pytest.raises(UserError, match=message) as error:
            Worker(bad)
        assert "\n" not in str(error.value)
