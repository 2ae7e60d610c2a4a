"""Published recipes as presets (--preset) and the staged learning-rate schedule of Burda et al. 2015.

Pure Python: settings.py builds the flags from these, the callbacks follow the schedule, and the console and
report.html name the published figure a preset's run is to be held against.
"""
from dataclasses import dataclass

IW_SAMPLES = 1000  # importance samples per image for the NLL (--iw-samples' default; the papers' presets use 5000)
PAPER_STAGES = 8  # Burda et al.'s schedule: stages i = 0..7, 3^i passes each at lr * 10^(-i/7)


def staged_passes(stages):
    """Passes over the data in the first `stages` stages of the staged schedule: 1 + 3 + ... + 3^(stages-1)."""
    return (3 ** stages - 1) // 2


def stage_of(epoch):
    """The stage a 0-based epoch falls in: 0 for epoch 0, 1 for epochs 1-3, 2 for 4-12, ..."""
    stage = 0
    while epoch >= staged_passes(stage + 1):
        stage += 1
    return stage


def learning_rate_at(epoch, lr, schedule):
    """The learning rate of a 0-based epoch: lr throughout ("constant"), or lr * 10^(-i/7) in stage i ("staged").
    A function of the epoch alone, so a run resumed mid-stage continues the schedule exactly."""
    return lr if schedule == "constant" else lr * 10 ** (-stage_of(epoch) / 7)


@dataclass(frozen=True)
class Rerun:
    """A public re-run of a recipe, quoted beside the paper's figure: what kind of re-run it is, whose, where its
    figure was checked, and the figure (nats per test image) with its spread where one is given."""
    kind: str  # "re-run with the authors' code" or "re-run with the paper's settings"
    who: str
    checked: str
    figure: float
    spread: float = None  # the ± it reports (over runs), or None


@dataclass(frozen=True)
class Preset:
    """A published recipe: the settings it fixes (each still overridable by its flag) and the figure to hold
    the run against."""
    settings: dict
    source: str  # where the recipe and its figure come from
    metric: str  # which of our numbers to compare: "test_loss" (one-sample -ELBO on the test set) or "nll"
    figure: float  # the published value, nats per image
    active_units: int = None  # the paper's count, where it gives one
    reruns: tuple = ()  # public re-runs of the same recipe (Rerun), beside the paper's figure

    @property
    def result_key(self):
        """Where eval.json holds our number to set beside the published one."""
        return {"test_loss": "negative_elbo", "nll": "nll_iw"}[self.metric]


_IWAE = {"arch": "dense", "hidden": "200,200", "activation": "tanh", "latent_dim": 50, "batch_size": 20,
         "lr": 1e-3, "adam_epsilon": 1e-4, "lr_schedule": "staged", "stages": PAPER_STAGES, "binarize": "dynamic",
         "validation": 400, "output_bias": "pixel-means", "iw_samples": 5000}
_BURDA = "Burda et al. 2015 (IWAE), Table 1"
_NBIP = "nbip/IWAE (Burda et al.'s recipe re-run in TensorFlow 2, with Tucker et al. 2018's DReG)"
# Tomczak & Welling 2018, one stochastic layer on dynamically binarized MNIST (their Table 2): 784-300-300-40 with
# gated hidden layers, K = 500 pseudo-inputs, Adam at 5e-4, batch 100, a KL warm-up over 100 epochs, up to 2,000
# epochs stopped early after 50 without improvement on 10,000 training images held out for validation, k = 5000
# for the NLL. Their code clamps the encoder's log-variances to [-6, 2] (a hard tanh), which these presets do too:
# without it the VampPrior's run diverged in its second epoch (the KL estimate at 1e15 nats, its components
# collapsed while the warm-up barely weighed the KL). Where these presets differ from the authors' code (checked at
# jmtomczak/vae_vampprior@bb6ff3e; docs/quoting-numbers.md says how, tests/unit/test_presets.py holds both):
# the validation images are 10,000 chosen by the seed (theirs: the last 10,000 training images); the pseudo-inputs
# start grey (sigmoid of N(-0.05, 0.01), 0.49; theirs: a hard tanh of N(0.05, 0.01), near black); the pixel
# probabilities are not clamped (theirs: to [1e-5, 1 - 1e-5]); Glorot's initialisation (theirs He's) and Keras'
# Adam (theirs normalises the gradients).
_VAMP = {"arch": "dense", "hidden": "300,300", "activation": "gated", "latent_dim": 40, "batch_size": 100,
         "log_var_min": -6.0, "log_var_max": 2.0, "lr": 5e-4, "kl_warmup": 100, "epochs": 2000, "early_stopping": 50,
         "validation": 10000, "binarize": "dynamic", "pseudo_inputs": 500, "iw_samples": 5000}
_TOMCZAK = "Tomczak & Welling 2018 (VAE with a VampPrior), Table 2, dynamic MNIST, one stochastic layer"
# Two public re-runs of the same one-layer model (784-300-300-40 gated, dynamic MNIST, k = 5000), checked where named.
_AUTHORS_CODE, _PAPERS_SETTINGS = "re-run with the authors' code", "re-run with the paper's settings"
_EXEMPLAR = "Exemplar VAE (Norouzi, Fleet & Norouzi, NeurIPS 2020), a fork of the authors' code with its defaults"
_EXEMPLAR_TABLE = ("its Table 1, rows 'VAE w/ Gaussian prior' and 'VAE w/ VampPrior' (sajadn/Exemplar-VAE "
                   "images/density_estimation.png at 4dbd091)")
_POPGEN = ("PopGen (Popgun-Labs/PopGen): the paper's L = 1 model, 1M steps with plain Adam (its example config: "
           "2e-4, batch 100)")
_POPGEN_TABLE = "its README's table, rows vae and vae_vamp (Popgun-Labs/PopGen README.md at 04965e7)"
PRESETS = {
    "pytorch-examples": Preset(
        {"arch": "dense", "hidden": 400, "latent_dim": 20, "activation": "relu", "batch_size": 128, "lr": 1e-3,
         "adam_epsilon": 1e-8, "epochs": 10, "binarize": "none"},
        "pytorch/examples vae/main.py (784-400-20, ReLU, grey pixels, Adam 1e-3, batch 128, 10 epochs)",
        "test_loss", 105.5),
    "iwae-vae": Preset({**_IWAE, "objective": "elbo", "k": None}, f"{_BURDA}, VAE (k = 1)", "nll", 86.76, 19),
    "iwae-k5": Preset({**_IWAE, "objective": "iwae", "k": 5}, f"{_BURDA}, IWAE k = 5", "nll", 85.54, 22),
    "iwae-k50": Preset({**_IWAE, "objective": "iwae", "k": 50}, f"{_BURDA}, IWAE k = 50", "nll", 84.78, 25),
    # DReG is not in Burda et al.: nbip/IWAE's TensorFlow 2 re-run of their recipe, the paper's whole schedule,
    # trained with it (its README: k = 5 84.90 and k = 50 84.32, against 85.18 and 84.59 without).
    "iwae-k5-dreg": Preset({**_IWAE, "objective": "iwae", "k": 5, "gradient": "dreg"}, f"{_NBIP}, IWAE k = 5 with DReG",
                           "nll", 84.90),
    "iwae-k50-dreg": Preset({**_IWAE, "objective": "iwae", "k": 50, "gradient": "dreg"},
                            f"{_NBIP}, IWAE k = 50 with DReG", "nll", 84.32),
    # Table 1's second architecture: x - 200 - 200 - z1 (100) - 100 - 100 - z2 (50), the same schedule.
    "iwae-2layer-vae": Preset({**_IWAE, "stochastic_layers": 2, "objective": "elbo", "k": None},
                              f"{_BURDA}, two stochastic layers, VAE (k = 1)", "nll", 85.33),
    "iwae-2layer-k5": Preset({**_IWAE, "stochastic_layers": 2, "objective": "iwae", "k": 5},
                             f"{_BURDA}, two stochastic layers, IWAE k = 5", "nll", 83.89),
    "iwae-2layer-k50": Preset({**_IWAE, "stochastic_layers": 2, "objective": "iwae", "k": 50},
                              f"{_BURDA}, two stochastic layers, IWAE k = 50", "nll", 82.90),
    "vampprior": Preset({**_VAMP, "prior": "vampprior"}, f"{_TOMCZAK}, VampPrior", "nll", 85.57,
                        reruns=(Rerun(_AUTHORS_CODE, _EXEMPLAR, _EXEMPLAR_TABLE, 82.43, 0.06),
                                Rerun(_PAPERS_SETTINGS, _POPGEN, _POPGEN_TABLE, 81.96))),
    "vampprior-standard": Preset({**_VAMP, "prior": "standard"}, f"{_TOMCZAK}, the standard prior N(0, I)",
                                 "nll", 88.56,
                                 reruns=(Rerun(_AUTHORS_CODE, _EXEMPLAR, _EXEMPLAR_TABLE, 84.45, 0.12),
                                         Rerun(_PAPERS_SETTINGS, _POPGEN, _POPGEN_TABLE, 84.04))),
}


def void_line(preset, overrides):
    """Why a preset's run is not to be held against the published figure ("" when it is)."""
    if not preset or not overrides:
        return ""
    recipe = PRESETS[preset]
    return (f"--preset {preset} with {', '.join(overrides)}: NOT comparable with the published {recipe.figure} nats "
            f"({recipe.source}), whose recipe these settings change")


def published_line(preset, overrides=()):
    """What a preset's run is to be compared with, in one line ("" without a preset). overrides: the settings
    in which the run departs from the recipe (settings.preset_overrides); any voids the comparison."""
    if not preset:
        return ""
    if overrides:
        return void_line(preset, overrides)
    recipe = PRESETS[preset]
    what = {"test_loss": "the test loss (one-sample negative ELBO)",
            "nll": f"the test NLL (k = {recipe.settings.get('iw_samples')})"}[recipe.metric]
    units = f", {recipe.active_units} active units" if recipe.active_units else ""
    return f"--preset {preset}: compare {what} with {recipe.figure} nats{units}, {recipe.source}"


def schedule_line(lr, schedule, stages, epochs):
    """The staged schedule in words, saying when it is shortened ("" for a constant learning rate)."""
    if schedule == "constant":
        return ""
    last = stage_of(epochs - 1)
    shortened = "" if stages >= PAPER_STAGES and epochs >= staged_passes(PAPER_STAGES) else (
        f"; SHORTENED: the paper runs stages 0-{PAPER_STAGES - 1}, {staged_passes(PAPER_STAGES):,} passes")
    stages = "stage 0" if last == 0 else f"stages 0-{last}"
    passes = f"{epochs:,} pass" + ("" if epochs == 1 else "es")
    return (f"learning rate: staged, {lr:g} * 10^(-i/7) for 3^i passes in stage i; this run: {stages}, "
            f"{passes} (final rate {learning_rate_at(epochs - 1, lr, schedule):.3g}){shortened}")


def compared_line(preset, results, overrides=()):
    """Our figure beside the published one for a preset's run (results: eval.json's numbers), "" without a
    preset, or why the two are not comparable (overrides, as for published_line)."""
    if not preset:
        return ""
    if overrides:
        return void_line(preset, overrides)
    recipe = PRESETS[preset]
    ours, stderr = results[recipe.result_key], results[recipe.result_key + "_stderr"]
    what = "test loss" if recipe.metric == "test_loss" else f"NLL (k = {results['iw_samples']})"
    units = (f"; active units {results['active_units']}, published {recipe.active_units}"
             if recipe.active_units and "active_units" in results else "")
    return (f"{recipe.source}: {what} {ours:.2f} ± {stderr:.2f} here, published {recipe.figure}: "
            f"{ours - recipe.figure:+.2f} nats{units}")
