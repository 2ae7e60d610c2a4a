"""A run's settings, resolved once into a frozen, typed Config.

resolve(argv) is the one way from a command line (and, with --resume, the run's saved config.json) to the
settings a run uses: the flags, a preset's recipe, the saved settings, then every check between flags. Nothing
downstream changes a setting; what a run learns as it goes (the epochs done) lives with the run (run.Run).
A usage error, of one flag or of several together, exits 2 as argparse's own do.
Pure Python: no Keras.
"""
import dataclasses
import importlib.util
import os

from mnist_vae import cli, families, presets, settings
from mnist_vae.backends import default_backend
from mnist_vae.distribute import SUPPORTED
from mnist_vae.rundir import RunError


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting of a run (settings.SETTINGS: its flags' defaults, checks and help), resolved and frozen, each
    field typed; tests/unit/test_config.py holds the fields to the settings table. hidden is parsed once, here:
    512, "200,200" or [200, 200] become a tuple of widths. as_dict() is the run record's form (config.json), in
    which --hidden is written as its flag is (512, or "200,200")."""
    preset: str | None = None
    epochs: int = 30
    batch_size: int = 128
    latent_dim: int = 2
    arch: str = "dense"
    hidden: tuple[int, ...] = (512,)
    stochastic_layers: int = 1
    activation: str = "relu"
    log_var_min: float | None = None
    log_var_max: float | None = None
    lr: float = 1e-3
    adam_epsilon: float = 1e-7
    lr_schedule: str = "constant"
    stages: int = 8
    output_bias: str = "zero"
    beta: float = 1.0
    objective: str = "elbo"
    k: int | None = None
    gradient: str = "plain"
    prior: str = "standard"
    pseudo_inputs: int = 500
    conditional: bool = False
    kl_warmup: int = 0
    binarize: str = "none"
    likelihood: str = "bernoulli"
    iw_samples: int = 1000
    no_sample_quality: bool = False
    seed: int = 0
    deterministic: bool = False
    data: str | None = None
    dataset: str = "mnist"
    validation: int = 0
    early_stopping: int = 0
    val_split: float = 0.2
    limit: int | None = None
    precision: str = "float32"
    backend: str | None = None
    device: str = "auto"
    distribute: str = "none"
    tensorboard: bool = False
    jit: str = "auto"
    out: str = "outputs"
    run_name: str | None = None
    resume: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "hidden", cli.hidden_widths(self.hidden))

    def as_dict(self):
        """The settings as the run record (config.json) holds them: --hidden as its flag writes it."""
        return {**dataclasses.asdict(self), "hidden": cli.hidden_text(self.hidden)}

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def from_saved(saved, where="config.json"):
    """The Config a saved run record describes (its extra keys left out; settings it lacks at their defaults),
    through the same checks as a command line's (check_settings): a record that contradicts itself was edited or
    damaged, a RunError naming `where`."""
    values = {name: saved.get(name, default) for name, default in settings.DEFAULTS.items()}
    try:
        check_settings(values)
    except cli.UsageError as e:
        raise RunError(f"{where}: {e}; the file was edited or damaged") from None
    return Config(**values)


def resolve(argv=None):
    """(Config, the saved config.json as a dict or None): the command line's settings, with --resume the run's
    saved ones updated by the flags --resume may change. Refuses contradictions: exit 2 (cli.UsageError) for
    flags that do not go together, 1 for a run folder or a missing package."""
    args, given = settings.parse_args(argv)
    saved = None
    if args.resume:
        saved = settings.saved_config(args.resume)
        args, given = settings.resumed_args(args, given, saved)
    values = vars(args)
    values["backend"] = values["backend"] or default_backend()
    _check_flags(values, given)
    values["k"] = settings.resolved_k(values["objective"], values["k"])  # a preset's k goes with its objective
    if values["lr_schedule"] == "staged" and "epochs" not in given and (not saved or "stages" in given):
        # The schedule says how long the run is; a resumed run's length is its saved one unless given again.
        values["epochs"] = presets.staged_passes(values["stages"])
    if values["data"] and (not saved or "data" in given):
        values["data"] = os.path.abspath(values["data"])  # so that evaluate.py and --resume find it from anywhere
    return Config(**values), saved


def _check_flags_that_do_nothing(values, given):
    """A flag given explicitly that the rest of the settings ignore is refused, never recorded as if it counted
    (config.json, the reproduce command and compare.py would show it as a difference)."""
    for name, ignored, because in (
            ("stages", values["lr_schedule"] != "staged", "is the staged schedule's: it needs --lr-schedule staged"),
            ("dataset", bool(values["data"]), "picks what to download: with --data the data is that file or folder")):
        if name in given and ignored:
            raise cli.UsageError(f"--{name.replace('_', '-')} {values[name]} {because}")


def check_settings(values, given=frozenset()):
    """The checks between settings (each flag's own range is argparse's), one set for a command line (resolve) and a
    saved run record (from_saved): a contradiction is a cli.UsageError. given: the flags typed, which some messages
    name (a saved record has none)."""
    if values["objective"] == "elbo" and values["k"] not in (None, 1) and "k" in given:
        raise cli.UsageError(f"--k {values['k']} needs --objective iwae (the ELBO draws one z per image)")
    if values["early_stopping"] and not values["validation"]:
        raise cli.UsageError(f"--early-stopping {values['early_stopping']} judges the validation slice's loss: it "
                             "needs --validation N (training images held out for it; the IWAE recipe holds out 400)")
    family_refusal = families.refusal(Config(**values), given)  # what the model's family refuses
    if family_refusal:
        raise cli.UsageError(family_refusal)
    if values["gradient"] == "dreg" and values["objective"] != "iwae":
        raise cli.UsageError("--gradient dreg is a gradient of the importance-weighted bound: it needs "
                             "--objective iwae")
    if values["gradient"] == "dreg" and values["k"] == 1:
        raise cli.UsageError("--gradient dreg --k 1: with one draw the importance weights are all 1 and DReG's "
                             "gradient is the ELBO's: use --k 2 or more, or leave out --gradient dreg")
    _check_flags_that_do_nothing(values, given)
    bounds = values["log_var_min"], values["log_var_max"]
    if (bounds[0] is None) != (bounds[1] is None):
        raise cli.UsageError("--log-var-min and --log-var-max go together: the range z_log_var is clamped to")
    if bounds[0] is not None and not cli.as_float32(bounds[0]) < cli.as_float32(bounds[1]):
        raise cli.UsageError(f"--log-var-min {bounds[0]} must be below --log-var-max {bounds[1]} (in float32, the "
                             "precision the model clamps in)")
    if values["likelihood"] == "continuous-bernoulli" and values["binarize"] != "none":
        raise cli.UsageError(f"--likelihood continuous-bernoulli is for grey pixels: with --binarize "
                             f"{values['binarize']} the plain Bernoulli (the default) is already the exact likelihood")
    dense_only = [f"--{name.replace('_', '-')} {values[name]}" for name, plain in
                  (("activation", "relu"), ("output_bias", "zero")) if values[name] != plain]
    if values["arch"] == "conv" and dense_only:
        one = len(dense_only) == 1
        source = (("is for" if one else "are for") if given & {"activation", "output_bias"} else
                  f"{'comes' if one else 'come'} from --preset {values['preset']} and {'is' if one else 'are'} for")
        raise cli.UsageError(f"{' '.join(dense_only)} {source} the dense model's hidden and output layers; the conv "
                             "model keeps ReLU and a zero output bias")


def _check_flags(values, given):
    """check_settings, and what only a command line can contradict: a resumed run's engine, a missing package."""
    check_settings(values, given)
    if values["resume"] and "distribute" not in given and values["distribute"] not in SUPPORTED[values["backend"]]:
        raise cli.UsageError(f"{values['resume']} was trained with --distribute {values['distribute']}, which the "
                             f"{values['backend']} backend does not offer: add --distribute none to continue it on "
                             "one device")
    if values["tensorboard"] and importlib.util.find_spec("tensorflow") is None:
        raise cli.UserError("--tensorboard writes its logs through TensorFlow (tf.summary), which is not installed: "
                            'pip install "tensorflow>=2.16", or train without --tensorboard')
