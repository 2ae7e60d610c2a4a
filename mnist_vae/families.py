"""The model families, one row each: the settings that choose it, the settings it refuses, how it is built and how
large it is, and the module whose classes a saved model of it needs.

The settings' checks (config.py), the builder (build.py), the run-folder reader (runfolder.py) and the model card
(card.py) read this table and nothing else of a family; the rest of the package reads only the protocol that every
family's VAE answers (model.VAE: its prior, per-draw terms and labels). A new family is its module and one row;
register() adds a row from outside the package (tests/unit/test_families.py's toy family does).
Pure Python: a row's builder imports Keras when it is called.
"""
import dataclasses
import importlib
from typing import Callable

PIXELS, CLASSES = 28 * 28, 10
CONV_FEATURES = 7 * 7 * 64  # the conv encoder's flattened features, and the conv decoder's first dense layer
CONVOLUTIONS = (9 * 1 + 1) * 32 + (9 * 32 + 1) * 64 + (9 * 64 + 1) * 64 + (9 * 64 + 1) * 32 + (9 * 32 + 1) * 1


@dataclasses.dataclass(frozen=True)
class Family:
    """One row. Every function takes the run's settings (a config.Config: hidden a tuple of widths)."""
    name: str
    module: str  # whose classes a saved model of the family needs (imported before it loads)
    chosen_by: Callable  # settings -> whether these settings build this family
    build: Callable  # (settings, **keyword arguments every VAE takes) -> the untrained VAE
    parameters: Callable  # settings -> its trainable weights, by arithmetic: a model too large is refused unbuilt
    refuses: tuple = ()  # (settings -> bool, why): settings this family cannot train
    own_flags: tuple = ()  # (setting's name, what it needs): settings only this family reads
    too_large: Callable = lambda settings, memory: None  # (settings, bytes) -> why it cannot fit, beyond its weights
    noise_per_draw: Callable = lambda settings: settings.latent_dim  # numbers of noise one draw takes (the batches')


def _dense_weights(widths):
    return sum((a + 1) * b for a, b in zip(widths, widths[1:]))


def log_var_range(settings):
    """(low, high) that the encoder clamps z_log_var to, or None."""
    return None if settings.log_var_min is None else (settings.log_var_min, settings.log_var_max)


# --- the learner's VAE (model.py) ---

def _vae_parameters(s):
    label = CLASSES if s.conditional else 0
    if s.arch == "conv":
        heads = 2 * (CONV_FEATURES + label + 1) * s.latent_dim
        return CONVOLUTIONS + heads + (s.latent_dim + label + 1) * CONV_FEATURES
    widths = s.hidden
    encoder = _dense_weights([PIXELS + label, *widths]) + 2 * (widths[-1] + 1) * s.latent_dim
    decoder = _dense_weights([s.latent_dim + label, *widths[::-1], PIXELS])
    gates = (_dense_weights([PIXELS + label, *widths]) + _dense_weights([s.latent_dim + label, *widths[::-1]])
             if s.activation == "gated" else 0)  # a gate's weights beside each hidden layer's
    return encoder + decoder + gates


def _build_vae(s, **common):
    from model import build_vae

    return build_vae(s.arch, s.latent_dim, s.hidden, conditional=s.conditional, activation=s.activation,
                     log_var_range=log_var_range(s), **common)


VAE = Family("vae", "model", chosen_by=lambda s: True, build=_build_vae, parameters=_vae_parameters)


# --- the VampPrior (mnist_vae/vampprior.py): the same networks under a learned prior ---

def _build_vampprior(s, **common):
    from mnist_vae.vampprior import VampPriorVAE

    networks = _build_vae(s, **common)
    return VampPriorVAE(networks.encoder, networks.decoder, pseudo_inputs=s.pseudo_inputs, name="vae", **common)


def vampprior_bytes(s):
    """What a VampPrior run holds at its peak, in bytes, counted from its settings: per pseudo-input, its pixels'
    weights, gradients and Adam's two moments (16 bytes each), and what one training step keeps of its pass
    through the encoder (the pixels three times, each hidden layer's four tensors of a gated layer, the batch's
    (batch, K, d) mixture terms), in float32; plus the evaluation's mixture block (vampprior.MIXTURE_VALUES_PER_CALL,
    three tensors of it) and the process itself (1 GB). Checked against measured peaks in test_build.py."""
    from mnist_vae.vampprior import MIXTURE_VALUES_PER_CALL

    rows = s.batch_size * (s.k if s.objective == "iwae" else 1)
    per_input = 16 * PIXELS + 4 * (3 * PIXELS + 4 * sum(s.hidden) + rows * s.latent_dim)
    return s.pseudo_inputs * per_input + 3 * 4 * MIXTURE_VALUES_PER_CALL + (1 << 30)


def _vampprior_too_large(s, memory):
    needed = vampprior_bytes(s)
    if needed > memory:
        return (f"--prior vampprior --pseudo-inputs {s.pseudo_inputs:,}: training and evaluating would hold about "
                f"{needed / 1e9:,.1f} GB (the pseudo-inputs' weights with Adam's state, their pass through the encoder "
                f"each step, the mixture's terms), more than this machine's {memory / 1e9:,.0f} GB of memory; lower "
                "--pseudo-inputs")
    return None


VAMPPRIOR = Family(
    "vampprior", "mnist_vae.vampprior", chosen_by=lambda s: s.prior == "vampprior", build=_build_vampprior,
    parameters=lambda s: _vae_parameters(s) + s.pseudo_inputs * PIXELS,
    refuses=((lambda s: s.conditional,
              "--prior vampprior is a prior of the unconditional model: leave out --conditional"),
             (lambda s: s.gradient == "dreg",
              "--gradient dreg assumes a prior that does not depend on the encoder, and the VampPrior's does: use "
              "the plain gradient with --prior vampprior")),
    own_flags=(("pseudo_inputs", "is the VampPrior's: it needs --prior vampprior"),),
    too_large=_vampprior_too_large)


# --- two stochastic layers (mnist_vae/two_layer.py) ---

def _two_layer_parameters(s):
    d1, widths = 2 * s.latent_dim, s.hidden  # z1 has twice z2's dimensions (two_layer.z1_dim)
    middle = [d1] * len(widths)
    stacks = [[PIXELS, *widths], [d1, *middle], [s.latent_dim, *middle], [d1, *widths[::-1]]]
    heads = (2 * (widths[-1] + 1) * d1 + 2 * (d1 + 1) * s.latent_dim + 2 * (d1 + 1) * d1
             + (widths[0] + 1) * PIXELS)
    return sum(_dense_weights(stack) for stack in stacks) * (2 if s.activation == "gated" else 1) + heads


def _build_two_layer(s, **common):
    from mnist_vae.two_layer import build_two_layer_vae

    return build_two_layer_vae(s.latent_dim, s.hidden, s.activation, log_var_range(s), **common)


def _clash(flag):
    return ("--stochastic-layers 2 is the dense, unconditional model with the standard prior and the plain "
            f"gradient: leave out {flag}")


TWO_LAYER = Family(
    "two-layer", "mnist_vae.two_layer", chosen_by=lambda s: s.stochastic_layers == 2, build=_build_two_layer,
    parameters=_two_layer_parameters, noise_per_draw=lambda s: 3 * s.latent_dim,  # z1's 2d and z2's d
    refuses=((lambda s: s.arch == "conv", _clash("--arch conv")),
             (lambda s: s.conditional, _clash("--conditional")),
             (lambda s: s.prior == "vampprior", _clash("--prior vampprior")),
             (lambda s: s.gradient == "dreg", _clash("--gradient dreg"))))


FAMILIES = [TWO_LAYER, VAMPPRIOR, VAE]  # the first whose chosen_by holds builds the model


def register(family):
    """Add a family (before the built-in ones, so that its chosen_by is asked first)."""
    FAMILIES.insert(0, family)


def of(settings):
    """The family these settings build."""
    return next(family for family in FAMILIES if family.chosen_by(settings))


def refusal(settings, given=()):
    """Why these settings cannot be trained, in one line (None if they can): a refusal of the family they choose,
    or a flag given (its setting's name in `given`) that only another family reads."""
    family = of(settings)
    for refused, why in family.refuses:
        if refused(settings):
            return why
    for other in FAMILIES:
        for name, why in other.own_flags:
            if other is not family and name in given:
                return f"--{name.replace('_', '-')} {getattr(settings, name)} {why}"
    return None


def build(settings):
    """The untrained VAE these settings build, with the keyword arguments every family's VAE takes (how it is
    trained: beta, objective, k, likelihood, seed, and DReG's gradient estimator under --gradient dreg)."""
    from mnist_vae import dreg

    common = dict(beta=settings.beta, seed=settings.seed, objective=settings.objective, k=settings.k or 1,
                  likelihood=settings.likelihood,
                  gradient_estimator=dreg.estimator if settings.gradient == "dreg" else None)
    return of(settings).build(settings, **common)


def import_all():
    """Import every family's module, so that Keras can load a saved model of any of them."""
    for family in FAMILIES:
        importlib.import_module(family.module)


def loading_imports(settings):
    """The import lines a user's script needs before keras.saving.load_model reads this family's model."""
    module = of(settings).module
    lines = ["import model  # this project's model.py: registers the VAE's classes"]
    if module != "model":
        package, _, name = module.rpartition(".")
        lines.append(f"from {package} import {name}  # registers the {of(settings).name} family's VAE")
    return lines
