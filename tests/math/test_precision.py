"""Mixed precision: layers compute in 16 bits, the loss and metrics stay float32 and close to float32's."""

import keras
import numpy as np
import pytest
from conftest import TINY, per_example_losses, run_program

from mnist_vae import data, pipeline
from model import build_vae

pytestmark = pytest.mark.backend_core  # CI runs these on PyTorch too (pytest.ini)


def short_training(policy, images):
    keras.mixed_precision.set_global_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        vae = build_vae("dense", 2, hidden=64, seed=0)
        optimizer = keras.optimizers.Adam(1e-3)
        if policy == "mixed_float16":
            # Keras' default first loss scale (2**15) overflows and skips the first few updates, which would
            # make this a comparison of step counts; 2**7 starts without skipping.
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=2**7)
        vae.compile(optimizer=optimizer)
        # The same batches and noise under every policy (drawn by data.py, not in 16 bits by the layer).
        batches, steps = pipeline.train_batches(images[:256], 32, seed=0, epochs=4, noise_dim=2)
        history = vae.fit(batches, epochs=4, steps_per_epoch=steps, verbose=0, shuffle=False).history
        x = data.as_float(images[:4])
        z_mean, _ = vae.encoder(x)
        reconstruction, kl = per_example_losses(vae, x)
        dtype = keras.backend.standardize_dtype
        return vae, history, dtype(z_mean.dtype), dtype(reconstruction.dtype), dtype(kl.dtype)
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.fixture(scope="module")
def images(digits):
    return digits[0][:300]


@pytest.fixture(scope="module")
def float32_history(images):
    return short_training("float32", images)[1]


@pytest.mark.slow
@pytest.mark.parametrize("policy, compute", [("mixed_bfloat16", "bfloat16"), ("mixed_float16", "float16")])
def test_mixed_precision_trains_like_float32(images, float32_history, policy, compute):
    vae, history, code_dtype, rec_dtype, kl_dtype = short_training(policy, images)
    assert code_dtype == compute  # the layers really compute in 16 bits...
    assert rec_dtype == "float32" and kl_dtype == "float32"  # ...the loss terms do not
    assert all(keras.backend.standardize_dtype(v.dtype) == "float32" for v in vae.trainable_weights)
    for key in ("loss", "reconstruction_loss", "kl_loss"):
        assert np.all(np.isfinite(history[key]))
    assert history["loss"][-1] < history["loss"][0]
    assert int(keras.ops.convert_to_numpy(vae.optimizer.iterations.value)) == 32  # every update applied
    # After 32 steps a tiny model lands within 1% of float32 (bfloat16: 8 mantissa bits, float16: 11).
    assert history["loss"][-1] == pytest.approx(float32_history["loss"][-1], rel=0.01)


def test_float16_policy_gets_keras_loss_scaling_automatically():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        vae = build_vae("dense", 2, hidden=8, seed=0)
        vae.compile(optimizer=keras.optimizers.Adam(1e-3))
        assert isinstance(vae.optimizer, keras.optimizers.LossScaleOptimizer)
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.backend_independent
@pytest.mark.slow
@pytest.mark.multiprocess
def test_mixed_precision_runs_keep_the_console_quiet(tmp_path, small_npz):
    for program, args in (("train.py", ["--data", small_npz, "--epochs", "1", *TINY, "--precision", "mixed_float16",
                                        "--backend", "tensorflow", "--out", str(tmp_path), "--run-name", "mp"]),
                          ("evaluate.py", [str(tmp_path / "mp"), "--iw-samples", "7"])):
        result = run_program(program, *args)
        assert result.returncode == 0 and result.stderr == "", (program, result.stderr[-2000:])  # no retracing
