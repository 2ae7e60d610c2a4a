"""mnist_vae/build.py and the family table's arithmetic (mnist_vae/families.py): the memory and step checks that
refuse a run before it starts, and the check that a saved model is the one its run's settings build."""
import numpy as np
import pytest

from mnist_vae import build, families, settings
from mnist_vae.config import from_saved
from mnist_vae.rundir import RunError


@pytest.mark.parametrize("arch, hidden, conditional, latent_dim, activation, prior", [
    ("dense", 512, False, 2, "relu", "standard"), ("dense", "200,100", True, 50, "relu", "standard"),
    ("conv", 512, False, 2, "relu", "standard"), ("conv", 512, True, 7, "relu", "standard"),
    ("dense", "300,300", False, 40, "gated", "vampprior"), ("conv", 512, False, 3, "relu", "vampprior")])
def test_the_counted_weights_are_those_of_the_built_model(arch, hidden, conditional, latent_dim, activation, prior):
    config = args(arch=arch, hidden=hidden, conditional=conditional, latent_dim=latent_dim, activation=activation,
                  prior=prior, pseudo_inputs=7)
    vae = build.model_of(config)
    trainable = sum(int(np.prod(v.shape)) for v in vae.trainable_variables)  # the networks and pseudo-inputs
    assert families.of(config).parameters(config) == trainable


def args(**changes):
    return from_saved({**settings.DEFAULTS, "k": 1, **changes})


@pytest.mark.backend_independent
def test_a_run_too_large_or_too_long_is_refused_before_it_starts():
    build.check_run_fits(args(), 60_000)  # the default run
    with pytest.raises(RunError, match="--arch conv --latent-dim 10000000: the model would have 94,100 million"):
        build.check_run_fits(args(arch="conv", latent_dim=10_000_000), 60_000)
    with pytest.raises(RunError, match="one training step would decode"):
        build.check_run_fits(args(objective="iwae", k=100_000, batch_size=1000), 60_000)
    with pytest.raises(RunError, match="60,000,000,000 steps, more than the 2,147,483,647"):
        build.check_run_fits(args(epochs=1_000_000, batch_size=1), 60_000)


def test_a_model_that_is_not_the_runs_own_is_refused():
    config = from_saved({**settings.DEFAULTS, "hidden": 16, "k": 1})
    build.check_model_matches(build.model_of(args(hidden=16)), config, "model.keras")  # its own: fine
    for other, message in ((args(hidden=16, latent_dim=50), "its z has 50 dimensions where config.json says 2"),
                           (args(hidden=17), "its layers are not those"),
                           (args(hidden=16, activation="tanh"), "its layers are not those"),
                           (args(hidden=16, arch="conv"), "its layers are not those"),
                           (args(hidden=16, conditional=True), "its layers are not those"),
                           (args(hidden=16, likelihood="continuous-bernoulli"), "its layers are not those")):
        with pytest.raises(RunError, match=message):
            build.check_model_matches(build.model_of(other), config, "model.keras")
    import keras

    with pytest.raises(RunError, match="model.keras is a Sequential, not a VAE of model.py"):
        build.check_model_matches(keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)]), config,
                                     "model.keras")


def _peak_bytes(argv):
    """The peak resident memory of `python train.py ARGV` run to its end, from the kernel's own count."""
    import os
    import subprocess
    import sys

    from conftest import ROOT

    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), *map(str, argv)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    assert status == 0, proc.stderr.read().decode()[-2000:]
    return usage.ru_maxrss * 1024  # KB on Linux


@pytest.mark.slow
@pytest.mark.multiprocess
@pytest.mark.backend_independent  # measured on the default backend, whose fused steps the count is checked against
def test_the_vampprior_memory_count_covers_measured_peaks_at_two_sizes(tmp_path):
    """The check counts what a run holds per pseudo-input (weights with Adam, the step's pass of the pseudo-inputs
    through the encoder, the mixture's terms) and the evaluation's flat block: at two sizes the count covers the
    measured peak, and its growth per pseudo-input is neither below the measured growth nor far above it."""
    from conftest import MNIST_DIR

    from mnist_vae.config import resolve

    sizes, peaks, counted = (24_000, 48_000), [], []  # sizes where the growth is linear (measured: 8,000 grows faster)
    for size in sizes:
        flags = ["--preset", "vampprior", "--pseudo-inputs", size, "--epochs", "1", "--validation", "100",
                 "--iw-samples", "10", "--no-sample-quality", "--limit", "800"]  # the bound at its rows cap
        peaks.append(_peak_bytes([*flags, "--data", MNIST_DIR, "--out", tmp_path]))
        counted.append(families.vampprior_bytes(resolve([str(f) for f in flags])[0]))
    assert all(c >= p for c, p in zip(counted, peaks)), (counted, peaks)
    measured = (peaks[1] - peaks[0]) / (sizes[1] - sizes[0])
    per_input = (counted[1] - counted[0]) / (sizes[1] - sizes[0])
    assert measured <= per_input <= 3 * measured, (per_input, measured)
