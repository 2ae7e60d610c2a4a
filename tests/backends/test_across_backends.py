"""One model on every Keras 3 backend: the same weights, batch and noise give the same training step on
TensorFlow, JAX and PyTorch; a model or checkpoint saved under one backend reloads under every other.

Each backend runs in a process of its own (a process has one Keras backend). Backends that are not
installed are skipped with a reason; the comparisons need at least two."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import (
    ROOT,  # noqa: E402  (the repository root)
    run_main,
)

BACKENDS = [b for b in ("tensorflow", "jax", "torch") if importlib.util.find_spec(b) is not None]
# Each test starts its backends itself.
pytestmark = [pytest.mark.backend_independent, pytest.mark.slow, pytest.mark.multiprocess]
needs_two = pytest.mark.skipif(len(BACKENDS) < 2, reason=f"only {BACKENDS} installed; comparing needs two backends")

# One SGD step from given weights on a given batch (its update is -lr * gradient, so the weights compare
# the gradients themselves; Adam's first step, about lr * sign(gradient), would magnify float32 rounding
# of near-zero gradients). Then one Adam step, saved as a model and a checkpoint for the reloading test.
PRELUDE = r"""
import sys
import numpy as np
sys.path.insert(0, ROOT)
import keras
from mnist_vae import checkpoints
from model import build_vae

c = keras.ops.convert_to_numpy
"""

STEP = PRELUDE + r"""
for ARCH in ("dense", "conv"):
  work = WORK + "/" + ARCH
  start = np.load(work + "/start.npz")
  batch = dict(np.load(work + "/batch.npz"))
  out = {}
  for optimizer in (keras.optimizers.SGD(0.1), keras.optimizers.Adam(1e-2)):
    vae = build_vae(ARCH, 3, hidden=16, beta=0.5, seed=0)
    vae.compile(optimizer=optimizer)
    vae.build_optimizer()
    vae.set_weights([start[f"w{i}"] for i in range(len(start.files))])
    if not out:
      reconstruction, kl = (c(t) for t in vae.loss_terms(batch, vae(batch))[:2])
      logs = vae.train_on_batch(batch, return_dict=True)
      out = {"reconstruction": reconstruction, "kl": kl, **{"log_" + k: np.float32(v) for k, v in logs.items()}}
      out.update({f"w{i}": w for i, w in enumerate(vae.get_weights())})
    else:
      vae.train_on_batch(batch)
      out.update({f"opt{i}": c(v.value) for i, v in enumerate(vae.optimizer.variables)})
      out["own_logits"] = c(vae.decoder(np.load(work + "/z.npy")))  # this backend's decoding of what it saves
  np.savez(work + "/" + keras.backend.backend() + "-step.npz", **out)
  vae.save(work + "/" + keras.backend.backend() + ".keras")
  checkpoints.write_variables(work + "/" + keras.backend.backend() + ".variables.npz", checkpoints.snapshot(vae))
"""

# Reload every other backend's model (safe mode) and checkpoint; decode the same z.
RELOAD = PRELUDE + r"""
for ARCH in ("dense", "conv"):
  work = WORK + "/" + ARCH
  z = np.load(work + "/z.npy")
  out = {}
  for source in SOURCES:
    loaded = keras.saving.load_model(work + "/" + source + ".keras")
    out[source + "-logits"] = c(loaded.decoder(z))
    vae = build_vae(ARCH, 3, hidden=16, beta=0.5, seed=0)
    vae.compile(optimizer=keras.optimizers.Adam(1e-2))
    checkpoints.restore(vae, work, {"weights": "../" + source + ".variables.npz"})
    out[source + "-ckpt-logits"] = c(vae.decoder(z))
    for i, v in enumerate(vae.optimizer.variables):
      out[f"{source}-opt{i}"] = c(v.value)
  np.savez(work + "/" + keras.backend.backend() + "-reload.npz", **out)
"""


def _run_each(script, backends, work, **extra):
    """script once per backend, each in its own process, all at once (start-up is most of their time)."""
    processes = {}
    for backend in backends:
        code = script.replace("ROOT", repr(ROOT)).replace("WORK", repr(str(work)))
        for name, value in extra.items():
            code = code.replace(name, repr(value(backend) if callable(value) else value))
        processes[backend] = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                              stderr=subprocess.PIPE, text=True,
                                              env={**os.environ, "KERAS_BACKEND": backend})
    for backend, process in processes.items():
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, f"{backend}: {stderr[-3000:]}"


@needs_two
def test_one_step_and_reloading_agree_across_backends(tmp_path):
    """For the dense and the conv model: one SGD step from the same weights on the same batch and noise
    gives the same loss terms and updated weights (1e-5) on every installed backend; a model.keras and a
    checkpoint saved under each backend reload under every other and decode z to the logits the saving
    backend computed itself."""
    from mnist_vae import pipeline

    rng = np.random.default_rng(0)
    for arch in ("dense", "conv"):
        work = tmp_path / arch
        os.makedirs(work / "checkpoint")  # checkpoints.restore reads <run>/checkpoint/<name>
        images = (rng.random((12, 28, 28, 1)) * 255).astype(np.uint8)
        batch = pipeline.make_batch(images, seed=1, epoch=0, step=0, stream=pipeline.NOISE_STREAM, noise_dim=3)
        np.savez(work / "batch.npz", **batch)
        # Starting weights from NumPy, not from any backend's initialisers (which differ between backends).
        start = [rng.normal(scale=0.1, size=s).astype(np.float32) for s in _weight_shapes(arch)]
        start[0] = np.float32(0.5)  # kl_weight = beta
        start[1:3] = [np.int32(0), np.int32(-1)]  # steps taken, first non-finite step
        np.savez(work / "start.npz", **{f"w{i}": w for i, w in enumerate(start)})
        np.save(work / "z.npy", rng.normal(size=(5, 3)).astype(np.float32))
    _run_each(STEP, BACKENDS, tmp_path)
    _run_each(RELOAD, BACKENDS, tmp_path, SOURCES=lambda backend: [b for b in BACKENDS if b != backend])
    for arch in ("dense", "conv"):
        work = tmp_path / arch
        start = np.load(work / "start.npz")
        steps = {b: np.load(work / f"{b}-step.npz") for b in BACKENDS}
        reference = steps[BACKENDS[0]]
        # Sanity: the step moved the weights and the terms are the summed ones (KL over 3 dims, BCE over 784 px).
        assert not np.allclose(reference["w5"], start["w5"])
        assert reference["log_loss"] == pytest.approx(
            np.mean(reference["reconstruction"] + 0.5 * reference["kl"]), rel=1e-5)
        for backend in BACKENDS[1:]:
            for key in (k for k in reference.files if not k.startswith("opt") and k != "own_logits"):
                np.testing.assert_allclose(steps[backend][key], reference[key], rtol=1e-5, atol=1e-6,
                                           err_msg=f"{arch}: {backend} vs {BACKENDS[0]}: {key}")
        for backend in BACKENDS:
            reloaded = np.load(work / f"{backend}-reload.npz")
            for source in (b for b in BACKENDS if b != backend):
                # Loaded here, saved there: the same logits as the saving backend computed itself.
                for key in ("-logits", "-ckpt-logits"):
                    np.testing.assert_allclose(reloaded[source + key], steps[source]["own_logits"], rtol=1e-5,
                                               atol=1e-5, err_msg=f"{arch}: {source} read by {backend}{key}")
                i = 0
                while f"{source}-opt{i}" in reloaded.files:  # the optimizer state crosses backends too
                    np.testing.assert_allclose(reloaded[f"{source}-opt{i}"], steps[source][f"opt{i}"], rtol=1e-6)
                    i += 1
                assert i > 2


def _weight_shapes(arch):
    from model import build_vae  # on the suite's backend: the shapes are the same on every backend

    return [tuple(w.shape) for w in build_vae(arch, 3, hidden=16, seed=0).get_weights()]


def test_missing_backend_package_is_one_line_before_any_data_is_loaded(tmp_path):
    # A Python in which the jax package cannot be imported, as on a machine without it.
    blocker = tmp_path / "site"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['jax'] = None  # import jax fails\n")
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["PYTHONPATH"] = str(blocker)
    keras_home = tmp_path / "keras_home"  # Keras' own config file names the backend when nothing else does
    keras_home.mkdir()
    (keras_home / "keras.json").write_text('{"backend": "jax", "floatx": "float32"}')
    for argv, extra_env in ((["--backend", "jax"], {}), ([], {"KERAS_BACKEND": "jax"}),
                            ([], {"KERAS_HOME": str(keras_home)})):
        result = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *argv,
                                 "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")],
                                capture_output=True, text=True, timeout=60, env={**env, **extra_env})
        assert result.returncode == 1
        assert result.stderr.strip().splitlines() == [
            "error: the jax backend needs the jax package, which is not installed: pip install jax"]


@pytest.mark.skipif(BACKENDS != ["tensorflow", "jax", "torch"], reason="needs all three backends")
def test_one_run_trained_on_jax_resumed_on_torch_evaluated_on_tensorflow(tmp_path, small_npz):
    """Training, saving, the figures, --resume and evaluate.py across the three backends: a run starts
    on JAX, continues on PyTorch and is evaluated on TensorFlow (this suite's backend, in this process).
    The run is a conditional model trained with the IWAE objective: the plain ELBO model's steps and
    reloads are compared across backends above, and these two add their own inputs (labels, k draws)."""
    import keras

    def run(script, *args):
        return subprocess.run([sys.executable, os.path.join(ROOT, script), *args], capture_output=True, text=True,
                              timeout=300, cwd=ROOT)

    run_dir = str(tmp_path / "r")
    first = run("train.py", "--backend", "jax", "--data", small_npz, "--epochs", "1", "--batch-size", "32",
                "--hidden", "64", "--iw-samples", "10", "--conditional", "--objective", "iwae", "--k", "2",
                "--out", str(tmp_path), "--run-name", "r")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "backend: jax" in first.stdout
    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert config["backend"] == "jax" and "jax" in config["versions"]
    assert (config["conditional"], config["objective"], config["k"]) == (True, "iwae", 2)
    resumed = run("train.py", "--resume", run_dir, "--epochs", "2", "--backend", "torch")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "backend: torch" in resumed.stdout and "resuming" in resumed.stdout
    assert json.load(open(os.path.join(run_dir, "config.json")))["backend"] == "torch"
    for name in ("model.keras", "eval.json", "metrics.json", "loss.png", "samples.png", "latent_manifold.png",
                 "progress.gif"):
        assert os.path.getsize(os.path.join(run_dir, name)) > 0, name
    rows = open(os.path.join(run_dir, "history.csv")).read().strip().splitlines()
    assert len(rows) == 3  # header and two epochs
    if keras.backend.backend() == "tensorflow":
        evaluated = run_main("evaluate", run_dir, "--iw-samples", "10")
    else:
        evaluated = run("evaluate.py", run_dir, "--backend", "tensorflow", "--iw-samples", "10")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "evaluated on tensorflow" in evaluated.stdout
    before = json.load(open(os.path.join(run_dir, "metrics.json")))
    after = json.load(open(os.path.join(run_dir, "eval.json")))
    # The same model and fixed noise on another backend: the same held-out numbers.
    assert after["negative_elbo"] == pytest.approx(before["loss"], rel=1e-4)
