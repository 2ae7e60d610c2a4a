"""Building the model a run trains (training itself is Keras' fit, in run.py): refused up front when it cannot
fit in memory, built and compiled for the run's devices with the options that measured fastest per backend
(docs/performance.md), restored from the checkpoint, the callbacks fit runs it with, and the check that a
saved model is the one a run's settings build."""
import importlib
import os
import platform

from mnist_vae.backends import has_gpu
from mnist_vae.rundir import RunError

# Values per decoded row in the conv decoder: 7x7x64, 14x14x64 and 28x28x32 feature maps and the 784 logits.
CONV_DECODER_ACTIVATIONS = 7 * 7 * 64 + 14 * 14 * 64 + 28 * 28 * 32 + 784
CONV_FEATURES = 7 * 7 * 64  # the conv encoder's flattened features, and the conv decoder's first dense layer
PIXELS, CLASSES = 28 * 28, 10
MAX_STEPS = 2**31 - 1  # the model counts its training steps in an int32

STAGE_NLL_IMAGES = 2000  # held-out images whose NLL a staged run records at the end of each stage


def _dense_weights(widths):
    return sum((a + 1) * b for a, b in zip(widths, widths[1:]))


def parameter_count(arch, latent_dim, hidden, conditional=False, pseudo_inputs=0, activation="relu",
                    stochastic_layers=1):
    """Weights of the VAE model.py builds (with a VampPrior's pseudo-inputs, images of PIXELS each; with two
    stochastic layers, two_layer.py's), counted without building it (arithmetic only: it refuses a model too
    large for memory before any allocation is tried)."""
    label = CLASSES if conditional else 0
    if stochastic_layers == 2:  # the one-layer model to z1 (2d), and a second one between z1 and z2 (d)
        from mnist_vae.two_layer import z1_dim

        d1, widths = z1_dim(latent_dim), [int(w) for w in str(hidden).split(",")]
        middle = [d1] * len(widths)
        stacks = [[PIXELS, *widths], [d1, *middle], [latent_dim, *middle], [d1, *widths[::-1]]]
        heads = 2 * (widths[-1] + 1) * d1 + 2 * (d1 + 1) * latent_dim + 2 * (d1 + 1) * d1 + (widths[0] + 1) * PIXELS
        return sum(_dense_weights(stack) for stack in stacks) * (2 if activation == "gated" else 1) + heads
    if arch == "dense":
        widths = [int(w) for w in str(hidden).split(",")]
        gates = _dense_weights([PIXELS + label, *widths]) + _dense_weights([latent_dim + label, *widths[::-1]]) if (
            activation == "gated") else 0  # a gate's weights beside each hidden layer's
        encoder = _dense_weights([PIXELS + label, *widths]) + 2 * (widths[-1] + 1) * latent_dim
        return (encoder + _dense_weights([latent_dim + label, *widths[::-1], PIXELS]) + pseudo_inputs * PIXELS
                + gates)
    convolutions = (9 * 1 + 1) * 32 + (9 * 32 + 1) * 64 + (9 * 64 + 1) * 64 + (9 * 64 + 1) * 32 + (9 * 32 + 1) * 1
    return (convolutions + 2 * (CONV_FEATURES + label + 1) * latent_dim + (latent_dim + label + 1) * CONV_FEATURES
            + pseudo_inputs * PIXELS)


def check_run_fits(config, train_images):
    """Refuse up front a run whose model and Adam state, or one training step's activations (a huge --k),
    cannot fit in memory (an allocation that large fails deep inside the backend, with a traceback or an
    abort), or whose steps overflow the model's step counter."""
    from mnist_vae.data import memory_bytes

    weights = parameter_count(config.arch, config.latent_dim, config.hidden, config.conditional,
                              config.pseudo_inputs if config.prior == "vampprior" else 0, config.activation,
                              config.stochastic_layers)
    needed = weights * 4 * 4  # float32 weights, their gradients and Adam's two moments
    if needed > memory_bytes():
        hidden = f" --hidden {config.hidden}" if config.arch == "dense" else ""
        raise RunError(f"--arch {config.arch}{hidden} --latent-dim {config.latent_dim}: the model would "
                       f"have {weights / 1e6:,.0f} million weights, about {needed / 1e9:,.0f} GB with Adam's state, "
                       f"more than this machine's {memory_bytes() / 1e9:,.0f} GB of memory")
    # One training step decodes batch x k rows; their activations are kept for the backward pass.
    rows = config.batch_size * (config.k if config.objective == "iwae" else 1)
    per_row = (sum(int(w) for w in str(config.hidden).split(",")) + 3 * PIXELS if config.arch == "dense"
               else CONV_DECODER_ACTIVATIONS)
    needed = rows * per_row * 4 * 3  # float32 activations, their gradients and the loss's per-pixel terms
    if needed > memory_bytes() // 2:
        raise RunError(f"--objective {config.objective} --k {config.k} --batch-size {config.batch_size}: one "
                       f"training step would decode {rows:,} rows at once, about {needed / 1e9:,.0f} GB of "
                       f"activations, more than half of this machine's {memory_bytes() / 1e9:,.0f} GB of memory; "
                       "lower --k or --batch-size")
    if config.prior == "vampprior":
        needed = vampprior_bytes(config)
        if needed > memory_bytes():
            raise RunError(f"--prior vampprior --pseudo-inputs {config.pseudo_inputs:,}: training and evaluating would "
                           f"hold about {needed / 1e9:,.1f} GB (the pseudo-inputs' weights with Adam's state, their "
                           f"pass through the encoder each step, the mixture's terms), more than this machine's "
                           f"{memory_bytes() / 1e9:,.0f} GB of memory; lower --pseudo-inputs")
    steps = -(-train_images // config.batch_size) * config.epochs
    if steps > MAX_STEPS:
        raise RunError(f"--epochs {config.epochs:,} of {train_images:,} images at --batch-size {config.batch_size} are "
                       f"{steps:,} steps, more than the {MAX_STEPS:,} the model counts: fewer epochs or a larger batch")


def vampprior_bytes(config):
    """What a VampPrior run holds at its peak, in bytes, counted from its settings: per pseudo-input, its pixels'
    weights, gradients and Adam's two moments (16 bytes each), and what one training step keeps of its pass
    through the encoder (the pixels three times, each hidden layer's four tensors of a gated layer, the batch's
    (batch, K, d) mixture terms), in float32; plus the evaluation's mixture block (vampprior.MIXTURE_VALUES_PER_CALL,
    three tensors of it) and the process itself (1 GB). Checked against measured peaks in test_build.py."""
    from mnist_vae.vampprior import MIXTURE_VALUES_PER_CALL

    hidden = sum(int(w) for w in str(config.hidden).split(","))
    rows = config.batch_size * (config.k if config.objective == "iwae" else 1)
    per_input = 16 * PIXELS + 4 * (3 * PIXELS + 4 * hidden + rows * config.latent_dim)
    return config.pseudo_inputs * per_input + 3 * 4 * MIXTURE_VALUES_PER_CALL + (1 << 30)


def speed_options(config, steps_per_epoch, devices, epochs_to_run=None):
    """compile() options that measurably speed training up on each backend (bench.py; docs/performance.md).

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
    """Numbers of reparameterisation noise per draw: the latent dimensions (3 x --latent-dim with two
    stochastic layers: z1's and z2's)."""
    from mnist_vae.two_layer import NOISE_PER_TOP_DIM

    return config.latent_dim * (NOISE_PER_TOP_DIM if getattr(config, "stochastic_layers", 1) == 2 else 1)


def log_var_range(settings):
    """(low, high) that the encoder clamps z_log_var to, or None."""
    low, high = getattr(settings, "log_var_min", None), getattr(settings, "log_var_max", None)
    return None if low is None else (low, high)


def model_of(settings):
    """The (untrained) VAE that these settings build (a config.Config, or one alike), counting its training
    steps (count_steps), trained with DReG's gradient under --gradient dreg."""
    from model import build_vae

    if getattr(settings, "stochastic_layers", 1) == 2:
        from mnist_vae.two_layer import build_two_layer_vae

        return count_steps(build_two_layer_vae(
            settings.latent_dim, settings.hidden, settings.activation, log_var_range(settings), beta=settings.beta,
            seed=settings.seed, objective=settings.objective, k=settings.k or 1, likelihood=settings.likelihood))
    vae = build_vae(settings.arch, settings.latent_dim, settings.hidden, settings.beta, seed=settings.seed,
                    objective=settings.objective, k=settings.k or 1, conditional=settings.conditional,
                    likelihood=settings.likelihood, activation=settings.activation,
                    log_var_range=log_var_range(settings))
    if getattr(settings, "prior", "standard") == "vampprior":  # the same networks under the learned prior
        from mnist_vae.vampprior import VampPriorVAE

        vae = VampPriorVAE(vae.encoder, vae.decoder, pseudo_inputs=settings.pseudo_inputs, beta=settings.beta,
                           seed=settings.seed, objective=settings.objective, k=settings.k or 1,
                           likelihood=settings.likelihood, name="vae")
    if getattr(settings, "gradient", "plain") == "dreg":  # how it trains: the model itself is the plain VAE
        from mnist_vae.dreg import use_dreg

        use_dreg(vae)
    return count_steps(vae)


def count_steps(vae):
    """Make vae's training step count itself and record the first step whose loss is not finite, in its
    steps_taken and first_nonfinite_step (saved with the model: evaluate.py reads a model's epoch from the
    first). Done inside the compiled step, where several steps run per call into the backend and a callback
    could not name the batch at which a run diverged (checkpoints.EpochCheckpoint names it)."""
    from keras import ops

    compute_loss = vae.compute_loss

    def counted(x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
        if training:
            step, first = vae.steps_taken.value, vae.first_nonfinite_step.value
            first_bad = ops.logical_and(ops.logical_not(ops.isfinite(loss)), first < 0)
            vae.first_nonfinite_step.assign(ops.where(first_bad, step, first))
            vae.steps_taken.assign(step + 1)
        return loss

    vae.compute_loss = counted
    return vae


def layer_signature(vae):
    """What must match between a saved model and the settings of its run: each encoder and decoder layer's
    kind, activation and weight shapes, and the likelihood."""
    return [vae.likelihood, bool(vae.conditional), type(vae).__name__, getattr(vae, "pseudo_inputs", None)] + [
        (layer.__class__.__name__, getattr(getattr(layer, "activation", None), "__name__", None),
         [tuple(w.shape) for w in layer.weights], getattr(layer, "low", None), getattr(layer, "high", None))
        for part in (vae.encoder, vae.decoder) for layer in part.layers]


def check_model_matches(vae, saved, model_path):
    """A RunError unless vae is a VAE of the kind and shapes that saved (a config.json's dict) builds (a
    model.keras copied in from another run, or not a VAE at all, is refused in one line)."""
    from mnist_vae.config import from_saved
    from model import VAE

    if not isinstance(vae, VAE):
        raise RunError(f"{model_path} is a {vae.__class__.__name__}, not a VAE of model.py: not this run's model")
    expected = model_of(from_saved(saved))
    if layer_signature(vae) != layer_signature(expected):
        found, saved = (int(m.decoder.inputs[0].shape[-1]) for m in (vae, expected))
        how = (f"its z has {found} dimensions where config.json says {saved}" if found != saved else
               "its layers are not those that config.json's settings build")
        raise RunError(f"{model_path} is not this run's model ({how}): was it copied from another run?")


def build_model(config, devices, steps, run_dir, state, pixel_means=None):
    """The VAE, compiled for this run's devices and speed options, restored from the checkpoint if any.
    pixel_means: the training images' mean pixels, for --output-bias pixel-means."""
    import keras

    from mnist_vae import checkpoints
    from mnist_vae.presets import learning_rate_at
    from model import output_bias_from_pixel_means

    done = state["epoch"] if state else 0
    keras.mixed_precision.set_global_policy(config.precision)
    keras.utils.set_random_seed(config.seed)  # weight initialisation (the same on every worker)
    with devices.scope():
        vae = model_of(config)
        if config.output_bias == "pixel-means":
            output_bias_from_pixel_means(vae, pixel_means)
        options = speed_options(config, steps, devices, epochs_to_run=max(1, config.epochs - done))
        optimizer = keras.optimizers.Adam(learning_rate_at(done, config.lr, config.lr_schedule),
                                          epsilon=config.adam_epsilon)
        vae.compile(optimizer=optimizer, **options)
        vae.build_optimizer()  # its variables, made inside the scope, are distributed too
    devices.prepare(vae)
    if state:
        with devices.scope():
            checkpoints.restore(vae, run_dir, state)
        checkpoints.write_history(run_dir, state["history"])  # drops a row written after the last commit
        if done < config.epochs:
            print(f"resuming {run_dir} after epoch {done}")
    return vae


def stage_nll(config, x_test, y_test):
    """For a staged run, the callback that records the test NLL at the end of each stage (callbacks.StageNLL):
    k = 1000 on the first STAGE_NLL_IMAGES test images, a few percent of the run's time. None otherwise."""
    from mnist_vae import data
    from mnist_vae.callbacks import StageNLL
    from mnist_vae.evaluation import IW_SAMPLES
    from mnist_vae.presets import staged_passes

    if config.lr_schedule != "staged":
        return None
    labels = y_test[:STAGE_NLL_IMAGES] if config.conditional else None
    return StageNLL(data.as_float(x_test[:STAGE_NLL_IMAGES]), labels, IW_SAMPLES,
                    [staged_passes(stage) for stage in range(1, config.stages + 1)])


def checkpoint_saver(config, run_dir, state, frames):
    """The epoch checkpoint (checkpoints.EpochCheckpoint), continuing a resumed run's history; with
    --early-stopping it also keeps the best epoch's weights."""
    from mnist_vae import checkpoints, early_stopping

    best_epoch_of = None
    if config.early_stopping:
        def best_epoch_of(rows):
            return early_stopping.progress(rows, config.early_stopping, config.kl_warmup)[1]
    return checkpoints.EpochCheckpoint(run_dir, state["history"] if state else [], frames=frames,
                                       best_epoch_of=best_epoch_of, best=(state or {}).get("best_weights"),
                                       training_seconds=state.get("training_seconds") if state else 0.0)


def callbacks(config, run_dir, guard, held_out, frames, saver, validation=None, stage_end=None):
    """fit's callbacks, in the order they must see each epoch's end: the signal check, the KL weight and
    learning rate, the held-out (and validation) loss and a stage's NLL (into the logs), the epoch's frame, the
    NaN stop, the checkpoint (it commits what the others added), TensorBoard's logs of what it committed, and early
    stopping's judgement."""
    import keras

    from mnist_vae import early_stopping
    from mnist_vae.callbacks import HeldOutLoss, KLWarmup
    from mnist_vae.presets import learning_rate_at

    tensorboard = []
    if config.tensorboard:  # after the checkpoint: it logs what the checkpoint committed
        from mnist_vae.tensorboard import CommittedEpochLogs

        tensorboard = [CommittedEpochLogs(os.path.join(run_dir, "tensorboard"), saver, frames.frames)]
    # Keras' own scheduler sets a staged rate at each epoch's start: a function of the epoch, so resuming
    # mid-stage continues the schedule exactly. A constant rate is the optimizer's own, restored with it.
    schedule = [] if config.lr_schedule == "constant" else [keras.callbacks.LearningRateScheduler(
        lambda epoch, _: learning_rate_at(epoch, config.lr, config.lr_schedule))]
    validating = [HeldOutLoss(validation, prefix="validation_")] if validation else []
    early = [early_stopping.callback(config.early_stopping, saver.rows, config.kl_warmup)] if (
        config.early_stopping) else []  # last: it judges an epoch the others have finished
    return [guard.callback(), KLWarmup(config.beta, config.kl_warmup), *schedule, HeldOutLoss(held_out), *validating,
            *([stage_end] if stage_end else []), frames, keras.callbacks.TerminateOnNaN(), saver, *tensorboard,
            *early]


def versions(backend):
    """What config.json records of the software a run ran on."""
    import keras
    import numpy as np

    return {"python": platform.python_version(), backend: importlib.import_module(backend).__version__,
            "keras": keras.__version__, "numpy": np.__version__}
