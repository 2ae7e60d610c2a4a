"""Every setting of a run, once: its flag, default, check, help, whether --resume may change it and
whether it changes what the run computes. train.py's parser, the resume checks, the reproduce command,
compare.py's "settings that differ", evaluate.py's checks of a saved config and every default the other
modules need derive from SETTINGS.
"""
import argparse
import os
import shlex
import sys
from dataclasses import dataclass, field

from mnist_vae.backends import BACKENDS
from mnist_vae.cli import HelpFormatter, folder_name, hidden_layers, number_in_range, path_text
from mnist_vae.data import BINARIZE_MODES, VAL_SPLIT
from mnist_vae.presets import IW_SAMPLES, PAPER_STAGES, PRESETS, staged_passes
from mnist_vae.rundir import CONFIG_FORMAT, RunError, read_config

IWAE_K = 5  # --k's default under --objective iwae (the ELBO draws one z per image)
MAX_EPOCHS = 1_000_000  # far beyond any recipe; larger counts overflow the backends' integers
MAX_STAGES = max(s for s in range(1, 40) if staged_passes(s) <= MAX_EPOCHS)


@dataclass(frozen=True)
class Setting:
    flag: str
    default: object
    resume: bool = False  # --resume may take it anew; any other must match the run's saved config
    result: bool = True  # it changes what the run computes (False: where the run goes, how it runs)
    type: object = None
    choices: tuple = None
    action: str = None
    metavar: str = None
    help: str = ""
    name: str = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "name", self.flag[2:].replace("-", "_"))

    def add_to(self, parser, with_default=True):
        options = {k: v for k, v in (("type", self.type), ("choices", self.choices), ("action", self.action),
                                     ("metavar", self.metavar)) if v is not None}
        parser.add_argument(self.flag, help=self.help, **options, **({"default": self.default} if with_default else {}))

    def accepts(self, value):
        """Whether value (as a saved config holds it) is one this flag itself would give."""
        try:
            return (self.choices is None or value in self.choices) and (
                self.type is None or self.type(str(value)) == value) and (
                self.action != "store_true" or isinstance(value, bool))
        except (argparse.ArgumentTypeError, TypeError, ValueError):
            return False


SETTINGS = (
    Setting("--preset", None, choices=tuple(PRESETS),
            help="a published recipe in one flag; any flag given beside it overrides that setting: "
                 + "; ".join(f"{name}: {preset.source}" for name, preset in PRESETS.items())),
    Setting("--epochs", 30, resume=True, type=number_in_range(int, 1, high=MAX_EPOCHS + 1),
            help="passes over the training images"),
    Setting("--batch-size", 128, type=number_in_range(int, 1), help="images per step (the global batch)"),
    Setting("--latent-dim", 2, type=number_in_range(int, 1), help="size of z"),
    Setting("--arch", "dense", choices=("dense", "conv"),
            help="dense: 784-hidden-latent MLP; conv: two stride-2 convolutions (32, 64 filters)"),
    Setting("--hidden", 512, type=hidden_layers, metavar="WIDTHS",
            help="widths of the dense model's hidden layers, encoder side (the decoder mirrors them): 512, or 200,200 "
                 "for two"),
    Setting("--stochastic-layers", 1, type=int, choices=(1, 2),
            help="1: x - hidden - z; 2: Burda et al.'s two stochastic layers, x - hidden - z1 (2 x --latent-dim) - "
                 "as many hidden layers as --hidden, each as wide as z1 - z2 (--latent-dim), the figures and the "
                 "explorer showing z2 (dense, unconditional, the standard prior)"),
    Setting("--activation", "relu", choices=("relu", "tanh", "gated"),
            help="activation of the dense hidden layers; gated: (W x + b) * sigmoid(V x + c), two weight matrices "
                 "per layer (the VampPrior's recipe)"),
    Setting("--log-var-min", None, type=number_in_range(float, -30, high=30), metavar="LOW",
            help="with --log-var-max: clamp the encoder's z_log_var to [LOW, HIGH] (the VampPrior recipe's -6 and 2: "
                 "no posterior variance collapses while a KL warm-up barely penalises it); default: unclamped"),
    Setting("--log-var-max", None, type=number_in_range(float, -30, high=30), metavar="HIGH", help="see --log-var-min"),
    Setting("--lr", 1e-3, type=number_in_range(float, 0, low_ok=False), help="Adam learning rate"),
    Setting("--adam-epsilon", 1e-7, type=number_in_range(float, 0, low_ok=False),
            help="Adam's epsilon (Keras' default; the IWAE recipe uses 1e-4)"),
    Setting("--lr-schedule", "constant", choices=("constant", "staged"),
            help="constant: --lr throughout; staged: Burda et al.'s schedule, stage i = 0, 1, ... lasting 3^i passes "
                 "at --lr * 10^(-i/7) (--epochs then defaults to the passes of --stages stages)"),
    Setting("--stages", PAPER_STAGES, resume=True, type=number_in_range(int, 1, high=MAX_STAGES + 1),
            help=f"with --lr-schedule staged: how many stages to run ({PAPER_STAGES}, the paper's, is "
                 f"{staged_passes(PAPER_STAGES):,} passes; 6 is {staged_passes(6)}: a shortened schedule)"),
    Setting("--output-bias", "zero", choices=("zero", "pixel-means"),
            help="initial bias of the dense decoder's output: zero, or the logit of the training images' mean "
                 "pixels (the IWAE recipe: the untrained decoder draws the average digit)"),
    Setting("--beta", 1.0, type=number_in_range(float, 0), help="weight of the KL term"),
    Setting("--objective", "elbo", choices=("elbo", "iwae"),
            help="elbo: reconstruction + beta * KL with one z per image; iwae: the importance-weighted bound with --k "
                 "samples per image (Burda et al. 2015), tighter than the ELBO as k grows"),
    Setting("--k", None, type=number_in_range(int, 1),
            help=f"importance samples per image in training, with --objective iwae (default {IWAE_K})"),
    Setting("--gradient", "plain", choices=("plain", "dreg"),
            help="with --objective iwae, the gradient estimator: plain (the bound's own) or dreg, the doubly "
                 "reparameterized gradient (Tucker et al. 2018): the same bound and expectation, a lower-variance "
                 "gradient for the encoder"),
    Setting("--prior", "standard", choices=("standard", "vampprior"),
            help="p(z): standard, N(0, I) with the KL in closed form; vampprior, the mixture of the encoder's "
                 "posteriors at --pseudo-inputs learned images (Tomczak & Welling 2018), its KL then a single-draw "
                 "estimate"),
    Setting("--pseudo-inputs", 500, type=number_in_range(int, 1), metavar="K",
            help="with --prior vampprior: how many pseudo-inputs (mixture components) the prior learns"),
    Setting("--conditional", False, action="store_true",
            help="a conditional VAE: encoder and decoder also get the digit's label (one-hot), so samples.png draws "
                 "each digit on request; the bound is then on log p(x | label)"),
    Setting("--kl-warmup", 0, type=number_in_range(int, 0),
            help="epochs over which the KL weight rises linearly to --beta: epoch i of W (from 1) weighs it "
                 "--beta * i / W, as the VampPrior's code does (0: no warm-up)"),
    Setting("--binarize", "none", choices=BINARIZE_MODES,
            help="none: grey pixels (the loss is then not a likelihood); static: binarized once; dynamic: "
                 "re-drawn as Bernoulli(grey) every batch (the standard for published MNIST numbers)"),
    Setting("--likelihood", "bernoulli", choices=("bernoulli", "continuous-bernoulli"),
            help="p(x|z) per pixel: bernoulli (the cross-entropy; a likelihood of binarized pixels only) or "
                 "continuous-bernoulli (Loaiza-Ganem & Cunningham 2019: a true density of grey pixels in [0, 1]; "
                 "needs --binarize none)"),
    Setting("--iw-samples", IW_SAMPLES, resume=True, type=number_in_range(int, 1),
            help="importance samples per test image for the NLL estimate at the end (evaluate.py)"),
    Setting("--no-sample-quality", False, resume=True, result=False, action="store_true",
            help="skip the samples' scores at the end (Fréchet distance and digit coverage in a reference "
                 "classifier's features; its first use on new data trains the classifier, about a minute)"),
    Setting("--seed", 0, type=number_in_range(int, 0, high=2**32), help="seed for weights, shuffling and sampling"),
    Setting("--deterministic", False, action="store_true",
            help="deterministic TensorFlow ops: runs and resumes repeat bit for bit"),
    Setting("--data", None, resume=True, type=path_text, metavar="PATH",
            help="offline data: a folder of MNIST IDX files (plain or .gz) or a Keras-layout .npz; "
                 "default: download with keras.datasets"),
    Setting("--dataset", "mnist", choices=("mnist", "fashion_mnist"), help="which dataset to download without --data"),
    Setting("--validation", 0, type=number_in_range(int, 0),
            help="training images held out as a validation slice (chosen by --seed; the IWAE recipe holds out 400): "
                 "its loss is logged every epoch beside the test set's"),
    Setting("--early-stopping", 0, type=number_in_range(int, 0), metavar="PATIENCE",
            help="with --validation: stop once the validation slice's loss has not improved for PATIENCE epochs "
                 "(the epochs of a --kl-warmup are not judged) and evaluate, save and draw the best epoch's model; "
                 "0: off"),
    Setting("--val-split", VAL_SPLIT, type=number_in_range(float, 0, low_ok=False, high=1),
            help="fraction held out as the test set when the data has only one split"),
    Setting("--limit", None, type=number_in_range(int, 1),
            help="use only the first N training images (and N/4 test images) for a quick run"),
    Setting("--precision", "float32", choices=("float32", "mixed_float16", "mixed_bfloat16"),
            help="Keras mixed-precision policy: layers compute in float16/bfloat16, weights, losses and metrics "
                 "stay float32 (float16 adds Keras' dynamic loss scaling)"),
    Setting("--backend", None, resume=True, choices=BACKENDS,
            help="Keras backend to run on (default: $KERAS_BACKEND, else keras.json's backend, else tensorflow)"),
    Setting("--device", "auto", resume=True, result=False, choices=("auto", "cpu"),
            help="auto: use a GPU when the backend sees one; cpu: never"),
    Setting("--distribute", "none", resume=True, result=False, choices=("none", "mirrored", "multiworker"),
            help="mirrored: all of this machine's devices (tensorflow: tf.distribute.MirroredStrategy; jax: "
                 "keras.distribution.DataParallel); multiworker (tensorflow): MultiWorkerMirroredStrategy over "
                 "the machines that TF_CONFIG names (one process per machine). --batch-size stays the global "
                 "batch; losses and gradients equal a single device's"),
    Setting("--tensorboard", False, resume=True, result=False, action="store_true",
            help="also log for TensorBoard into <run>/tensorboard/: the loss terms for train and test per epoch and "
                 "the samples from fixed z as an image per epoch (view: tensorboard --logdir outputs)"),
    Setting("--jit", "auto", resume=True, result=False, choices=("auto", "on", "off"),
            help="compile the training step (XLA on tensorflow and jax, torch.compile on torch); auto: what "
                 "measured fastest here (tensorflow: on for dense models or with a GPU; jax: on; torch: on for "
                 "dense runs of 500,000 images or more, whose speed-up repays compiling)"),
    Setting("--out", "outputs", result=False, type=path_text, help="folder that receives one sub-folder per run"),
    Setting("--run-name", None, result=False, type=folder_name,
            help="name of this run's folder inside --out (default: time, arch and latent size)"),
    Setting("--resume", None, resume=True, result=False, type=path_text, metavar="RUN_DIR",
            help="continue that run from its last completed epoch with its saved config (--epochs may be raised)"),)
BY_NAME = {s.name: s for s in SETTINGS}
DEFAULTS = {s.name: s.default for s in SETTINGS}
RESUME_MAY_CHANGE = {s.name for s in SETTINGS if s.resume}
# What config.json holds beside the settings, never compared (the data's sizes, also there, are).
CONFIG_EXTRAS = ("format", "run_dir", "data_source", "data_sha256", "versions", "command")
NOT_COMPARED = {s.name for s in SETTINGS if not s.result} | set(CONFIG_EXTRAS)


def defaults(preset=None):
    """Every setting's default, with a preset's settings in place of those it fixes."""
    return {**DEFAULTS, **(PRESETS[preset].settings if preset else {}), "preset": preset}


def build_parser(with_defaults=True, preset=None):
    """train.py's parser, with a preset's settings as defaults (without defaults: it then returns only the
    flags given)."""
    parser = argparse.ArgumentParser(
        prog="train.py",
        description="Train a VAE on MNIST; writes the model, metrics and plots to <out>/<run-name>/.",
        formatter_class=HelpFormatter,
        argument_default=None if with_defaults else argparse.SUPPRESS)
    for setting in SETTINGS:
        setting.add_to(parser, with_defaults)
    if with_defaults and preset:
        parser.set_defaults(**PRESETS[preset].settings)
    return parser


def parse_args(argv=None):
    """(flags, names of the flags given explicitly): --resume checks the latter against the saved config."""
    argv = sys.argv[1:] if argv is None else argv
    find_preset = argparse.ArgumentParser(add_help=False)
    find_preset.add_argument("--preset")
    preset = find_preset.parse_known_args(argv)[0].preset
    args = build_parser(preset=preset if preset in PRESETS else None).parse_args(argv)  # refuses a bad one
    return args, set(vars(build_parser(with_defaults=False).parse_args(argv)))


def resolved_k(objective, k):
    """Importance samples per image in training: --k under IWAE (IWAE_K when not given), 1 for the ELBO."""
    return (k or IWAE_K) if objective == "iwae" else 1


def preset_overrides(config):
    """Where a preset's run departs from its recipe, as flags ("--binarize none"): any of them makes the published
    figure no yardstick for the run. [] without a preset. What the figure does not hang on is left out: the seed,
    where the data is, how the run runs, the evaluation's k and a staged schedule's length (both are said beside
    the figure)."""
    preset = config.get("preset")
    if not preset:
        return []
    expected = defaults(preset)
    free = {"preset", "seed", "data", "deterministic", "precision", "iw_samples", "backend"}
    if expected["lr_schedule"] == "staged" and config.get("lr_schedule") == "staged":
        free |= {"epochs", "stages"}  # a shortened schedule, flagged SHORTENED wherever the figure is shown
    found = []
    for setting in SETTINGS:
        if not setting.result or setting.name in free:
            continue
        value, recipe = config.get(setting.name, setting.default), expected[setting.name]
        if setting.name == "k":
            if config.get("objective") != expected["objective"]:
                continue  # the objective is named already; its k goes with it
            value = resolved_k(config.get("objective"), value)
            recipe = resolved_k(expected["objective"], recipe)
        if value != recipe:
            found.append(setting.flag if value is True else f"{setting.flag} {value}")
    return found


def reproduce_command(config):
    """The train.py command that repeats this run (a config.Config): every setting that changes the result and
    differs from its default, shell-quoted."""
    values = config.as_dict()  # the record's form: each value as its flag writes it
    words = ["python", "train.py"] + (["--preset", config.preset] if config.preset else [])
    expected = defaults(config.preset)
    if config.lr_schedule == "staged":
        expected["epochs"] = staged_passes(config.stages)  # --stages says how long the run is
    for setting in SETTINGS:
        value = values[setting.name]
        if not setting.result or value == expected[setting.name] or setting.name == "preset":
            continue
        if setting.name == "k" and (config.objective != "iwae" or value == resolved_k("iwae", expected["k"])):
            continue  # the ELBO's one sample, and IWAE's (or the preset's) default
        words += [setting.flag] if value is True else [setting.flag, str(value)]
    return shlex.join(words)


def check_saved(saved, path):
    """Each setting in a saved config passes the checks its flag makes (a hand-edited or damaged config.json
    is one line, not a traceback deep in training)."""
    for setting in SETTINGS:
        value = saved.get(setting.name)
        if setting.name not in saved or value is None or value == setting.default or setting.name == "resume":
            continue
        if not setting.accepts(value):
            raise RunError(f"{path}: {setting.name} = {value!r} is not a valid {setting.flag}; "
                           "the file was edited or damaged")


def saved_config(run_dir):
    """A run folder's config.json, every setting in it checked as its flag would check it: the one way every
    program (train.py --resume, evaluate.py, compare.py) reads it, so an edited config is refused in one line."""
    saved = read_config(run_dir, CONFIG_FORMAT)
    check_saved(saved, os.path.join(run_dir, "config.json"))
    return saved


def resumed_args(args, given, saved):
    """(the run's saved settings updated by the flags --resume may change, the flags given): refuses
    contradictions. saved: the run's config.json (saved_config)."""
    if "backend" not in given and os.environ.get("KERAS_BACKEND"):
        given = given | {"backend"}  # KERAS_BACKEND counts as a choice; without either, the run's own backend
    for name in sorted(given - RESUME_MAY_CHANGE):
        if getattr(args, name) != saved.get(name):
            flag = BY_NAME[name].flag
            raise RunError(f"{flag} {getattr(args, name)} contradicts the saved config of {args.resume} "
                           f"({flag} {saved.get(name)}); --resume continues a run as configured")
    kept = {name: saved.get(name, DEFAULTS[name]) for name in DEFAULTS}
    return argparse.Namespace(**{**kept, **{k: getattr(args, k) for k in given & RESUME_MAY_CHANGE}}), given
