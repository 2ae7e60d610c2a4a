"""mnist_vae/build.py: the memory and step checks that refuse a run before it starts, and the check that a
saved model is the one its run's settings build."""
from types import SimpleNamespace

import numpy as np
import pytest

from mnist_vae import build, settings
from mnist_vae.rundir import RunError


@pytest.mark.parametrize("arch, hidden, conditional, latent_dim, activation, prior", [
    ("dense", 512, False, 2, "relu", "standard"), ("dense", "200,100", True, 50, "relu", "standard"),
    ("conv", 512, False, 2, "relu", "standard"), ("conv", 512, True, 7, "relu", "standard"),
    ("dense", "300,300", False, 40, "gated", "vampprior"), ("conv", 512, False, 3, "relu", "vampprior")])
def test_the_counted_weights_are_those_of_the_built_model(arch, hidden, conditional, latent_dim, activation, prior):
    config = args(arch=arch, hidden=hidden, conditional=conditional, latent_dim=latent_dim, activation=activation,
                  prior=prior, pseudo_inputs=7)
    vae = build.model_of(config)
    pseudo_inputs = 7 if prior == "vampprior" else 0
    trainable = sum(int(np.prod(v.shape)) for v in vae.trainable_variables)  # the networks and pseudo-inputs
    assert build.parameter_count(arch, latent_dim, hidden, conditional, pseudo_inputs, activation) == trainable


def args(**changes):
    return SimpleNamespace(**{**settings.DEFAULTS, "k": 1, **changes})


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
    config = {**settings.DEFAULTS, "hidden": 16, "k": 1}
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
