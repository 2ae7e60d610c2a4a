"""mnist_vae/presets.py: each preset's recipe and published figure, and the staged schedule."""
import pytest

from mnist_vae import settings
from mnist_vae.presets import PRESETS, learning_rate_at, staged_passes

# The recipes as the papers and pytorch/examples state them (issue 21), written out independently of presets.py.
BURDA = {"arch": "dense", "hidden": "200,200", "activation": "tanh", "latent_dim": 50, "batch_size": 20,
         "lr": 1e-3, "adam_epsilon": 1e-4, "lr_schedule": "staged", "stages": 8, "binarize": "dynamic",
         "validation": 400, "output_bias": "pixel-means", "iw_samples": 5000, "likelihood": "bernoulli",
         "beta": 1.0, "kl_warmup": 0}

TOMCZAK = {"arch": "dense", "hidden": "300,300", "activation": "gated", "latent_dim": 40, "batch_size": 100,
           "log_var_min": -6.0, "log_var_max": 2.0, "lr": 5e-4, "kl_warmup": 100, "epochs": 2000,
           "early_stopping": 50, "validation": 10000,
           "binarize": "dynamic", "pseudo_inputs": 500, "iw_samples": 5000, "objective": "elbo", "beta": 1.0,
           "likelihood": "bernoulli", "lr_schedule": "constant", "output_bias": "zero"}

RECIPES = {
    "pytorch-examples": ({"arch": "dense", "hidden": 400, "latent_dim": 20, "activation": "relu", "batch_size": 128,
                          "lr": 1e-3, "epochs": 10, "binarize": "none", "objective": "elbo", "lr_schedule": "constant",
                          "validation": 0, "output_bias": "zero", "beta": 1.0, "kl_warmup": 0}, 105.5, None),
    "iwae-vae": ({**BURDA, "objective": "elbo"}, 86.76, 19),
    "iwae-k5": ({**BURDA, "objective": "iwae", "k": 5}, 85.54, 22),
    "iwae-k50": ({**BURDA, "objective": "iwae", "k": 50}, 84.78, 25),
    # nbip/IWAE's README: its re-run of Burda et al.'s recipe trained with DReG (issue 33).
    "iwae-k5-dreg": ({**BURDA, "objective": "iwae", "k": 5, "gradient": "dreg"}, 84.90, None),
    "iwae-k50-dreg": ({**BURDA, "objective": "iwae", "k": 50, "gradient": "dreg"}, 84.32, None),
    # Burda et al. 2015, Table 1, two stochastic layers: x - 200 - 200 - z1 (100) - 100 - 100 - z2 (50) (issue 33).
    "iwae-2layer-vae": ({**BURDA, "stochastic_layers": 2, "objective": "elbo"}, 85.33, None),
    "iwae-2layer-k5": ({**BURDA, "stochastic_layers": 2, "objective": "iwae", "k": 5}, 83.89, None),
    "iwae-2layer-k50": ({**BURDA, "stochastic_layers": 2, "objective": "iwae", "k": 50}, 82.90, None),
    # Tomczak & Welling 2018, Table 2, and their code's defaults (issue 32).
    "vampprior": ({**TOMCZAK, "prior": "vampprior"}, 85.57, None),
    "vampprior-standard": ({**TOMCZAK, "prior": "standard"}, 88.56, None),
}
for _recipe, _, _ in RECIPES.values():
    _recipe.setdefault("gradient", "plain")
    _recipe.setdefault("stochastic_layers", 1)
    _recipe.setdefault("log_var_min", None)  # the encoder's log-variances unclamped, but in the VampPrior's recipe
    _recipe.setdefault("log_var_max", None)


def test_every_preset_has_its_recipe_written_out_here():
    assert sorted(PRESETS) == sorted(RECIPES)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_each_preset_sets_its_recipe_and_its_published_figure(name):
    recipe, figure, active_units = RECIPES[name]
    args, given = settings.parse_args(["--preset", name])
    assert given == {"preset"}
    for setting, value in recipe.items():
        assert getattr(args, setting) == value, setting
    assert (PRESETS[name].figure, PRESETS[name].active_units) == (figure, active_units)
    assert args.preset == name


def test_the_staged_schedule_at_chosen_epochs():
    # Stage i lasts 3^i passes at 1e-3 * 10^(-i/7): epochs 0 | 1-3 | 4-12 | 13-39 | ... | 1093-3279 (0-based).
    for epoch, stage in ((0, 0), (1, 1), (3, 1), (4, 2), (12, 2), (13, 3), (363, 5), (364, 6), (1092, 6),
                         (1093, 7), (3279, 7)):
        assert learning_rate_at(epoch, 1e-3, "staged") == pytest.approx(1e-3 * 10 ** (-stage / 7), rel=1e-12), epoch
    assert learning_rate_at(3279, 1e-3, "staged") == pytest.approx(1e-4)
    assert learning_rate_at(500, 3e-4, "constant") == 3e-4
    assert [staged_passes(s) for s in (1, 6, 8)] == [1, 364, 3280]
