"""Several devices train exactly like one: on TensorFlow, two logical devices of one CPU (MirroredStrategy)
or two worker processes talking over 127.0.0.1 (MultiWorkerMirroredStrategy); on JAX, two CPU devices under
Keras' DataParallel. Batches that split unevenly over the replicas (an odd global batch, an epoch's short
last batch) included. Each engine runs in processes of its own, whatever backend the suite runs on."""
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, read_history, run_main  # noqa: E402

pytestmark = pytest.mark.backend_independent  # each test starts the backends it needs

# Runs in a fresh process: the CPU can only be split before TensorFlow initialises its devices.
SCRIPT = r"""
import json, os, sys
os.environ["KERAS_BACKEND"] = "tensorflow"
sys.path.insert(0, ROOT)
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, numpy as np
from mnist_vae import build, data, settings
from mnist_vae.distribute import Devices
from model import build_vae

images = data.load_idx_folder(MNIST)["test"][0][:251]
results = {}
for batch_size in (64, 51):  # 64 splits 32/32, 51 splits 26/25; the last batches, 59 and 47, split unevenly
    args, _ = settings.parse_args(["--batch-size", str(batch_size), "--backend", "tensorflow"])
    for name in ("none", "mirrored"):
        devices = Devices("tensorflow", name)
        devices.start()
        keras.utils.set_random_seed(0)
        with devices.scope():
            vae = build_vae("dense", 2, 32, seed=0)
        batches, steps = devices.training_batches(images, batch_size, seed=0, epochs=1, noise_dim=2)
        with devices.scope():
            vae.compile(optimizer=keras.optimizers.Adam(1e-3), **build.speed_options(args, steps, devices))
            vae.build_optimizer()
        devices.prepare(vae)
        history = vae.fit(batches, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False).history
        results[f"{name}-{batch_size}"] = {
            "replicas": devices.replicas,
            "history": {k: float(v[-1]) for k, v in history.items()},
            "weights": [w.tolist() for w in vae.get_weights()],
        }
print("RESULTS" + json.dumps(results))
"""


@pytest.mark.slow
@pytest.mark.multiprocess
def test_mirrored_on_two_logical_cpus_equals_one_device(tmp_path):
    import numpy as np
    import pytest
    from conftest import MNIST_DIR

    if not os.path.isdir(MNIST_DIR):
        pytest.skip(f"real MNIST not found at {MNIST_DIR}")
    script = SCRIPT.replace("ROOT", repr(ROOT)).replace("MNIST", repr(MNIST_DIR))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout.split("RESULTS", 1)[1])
    for batch_size in (64, 51):
        one, two = results[f"none-{batch_size}"], results[f"mirrored-{batch_size}"]
        assert (one["replicas"], two["replicas"]) == (1, 2)
        for key, value in one["history"].items():
            assert two["history"][key] == pytest.approx(value, rel=1e-4), (batch_size, key)
        for a, b in zip(one["weights"], two["weights"]):
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-6)


def _free_ports(n):
    """n distinct ports that are free now (the sockets are held open until all are chosen)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.mark.slow
@pytest.mark.multiprocess
def test_multiworker_two_processes_on_localhost_match_each_other_and_one_device(tmp_path):
    import pytest
    from conftest import MNIST_DIR

    if not os.path.isdir(MNIST_DIR):
        pytest.skip(f"real MNIST not found at {MNIST_DIR}")
    common = [sys.executable, os.path.join(ROOT, "train.py"), "--backend", "tensorflow", "--data", MNIST_DIR,
              "--limit", "251",
              "--epochs", "1", "--batch-size", "51", "--hidden", "32", "--iw-samples", "5", "--out", str(tmp_path)]
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    workers = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        workers.append(subprocess.Popen(common + ["--distribute", "multiworker", "--run-name", f"multiworker{index}"],
                                        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    single = subprocess.run(common + ["--run-name", "single", "--jit", "off"], capture_output=True, text=True,
                            timeout=300)
    outputs = []
    try:
        for worker in workers:
            outputs.append(worker.communicate(timeout=300)[0])
    finally:  # never leave a worker waiting for its peer
        for worker in workers:
            worker.kill()
    assert single.returncode == 0, single.stderr[-2000:]
    for worker, output in zip(workers, outputs):
        assert worker.returncode == 0, output[-3000:]
    digests = [re.findall(r"weights after epoch 1 have sha256 (\w+)", output) for output in outputs]
    assert len(digests[0]) == 1 and digests[0] == digests[1], digests
    # Only the chief (worker 0) wrote a run folder; worker 1 deleted its scratch copy.
    assert sorted(os.listdir(tmp_path)) == ["multiworker0", "single"]
    assert os.path.exists(tmp_path / "multiworker0" / "model.keras")
    one, two = read_history(tmp_path / "single"), read_history(tmp_path / "multiworker0")
    for key, value in one[0].items():
        assert two[0][key] == pytest.approx(value, rel=1e-4), key


@pytest.mark.slow
@pytest.mark.multiprocess
def test_jax_data_parallel_on_two_cpu_devices_equals_one_device(tmp_path):
    """Keras' DataParallel over two CPU devices (XLA's host-platform split): one epoch of 251 images in
    batches of 51 (each padded with a zero-weight row to split 26/26, the last batch of 47 to 24/24)."""
    import pytest
    from conftest import MNIST_DIR

    if not os.path.isdir(MNIST_DIR):
        pytest.skip(f"real MNIST not found at {MNIST_DIR}")

    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    common = [sys.executable, os.path.join(ROOT, "train.py"), "--backend", "jax", "--data", MNIST_DIR, "--limit", "251",
              "--epochs", "1", "--batch-size", "51", "--hidden", "32", "--iw-samples", "5", "--out", str(tmp_path)]
    # Both runs at once: start-up is most of their time.
    runs = [subprocess.Popen(common + ["--run-name", name] + flags, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env)
             for name, flags in (("single", []), ("parallel", ["--distribute", "mirrored"]))]
    outputs = [run.communicate(timeout=300) for run in runs]
    for run, (_, stderr) in zip(runs, outputs):
        assert run.returncode == 0, stderr[-3000:]
    assert "DataParallel over 2 devices" in outputs[1][0]
    one, two = read_history(tmp_path / "single"), read_history(tmp_path / "parallel")
    for key, value in one[0].items():
        assert two[0][key] == pytest.approx(value, rel=1e-4), key
    from conftest import checkpoint_arrays

    a, b = checkpoint_arrays(str(tmp_path / "single")), checkpoint_arrays(str(tmp_path / "parallel"))
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-4, atol=1e-6, err_msg=key)


def test_unsupported_combinations_are_one_line(tmp_path):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--backend", "torch", "--distribute",
                             "mirrored", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)

    if importlib.util.find_spec("torch") is None:
        assert "needs the torch package" in result.stderr
    else:
        assert result.stderr.strip().splitlines() == [
            "error: --distribute mirrored is not available on the torch backend (supported: tensorflow: "
            "none/mirrored/multiworker, jax: none/mirrored, torch: none)"]
    assert result.returncode == 1 and os.listdir(tmp_path) == []


def test_a_saved_distribution_the_new_backend_lacks_says_how_to_go_on(tmp_path, finished_run):
    run = tmp_path / "mirrored"
    shutil.copytree(finished_run, run)
    config = json.load(open(run / "config.json"))
    json.dump({**config, "distribute": "mirrored", "backend": "jax"}, open(run / "config.json", "w"))
    result = run_main("train", "--resume", run, "--backend", "torch", "--epochs", "3")
    assert result.returncode == 2 and result.stderr.count("\n") == 1  # flags that do not go together
    assert "trained with --distribute mirrored, which the torch backend does not offer: add --distribute none" \
        in result.stderr
