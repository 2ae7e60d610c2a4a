"""Building the model a run trains (train.py compiles it with Adam and fits it): refused up front when it cannot
fit in memory, built from its family's row (families.py), the compile options that measured fastest per backend
(docs/performance.md), made ready on the run's devices and restored from the checkpoint, and a run's saved
model loaded and checked to be the one its settings build."""
import importlib
import platform

from mnist_vae.backends import has_gpu
from mnist_vae.rundir import RunError

# Values per decoded row in the conv decoder: 7x7x64, 14x14x64 and 28x28x32 feature maps and the 784 logits.
CONV_DECODER_ACTIVATIONS = 7 * 7 * 64 + 14 * 14 * 64 + 28 * 28 * 32 + 784
PIXELS = 28 * 28
MAX_STEPS = 2**31 - 1  # the model counts its training steps in an int32



def check_run_fits(config, train_images):
    """Refuse up front a run whose model and Adam state, or one training step's activations (a huge --k),
    cannot fit in memory (an allocation that large fails deep inside the backend, with a traceback or an
    abort), or whose steps overflow the model's step counter."""
    from mnist_vae import families
    from mnist_vae.data import memory_bytes

    family = families.of(config)
    weights = family.parameters(config)
    needed = weights * 4 * 4  # float32 weights, their gradients and Adam's two moments
    if needed > memory_bytes():
        hidden = f" --hidden {config.as_dict()['hidden']}" if config.arch == "dense" else ""  # as the flag writes it
        raise RunError(f"--arch {config.arch}{hidden} --latent-dim {config.latent_dim}: the model would "
                       f"have {weights / 1e6:,.0f} million weights, about {needed / 1e9:,.0f} GB with Adam's state, "
                       f"more than this machine's {memory_bytes() / 1e9:,.0f} GB of memory")
    # One training step decodes batch x k rows; their activations are kept for the backward pass.
    rows = config.batch_size * (config.k if config.objective == "iwae" else 1)
    per_row = (sum(config.hidden) + 3 * PIXELS if config.arch == "dense"
               else CONV_DECODER_ACTIVATIONS)
    needed = rows * per_row * 4 * 3  # float32 activations, their gradients and the loss's per-pixel terms
    if needed > memory_bytes() // 2:
        raise RunError(f"--objective {config.objective} --k {config.k} --batch-size {config.batch_size}: one "
                       f"training step would decode {rows:,} rows at once, about {needed / 1e9:,.0f} GB of "
                       f"activations, more than half of this machine's {memory_bytes() / 1e9:,.0f} GB of memory; "
                       "lower --k or --batch-size")
    too_large = family.too_large(config, memory_bytes())
    if too_large:
        raise RunError(too_large)
    steps = -(-train_images // config.batch_size) * config.epochs
    if steps > MAX_STEPS:
        raise RunError(f"--epochs {config.epochs:,} of {train_images:,} images at --batch-size {config.batch_size} are "
                       f"{steps:,} steps, more than the {MAX_STEPS:,} the model counts: fewer epochs or a larger batch")


def speed_options(config, steps_per_epoch, devices, epochs_to_run=None):
    """compile() options that measurably speed training up on each backend (tools/bench.py; docs/performance.md).

    --jit auto: TensorFlow compiles dense models with XLA (and everything on a GPU; its CPU convolutions are
    slower under XLA). JAX always compiles (op by op it is many times slower). PyTorch compiles dense models
    with torch.compile only for runs long enough to repay its compile time; on the conv model it was slower.
    Several steps per call cut TensorFlow's per-step overhead; they must divide the epoch, or Keras would run
    the last call into the next epoch's batches.
    """
    backend = config.backend
    images = steps_per_epoch * config.batch_size * (epochs_to_run or config.epochs)
    auto = {"tensorflow": config.arch == "dense" or has_gpu(backend),
            "jax": True,
            "torch": config.arch == "dense" and images >= 500_000}[backend]
    jit = {"on": True, "off": False, "auto": auto}[config.jit]
    if backend == "tensorflow":
        from mnist_vae import tf_engine

        # Keras runs without XLA when op determinism is on (and warns when asked for it): never ask then.
        jit = jit and not config.deterministic and not tf_engine.op_determinism_enabled()
        # XLA cannot reach the other replicas' copies of a variable (TensorFlow's "XLA known issues").
        jit = jit and not devices.in_sync
    per_call = 1  # under tf.distribute too: TensorFlow cannot run the collectives inside Keras' multi-step loop
    if backend == "tensorflow" and config.arch == "dense" and not devices.in_sync:
        per_call = max(d for d in range(1, 17) if steps_per_epoch % d == 0)
    return {"jit_compile": jit, "steps_per_execution": per_call}


def noise_dim(config):
    """Numbers of reparameterisation noise per draw that the batches carry for this run's model."""
    from mnist_vae import families

    return families.of(config).noise_per_draw(config)


def model_of(settings):
    """The (untrained) VAE that these settings build (a config.Config): its family's (mnist_vae/families.py)."""
    from mnist_vae import families

    return families.build(settings)


def layer_signature(vae):
    """What must match between a saved model and the settings of its run: each encoder and decoder layer's
    kind, activation and weight shapes, and the likelihood."""
    return [vae.likelihood, bool(vae.conditional), type(vae).__name__,
            [tuple(w.shape) for w in vae.weights if w.trainable]] + [
        (layer.__class__.__name__, getattr(getattr(layer, "activation", None), "__name__", None),
         [tuple(w.shape) for w in layer.weights], getattr(layer, "low", None), getattr(layer, "high", None))
        for part in (vae.encoder, vae.decoder) for layer in part.layers]


def check_model_matches(vae, settings, model_path):
    """A RunError unless vae is a VAE of the kind and shapes that the run's settings (a config.Config) build (a
    model.keras copied in from another run, or not a VAE at all, is refused in one line)."""
    from model import VAE

    if not isinstance(vae, VAE):
        raise RunError(f"{model_path} is a {vae.__class__.__name__}, not a VAE of model.py: not this run's model")
    expected = model_of(settings)
    if layer_signature(vae) != layer_signature(expected):
        found, saved = (int(m.decoder.inputs[0].shape[-1]) for m in (vae, expected))
        how = (f"its z has {found} dimensions where config.json says {saved}" if found != saved else
               "its layers are not those that config.json's settings build")
        raise RunError(f"{model_path} is not this run's model ({how}): was it copied from another run?")


def saved_model(folder, model_path=None):
    """(a run's model.keras loaded in Keras' safe mode, the epoch it was trained to) for a runfolder.RunFolder:
    refused in one line when it cannot load or is not the model the run's settings build."""
    import keras

    from mnist_vae import families

    families.import_all()  # every family's classes, for Keras to load
    model_path = model_path or folder.file("model.keras")
    try:  # evaluating needs no optimizer: the training compile is left out
        vae = keras.saving.load_model(model_path, compile=False)
    except Exception as e:
        raise RunError(f"{model_path}: cannot load ({e.__class__.__name__}: "
                       f"{str(e).splitlines()[0][:200]})") from None
    check_model_matches(vae, folder.settings, model_path)
    return vae, folder.model_epoch(vae)


def new_model(config, pixel_means=None):
    """The untrained VAE of these settings (model_of), its weights initialised from the run's seed under its
    precision policy (the same on every worker; call it inside the devices' scope). pixel_means: the training
    images' mean pixels, for --output-bias pixel-means."""
    import keras

    from model import output_bias_from_pixel_means

    keras.mixed_precision.set_global_policy(config.precision)
    keras.utils.set_random_seed(config.seed)  # weight initialisation
    vae = model_of(config)
    if config.output_bias == "pixel-means":
        output_bias_from_pixel_means(vae, pixel_means)
    return vae


def learning_rate(config, done):
    """Adam's learning rate for the first epoch still to train (a staged schedule's after `done` epochs)."""
    from mnist_vae.presets import learning_rate_at

    return learning_rate_at(done, config.lr, config.lr_schedule)


def made_ready(vae, config, devices, run_dir, state):
    """After compile: the optimizer's variables made inside the devices' scope (so they are distributed too),
    the model placed on the devices, and a resumed run's weights, optimizer and counters restored from its
    checkpoint (its history file cut back to the checkpoint's)."""
    from mnist_vae import checkpoints

    with devices.scope():
        vae.build_optimizer()
    devices.prepare(vae)
    if state:
        with devices.scope():
            checkpoints.restore(vae, run_dir, state)
        checkpoints.write_history(run_dir, state["history"])  # drops a row written after the last commit
        if state["epoch"] < config.epochs:
            print(f"resuming {run_dir} after epoch {state['epoch']}")
    return vae


def versions(backend):
    """What config.json records of the software a run ran on."""
    import keras
    import numpy as np

    return {"python": platform.python_version(), backend: importlib.import_module(backend).__version__,
            "keras": keras.__version__, "numpy": np.__version__}
