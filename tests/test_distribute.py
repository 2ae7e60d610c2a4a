"""tf.distribute: two replicas (the CPU split into two logical devices) train exactly like one device.

Keras starts a distributed fit by averaging the first batch over the replicas, which needs equal replica
batches, so train.py asks for a --batch-size that is a multiple of the replica count; batches that still
split unevenly (an epoch's last one) are checked here."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs in a fresh process: the CPU can only be split before TensorFlow initialises its devices.
SCRIPT = r"""
import json, sys
sys.path.insert(0, ROOT)
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, numpy as np
import data, train
from model import build_vae

images = data.load_idx_folder(MNIST)["test"][0][:251]
results = {}
for batch_size in (64, 50):  # the last batches, 59 and 1 images, split 30/29 and 1/0 over the replicas
    args, _ = train.parse_args(["--batch-size", str(batch_size)])
    for name in ("none", "mirrored"):
        strategy = train.make_strategy(name, tf)
        keras.utils.set_random_seed(0)
        with strategy.scope():
            vae = build_vae("dense", 2, 32, seed=0)
        ds, steps = data.train_dataset(images, batch_size, seed=0, epochs=1, noise_dim=2)
        with strategy.scope():
            vae.compile(optimizer=keras.optimizers.Adam(1e-3), **train.speed_options(args, steps, tf))
        history = vae.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False).history
        results[f"{name}-{batch_size}"] = {
            "replicas": strategy.num_replicas_in_sync,
            "history": {k: float(v[-1]) for k, v in history.items()},
            "weights": [w.tolist() for w in vae.get_weights()],
        }
print("RESULTS" + json.dumps(results))
"""


def test_mirrored_on_two_logical_cpus_equals_one_device(tmp_path):
    from conftest import MNIST_DIR
    import numpy as np
    import pytest

    if not os.path.isdir(MNIST_DIR):
        pytest.skip(f"real MNIST not found at {MNIST_DIR}")
    script = SCRIPT.replace("ROOT", repr(ROOT)).replace("MNIST", repr(MNIST_DIR))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout.split("RESULTS", 1)[1])
    for batch_size in (64, 50):
        one, two = results[f"none-{batch_size}"], results[f"mirrored-{batch_size}"]
        assert (one["replicas"], two["replicas"]) == (1, 2)
        for key, value in one["history"].items():
            assert two["history"][key] == pytest.approx(value, rel=1e-4), (batch_size, key)
        for a, b in zip(one["weights"], two["weights"]):
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-6)
