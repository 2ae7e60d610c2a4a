"""export.py: a run's decoder as ONNX, held to Keras' own decoder on the same z by ONNX Runtime."""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, TINY, run_main, to_numpy

pytestmark = [pytest.mark.backend_independent, pytest.mark.slow, pytest.mark.multiprocess,
              pytest.mark.skipif(any(importlib.util.find_spec(n) is None for n in ("tf2onnx", "onnxruntime")),
                                 reason="needs tf2onnx and onnxruntime: pip install -r requirements-export.txt")]
CASES = {"dense": [], "conv": ["--arch", "conv"], "conditional": ["--conditional", "--latent-dim", "3"],
         "continuous-bernoulli": ["--likelihood", "continuous-bernoulli"],
         "mixed-precision": ["--precision", "mixed_bfloat16"],
         "two-stochastic-layers": ["--stochastic-layers", "2", "--activation", "tanh", "--latent-dim", "3"]}


def export(run_dir, env=None):
    return subprocess.run([sys.executable, os.path.join(ROOT, "export.py"), str(run_dir)], capture_output=True,
                          text=True, timeout=300, cwd=ROOT, env=env)


@pytest.mark.parametrize("case", CASES)
def test_the_onnx_decoder_draws_what_keras_draws(case, tmp_path, small_npz):
    import keras
    import onnxruntime

    import losses
    import model
    from mnist_vae import build
    from mnist_vae.runfolder import RunFolder

    trained = run_main("train", "--data", small_npz, "--epochs", "1", *TINY, *CASES[case], "--out", tmp_path,
                       "--run-name", case)
    assert trained.returncode == 0, trained.stderr
    run_dir = tmp_path / case
    result = export(run_dir)
    assert result.returncode == 0 and result.stderr == "", result.stderr[-3000:]
    assert result.stdout.startswith(f"wrote {run_dir / 'decoder.onnx'}: the decoder of epoch 1")
    session = onnxruntime.InferenceSession(str(run_dir / "decoder.onnx"))
    folder = RunFolder(run_dir)
    settings = folder.settings
    conditional = settings.conditional
    assert [i.name for i in session.get_inputs()] == (["z", "label"] if conditional else ["z"])
    assert [o.name for o in session.get_outputs()] == ["logits", "pixel_means"]
    assert all(i.type == "tensor(float)" for i in session.get_inputs())
    rng = np.random.default_rng(0)
    z = rng.normal(size=(16, settings.latent_dim)).astype(np.float32)
    labels = rng.integers(0, 10, 16)
    feeds = {"z": z, **({"label": model.one_hot(labels)} if conditional else {})}
    logits, means = session.run(None, feeds)
    # Keras' own decoder on the same weights, in float32 (the run's own policy for all but the mixed one).
    vae, _ = build.saved_model(folder)
    keras.mixed_precision.set_global_policy("float32")
    if settings.stochastic_layers == 2:  # trained in float32: its decoder (z2 through p(z1|z2)'s mean) as loaded
        decoder = vae.decoder
    else:
        decoder = model.build_decoder(settings.arch, settings.latent_dim, settings.hidden, conditional,
                                      settings.activation)
        decoder.set_weights(vae.decoder.get_weights())
    want = to_numpy(decoder(model.decoder_inputs(vae, z, labels)))
    np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(means, to_numpy(losses.pixel_means(want, vae.likelihood)), rtol=1e-5, atol=1e-5)


def test_without_the_export_packages_it_says_what_to_install(tmp_path, finished_run):
    blocker = tmp_path / "site"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['tf2onnx'] = None  # not installed\n")
    result = export(finished_run, env={**os.environ, "PYTHONPATH": str(blocker)})
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [
        "error: exporting ONNX needs tf2onnx: pip install -r requirements-export.txt"]
    assert not os.path.exists(os.path.join(finished_run, "decoder.onnx"))
