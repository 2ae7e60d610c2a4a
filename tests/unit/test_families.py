"""mnist_vae/families.py: the table picks each built-in family from the settings and refuses what a family cannot
train; and a fourth family, defined in this file alone (a VAE under a fixed mixture of two Gaussians), lands as
one module and one row: it builds, trains, evaluates, draws its figures and progress frames, writes its explorer
page and reloads, with no edit to the package. On every backend the suite runs on."""
import math

import keras
import numpy as np
import pytest
from conftest import to_numpy

from mnist_vae import build, evaluation, explorer, families, figures, settings
from mnist_vae.callbacks import SampleFrames
from mnist_vae.config import Config, from_saved
from mnist_vae.vampprior import kl_per_dim_estimate, log_mixture_density
from model import VAE, build_decoder, build_encoder

pytestmark = pytest.mark.backend_core  # CI runs these on PyTorch too (pytest.ini)

SEPARATION = 2.0  # the two components' means: +-SEPARATION along z[0]


class TwoGaussians:
    """p(z) = (N(m, I) + N(-m, I)) / 2, m = SEPARATION along z[0]: fixed, no closed-form KL."""
    name, short_name = "a fixed mixture of two Gaussians", "two Gaussians"
    closed_form, learned, depends_on_encoder = False, False, False

    def __init__(self, latent_dim):
        self.means = np.zeros((2, latent_dim), np.float32)
        self.means[:, 0] = SEPARATION, -SEPARATION
        self.log_vars = np.zeros((2, latent_dim), np.float32)

    def log_density(self, z):
        return log_mixture_density(z, self.means, self.log_vars)

    def kl(self, z_mean, z_log_var):
        return None

    def draw(self, n, seed):
        rng = np.random.default_rng(seed)
        return self.means[rng.integers(0, 2, n)] + rng.standard_normal((n, self.means.shape[1]), dtype=np.float32)

    def kl_per_dim(self, z_mean, z_log_var, noise):
        return kl_per_dim_estimate((self.means.astype(np.float64), self.log_vars.astype(np.float64)), z_mean,
                                   z_log_var, noise)

    def rows_per_call(self, most):
        return most

    def page_data(self):
        return {"name": self.name, "means": self.means, "log_vars": self.log_vars}


@keras.saving.register_keras_serializable(package="test_families")
class TwoGaussiansVAE(VAE):
    """model.py's VAE under the prior above: only the prior differs."""

    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(encoder, decoder, **kwargs)
        self.prior = TwoGaussians(self.latent_dim)


def _build(s, **common):
    networks = build_encoder("dense", s.latent_dim, s.hidden), build_decoder("dense", s.latent_dim, s.hidden)
    return TwoGaussiansVAE(*networks, name="vae", **common)


TOY = families.Family("two-gaussians", __name__, chosen_by=lambda s: s.prior == "two-gaussians", build=_build,
                      parameters=families.VAE.parameters,
                      refuses=((lambda s: s.conditional, "the two-Gaussians prior is unconditional"),))


@pytest.fixture
def toy_family():
    families.register(TOY)
    yield TOY
    families.FAMILIES.remove(TOY)


def toy_settings(**changes):
    return from_saved({**settings.DEFAULTS, "prior": "two-gaussians", "latent_dim": 2, "hidden": 16, "k": 1,
                       "lr": 3e-3, **changes})


@pytest.mark.backend_independent
def test_the_table_picks_each_family_and_says_what_it_refuses():
    assert families.of(from_saved(settings.DEFAULTS)) is families.VAE
    assert families.of(from_saved({**settings.DEFAULTS, "prior": "vampprior"})) is families.VAMPPRIOR
    assert families.of(from_saved({**settings.DEFAULTS, "stochastic_layers": 2})) is families.TWO_LAYER
    assert "leave out --conditional" in families.refusal(Config(**{**settings.DEFAULTS, "prior": "vampprior",
                                                                  "conditional": True}))
    assert "leave out --arch conv" in families.refusal(Config(**{**settings.DEFAULTS, "stochastic_layers": 2,
                                                                "arch": "conv"}))
    # a flag only another family reads, given explicitly
    assert families.refusal(from_saved(settings.DEFAULTS), {"pseudo_inputs"}) == (
        "--pseudo-inputs 500 is the VampPrior's: it needs --prior vampprior")
    assert families.refusal(from_saved(settings.DEFAULTS), {"latent_dim"}) is None
    imports = families.loading_imports(from_saved({**settings.DEFAULTS, "prior": "vampprior"}))
    assert imports[-1].startswith("from mnist_vae import vampprior")


def test_a_new_family_is_one_module_and_one_row(toy_family, digits, tmp_path):
    s = toy_settings()
    assert families.refusal(s) is None and "unconditional" in families.refusal(s.replace(conditional=True))
    vae = build.model_of(s)
    assert isinstance(vae, TwoGaussiansVAE)
    assert families.of(s).parameters(s) == sum(int(np.prod(v.shape)) for v in vae.trainable_variables)

    # Its terms: log p(z) is the two-component mixture, computed here in float64
    z = np.random.default_rng(0).normal(0, 2, (40, 2))
    components = -0.5 * (np.log(2 * np.pi) * 2 + ((z[:, None] - vae.prior.means[None]) ** 2).sum(-1))
    direct = np.log(np.exp(components).mean(axis=1))
    np.testing.assert_allclose(to_numpy(vae.prior.log_density(z.astype(np.float32))), direct, atol=1e-4)

    # Trains (the package's callbacks included), and training lowers the loss
    images = (digits[0][:320] > 127).astype(np.float32)
    x_train, x_test, y_test = images[:256], images[256:], digits[1][256:320]
    vae.compile(optimizer=keras.optimizers.Adam(s.lr))
    frames = SampleFrames(seed=0, n=4)
    history = vae.fit(x_train, epochs=3, batch_size=32, verbose=0, callbacks=[frames]).history
    assert history["loss"][-1] < history["loss"][0] - 10, history["loss"]
    assert len(frames.frames) == 3 and frames.frames[0].shape == (4, 28, 28)

    # Evaluates: the KL an estimate against its prior, the NLL a tighter bound than the ELBO
    results, posterior = evaluation.evaluate_model(vae, x_test, k=50)
    assert results["kl_is_estimate"] is True and "stochastic_layers" not in results
    assert math.isfinite(results["nll_iw"]) and results["nll_iw"] < results["negative_elbo"]
    assert len(results["kl_per_dim"]) == 2
    # the KL term is log q(z|x) - log p(z) at one draw per image: its mean meets a 400-draw Monte-Carlo mean over
    # the same images, in float64, within the one draw's sampling error
    z_mean, z_log_var = posterior["z_mean"].astype(np.float64), posterior["z_log_var"].astype(np.float64)
    noise = np.random.default_rng(3).standard_normal((400, *z_mean.shape))
    draws = z_mean + np.exp(0.5 * z_log_var) * noise
    log_q = -0.5 * (np.log(2 * np.pi) + z_log_var + noise ** 2).sum(-1)
    log_p = to_numpy(vae.prior.log_density(draws.astype(np.float32))).astype(np.float64)
    reference, spread = np.mean(log_q - log_p), np.std(log_q - log_p, axis=0).mean() / math.sqrt(len(z_mean))
    assert abs(results["kl_loss"] - reference) < 5 * spread + 0.05, (results["kl_loss"], reference, spread)

    # Draws its figures (samples from its own prior, the KL named as its estimate) and writes its explorer page
    written, skipped = figures.save_all(vae, x_test, y_test, {k: list(v) for k, v in history.items()}, tmp_path,
                                        posterior, frames=frames.frames)
    assert {"loss", "samples", "latent_scatter", "kl_per_dim", "progress"} <= set(written), (written, skipped)
    assert vae.kl_label == "KL(q(z|x) ‖ p(z)), one-draw ESTIMATE (two Gaussians)"
    page = open(explorer.write(tmp_path, vae, posterior["z_mean"], y_test, x_test)).read()
    assert '"prior":{"name":"a fixed mixture of two Gaussians"' in page and '"components":2' in page

    # Reloads as itself, with its prior
    vae.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded, TwoGaussiansVAE) and loaded.prior.name == vae.prior.name
    np.testing.assert_allclose(to_numpy(loaded.encoder(x_test[:5])[0]), to_numpy(vae.encoder(x_test[:5])[0]))


@pytest.mark.backend_independent
def test_the_toy_prior_draws_from_its_two_components():
    prior = TwoGaussians(3)
    z = prior.draw(4000, seed=1)
    assert abs(np.mean(z[:, 0] > 0) - 0.5) < 0.05 and abs(np.abs(z[:, 0]).mean() - SEPARATION) < 0.1
    np.testing.assert_array_equal(z, prior.draw(4000, seed=1))  # fixed by the seed
