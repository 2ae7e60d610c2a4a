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


# The VampPrior presets' protocol as the authors' code states it (jmtomczak/vae_vampprior at bb6ff3e, each row
# checked in the file it names): (what, the authors' value, where, ours). Ours is (setting, value) where the presets
# follow the code, or the sentence of docs/quoting-numbers.md that says how they differ.
AUTHORS_VAMPPRIOR = [
    ("learning rate", 5e-4, "experiment.py, --lr's default", ("lr", 5e-4)),
    ("batch", 100, "experiment.py, --batch_size", ("batch_size", 100)),
    ("epochs at most", 2000, "experiment.py, --epochs", ("epochs", 2000)),
    ("early-stopping patience", 50, "experiment.py, --early_stopping_epochs", ("early_stopping", 50)),
    ("KL warm-up epochs", 100, "experiment.py, --warmup", ("kl_warmup", 100)),
    ("latent size", 40, "experiment.py, --z1_size", ("latent_dim", 40)),
    ("pseudo-inputs", 500, "experiment.py, --number_components", ("pseudo_inputs", 500)),
    ("importance samples for the NLL", 5000, "experiment.py, --S", ("iw_samples", 5000)),
    ("hidden layers", "GatedDense(784, 300), GatedDense(300, 300)", "models/VAE.py", ("hidden", "300,300")),
    ("hidden activation", "gated", "models/VAE.py, utils/nn.py GatedDense", ("activation", "gated")),
    ("log-variance clamp, low", -6.0, "models/VAE.py, Hardtanh(min_val=-6.)", ("log_var_min", -6.0)),
    ("log-variance clamp, high", 2.0, "models/VAE.py, Hardtanh(max_val=2.)", ("log_var_max", 2.0)),
    ("validation images", 10000, "utils/load_data.py, x_train[50000:60000]", ("validation", 10000)),
    ("binarization", "dynamic", "utils/load_data.py, np.random.binomial each epoch", ("binarize", "dynamic")),
    ("which validation images", "the last 10,000", "utils/load_data.py, load_dynamic_mnist",
     "theirs are the last 10,000"),
    ("the pseudo-inputs' start", "hard tanh of N(0.05, 0.01)", "models/Model.py add_pseudoinputs; utils/load_data.py",
     "near 0 (0.05: almost empty images)"),
    ("pixel probabilities", "clamped to [1e-5, 1 - 1e-5]", "utils/distributions.py, log_Bernoulli",
     "clamps the decoder's probabilities to [1e-5, 1 − 1e-5]"),
    ("initialisation and optimiser", "He's, AdamNormGrad", "models/VAE.py he_init; experiment.py AdamNormGrad",
     "He's initialisation and a gradient-normalizing Adam (`AdamNormGrad`) there"),
]


@pytest.mark.parametrize("what, theirs, where, ours", AUTHORS_VAMPPRIOR)
def test_the_vampprior_presets_follow_the_authors_code_or_the_docs_say_how_they_differ(what, theirs, where, ours):
    import os
    import re

    for name in ("vampprior", "vampprior-standard"):
        if isinstance(ours, tuple):
            setting, value = ours
            assert PRESETS[name].settings[setting] == value, (name, what, where)
        else:
            page = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "quoting-numbers.md"),
                        encoding="utf-8").read()
            assert ours in re.sub(r"\s+", " ", page), (what, where)


def test_the_vampprior_rows_stand_beside_two_labelled_reruns():
    """The re-runs beside the paper's figures, as their sources give them (checked in the files the presets name)."""
    expected = {"vampprior": [82.43, 81.96], "vampprior-standard": [84.45, 84.04]}
    for name, figures in expected.items():
        reruns = PRESETS[name].reruns
        assert [rerun.figure for rerun in reruns] == figures
        assert [rerun.kind for rerun in reruns] == ["re-run with the authors' code", "re-run with the paper's settings"]
        assert all(rerun.checked for rerun in reruns)
