"""Train a variational autoencoder on MNIST and save the model, its numbers and the plots that explain it.

    python train.py                                          # downloads MNIST the standard Keras way
    python train.py --data ../shared/data/mnist --epochs 5   # offline, from the IDX files
    python train.py --resume outputs/RUN --epochs 50         # continue a run, interrupted or finished

Every run writes a new folder <out>/<run-name>/: config.json, history.csv, metrics.json, model.keras,
the PNG figures and a per-epoch checkpoint. Losses are in nats per image.
"""
import argparse
import hashlib
import os
import shlex
import shutil
import sys
import time

import cli
from cli import number_in_range
from runs import CONFIG_FORMAT
from stopping import SignalGuard

# Flags that --resume takes anew; the others must match the run's saved config.
RESUME_MAY_CHANGE = {"epochs", "data", "jit", "resume", "iw_samples", "device", "distribute", "backend", "tensorboard"}


# ------------------------------------------------------------------ flags

def build_parser(suppress_defaults=False):
    p = argparse.ArgumentParser(
        description="Train a VAE on MNIST; writes the model, metrics and plots to <out>/<run-name>/.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        argument_default=argparse.SUPPRESS if suppress_defaults else None,
    )

    def flag(name, default, **kwargs):
        p.add_argument(name, **kwargs, **({} if suppress_defaults else {"default": default}))

    flag("--epochs", 30, type=number_in_range(int, 1), help="passes over the training images")
    flag("--batch-size", 128, type=number_in_range(int, 1), help="images per step (the global batch)")
    flag("--latent-dim", 2, type=number_in_range(int, 1), help="size of z")
    flag("--arch", "dense", choices=("dense", "conv"),
         help="dense: 784-hidden-latent MLP; conv: two stride-2 convolutions (32, 64 filters)")
    flag("--hidden", 512, type=number_in_range(int, 1), help="width of the dense hidden layer")
    flag("--lr", 1e-3, type=number_in_range(float, 0, low_ok=False), help="Adam learning rate")
    flag("--beta", 1.0, type=number_in_range(float, 0), help="weight of the KL term")
    flag("--objective", "elbo", choices=("elbo", "iwae"),
         help="elbo: reconstruction + beta * KL with one z per image; iwae: the importance-weighted bound with --k "
              "samples per image (Burda et al. 2015), tighter than the ELBO as k grows")
    flag("--k", None, type=number_in_range(int, 1),
         help="importance samples per image in training, with --objective iwae (default 5)")
    flag("--conditional", False, action="store_true",
         help="a conditional VAE: encoder and decoder also get the digit's label (one-hot), so samples.png draws "
              "each digit on request; the bound is then on log p(x | label)")
    flag("--kl-warmup", 0, type=number_in_range(int, 0),
         help="epochs over which the KL weight rises linearly from 0 to --beta (0: no warm-up)")
    flag("--binarize", "none", choices=("none", "static", "dynamic"),
         help="none: grey pixels (the loss is then not a likelihood); static: binarized once; dynamic: "
              "re-drawn as Bernoulli(grey) every batch (the standard for published MNIST numbers)")
    flag("--likelihood", "bernoulli", choices=("bernoulli", "continuous-bernoulli"),
         help="p(x|z) per pixel: bernoulli (the cross-entropy; a likelihood of binarized pixels only) or "
              "continuous-bernoulli (Loaiza-Ganem & Cunningham 2019: a true density of grey pixels in [0, 1]; "
              "needs --binarize none)")
    flag("--iw-samples", 1000, type=number_in_range(int, 1),
         help="importance samples per test image for the NLL estimate at the end (evaluate.py)")
    flag("--seed", 0, type=number_in_range(int, 0, high=2**32), help="seed for weights, shuffling and sampling")
    flag("--deterministic", False, action="store_true",
         help="deterministic TensorFlow ops: runs and resumes repeat bit for bit")
    flag("--data", None, metavar="PATH",
         help="offline data: a folder of MNIST IDX files (plain or .gz) or a Keras-layout .npz; "
              "default: download with keras.datasets")
    flag("--dataset", "mnist", choices=("mnist", "fashion_mnist"), help="which dataset to download without --data")
    flag("--val-split", 0.2, type=number_in_range(float, 0, low_ok=False, high=1),
         help="fraction held out as the test set when the data has only one split")
    flag("--limit", None, type=number_in_range(int, 1),
         help="use only the first N training images (and N/4 test images) for a quick run")
    flag("--precision", "float32", choices=("float32", "mixed_float16", "mixed_bfloat16"),
         help="Keras mixed-precision policy: layers compute in float16/bfloat16, weights, losses and metrics "
              "stay float32 (float16 adds Keras' dynamic loss scaling)")
    cli.add_backend_flag(p, argparse.SUPPRESS if suppress_defaults else None)
    flag("--device", "auto", choices=("auto", "cpu"), help="auto: use a GPU when the backend sees one; cpu: never")
    flag("--distribute", "none", choices=("none", "mirrored", "multiworker"),
         help="mirrored: all of this machine's devices (tensorflow: tf.distribute.MirroredStrategy; jax: "
              "keras.distribution.DataParallel); multiworker (tensorflow): MultiWorkerMirroredStrategy over "
              "the machines that TF_CONFIG names (one process per machine). --batch-size stays the global "
              "batch; losses and gradients equal a single device's")
    flag("--tensorboard", False, action="store_true",
         help="also log for TensorBoard into <run>/tensorboard/: the loss terms for train and test per epoch and "
              "the samples from fixed z as an image per epoch (view: tensorboard --logdir outputs)")
    flag("--jit", "auto", choices=("auto", "on", "off"),
         help="compile the training step (XLA on tensorflow and jax, torch.compile on torch); auto: what "
              "measured fastest here (tensorflow: on for dense models or with a GPU; jax: on; torch: on for "
              "dense runs of 500,000 images or more, whose speed-up repays compiling)")
    flag("--out", "outputs", help="folder that receives one sub-folder per run")
    flag("--run-name", None, type=cli.folder_name,
         help="name of this run's folder inside --out (default: time, arch and latent size)")
    flag("--resume", None, metavar="RUN_DIR",
         help="continue that run from its last completed epoch with its saved config (--epochs may be raised)")
    return p


def parse_args(argv=None):
    """(flags, names of the flags given explicitly): --resume checks the latter against the saved config."""
    argv = sys.argv[1:] if argv is None else argv
    return build_parser().parse_args(argv), set(vars(build_parser(suppress_defaults=True).parse_args(argv)))


def reproduce_command(args):
    """The train.py command that repeats this run: every flag that differs from its default, shell-quoted."""
    defaults = vars(build_parser().parse_args([]))
    words = ["python", "train.py"]
    for name, default in defaults.items():
        value = getattr(args, name)
        if name in ("resume", "out", "run_name", "device", "distribute") or value == default:
            continue  # where a run goes and what runs it do not change what it computes
        if name == "k" and (args.objective != "iwae" or value == 5):
            continue  # the ELBO's one sample, and IWAE's default
        flag = "--" + name.replace("_", "-")
        words += [flag] if value is True else [flag, str(value)]
    return shlex.join(words)


def resumed_args(args, given):
    """The run's saved settings, updated by the flags --resume may change; refuses contradictions."""
    from runs import RunError, read_config

    saved = read_config(args.resume, CONFIG_FORMAT)
    check_saved_settings(saved, os.path.join(args.resume, "config.json"))
    if "backend" not in given and os.environ.get("KERAS_BACKEND"):
        given = given | {"backend"}  # KERAS_BACKEND counts as a choice; without either, the run's own backend
    for name in sorted(given - RESUME_MAY_CHANGE):
        if getattr(args, name) != saved.get(name):
            flag = "--" + name.replace("_", "-")
            raise RunError(f"{flag} {getattr(args, name)} contradicts the saved config of {args.resume} "
                           f"({flag} {saved.get(name)}); --resume continues a run as configured")
    resumed = argparse.Namespace(**{**vars(args), **saved, **{k: getattr(args, k) for k in given & RESUME_MAY_CHANGE}})
    resumed.backend = resumed.backend or cli.default_backend()
    return resumed


def check_saved_settings(saved, path):
    """Each flag's value in a saved config passes the checks the flag itself makes (a hand-edited or
    damaged config.json is one line, not a traceback deep in training)."""
    from runs import RunError

    for action in build_parser()._actions:
        name, value = action.dest, saved.get(action.dest)
        if name not in saved or value is None or value == action.default or name in ("resume", "help"):
            continue
        try:
            ok = (action.choices is None or value in action.choices) and (
                action.type is None or action.type(str(value)) == value)
        except (argparse.ArgumentTypeError, TypeError, ValueError):
            ok = False
        if not ok:
            raise RunError(f"{path}: {name} = {value!r} is not a valid {action.option_strings[0]}; "
                           "the file was edited or damaged")


# ------------------------------------------------------------------ stopping safely

PIXELS = {
    "none": "grey levels (--binarize none): the losses are training objectives, not likelihoods",
    "static": "binarized once (--binarize static): losses are bounds on a Bernoulli likelihood",
    "dynamic": "re-binarized every batch (--binarize dynamic): losses are bounds on a Bernoulli likelihood",
    "continuous-bernoulli": "grey levels under a continuous Bernoulli (--likelihood continuous-bernoulli): losses "
                            "are bounds on a true density of the grey images (nats per image; they may be negative)",
}


def pixels_note(binarize, likelihood="bernoulli"):
    """What the pixels are and what the losses then mean, in one line."""
    return PIXELS["continuous-bernoulli" if likelihood == "continuous-bernoulli" else binarize]


# ------------------------------------------------------------------ several devices and machines

def resume_hint(devices, run_dir):
    return f"--resume {shlex.quote(run_dir)}" if devices.chief else "--resume CHIEF'S_RUN_FOLDER"


def weights_digest(vae):
    """A short fingerprint of every weight, to check that all workers ended with the same model."""
    digest = hashlib.sha256()
    for value in vae.get_weights():
        digest.update(value.tobytes())
    return digest.hexdigest()[:16]


def backend_versions(backend):
    import importlib
    import platform

    import keras
    import numpy as np

    return {"python": platform.python_version(), backend: importlib.import_module(backend).__version__,
            "keras": keras.__version__, "numpy": np.__version__}


# ------------------------------------------------------------------ the run


def speed_options(args, steps_per_epoch, devices, epochs_to_run=None):
    """compile() options that measurably speed training up on each backend (bench.py; the README's table).

    --jit auto: TensorFlow compiles dense models with XLA (and everything on a GPU; XLA's CPU convolutions
    measured 1.8x slower than TensorFlow's own). JAX always compiles (op by op it is many times slower).
    PyTorch compiles dense models with torch.compile only for long runs: 2x faster per step (13,000
    against 6,000 images/s) but about 50 s of compiling, which pays off after some 500,000 images; on the
    conv model it measured slower. Several steps per call cut TensorFlow's per-step overhead (JAX: within
    noise); they must divide the epoch, or Keras would run the last call into the next epoch's batches.
    """
    from distribute import has_gpu

    backend = args.backend
    images = steps_per_epoch * args.batch_size * (epochs_to_run or args.epochs)
    auto = {"tensorflow": args.arch == "dense" or has_gpu(backend),
            "jax": True,
            "torch": args.arch == "dense" and images >= 500_000}[backend]
    jit = {"on": True, "off": False, "auto": auto}[args.jit]
    if backend == "tensorflow":
        jit = jit and not args.deterministic  # Keras runs without XLA when op determinism is on
        # XLA cannot reach the other replicas' copies of a variable (TensorFlow's "XLA known issues").
        jit = jit and not devices.in_sync
    per_call = 1  # under tf.distribute too: TensorFlow cannot run the collectives inside Keras' multi-step loop
    if backend == "tensorflow" and args.arch == "dense" and not devices.in_sync:
        per_call = max(d for d in range(1, 17) if steps_per_epoch % d == 0)
    return {"jit_compile": jit, "steps_per_execution": per_call}


def train(args, given):
    import contextlib
    import tempfile

    from distribute import Devices
    from runs import RunLock, make_run_dir, remove_stale_temporaries

    if args.resume:
        run_dir, args = args.resume, resumed_args(args, given)
    else:
        args.backend = args.backend or cli.default_backend()
    if args.objective == "elbo" and args.k not in (None, 1):
        raise cli.UserError(f"--k {args.k} needs --objective iwae (the ELBO draws one z per image)")
    if args.likelihood == "continuous-bernoulli" and args.binarize != "none":
        raise cli.UserError(f"--likelihood continuous-bernoulli is for grey pixels: with --binarize {args.binarize} "
                            "the plain Bernoulli (the default) is already the exact likelihood")
    args.k = args.k or (5 if args.objective == "iwae" else 1)
    if args.data and (not args.resume or "data" in given):
        args.data = os.path.abspath(args.data)  # so that evaluate.py and --resume find it from anywhere
    # Before Keras is imported and before any data is loaded: a missing backend is one line.
    cli.select_backend(args.backend, args.device)
    devices = Devices(args.backend, args.distribute)
    if not args.resume and devices.chief:  # the output folder is checked before any time is spent
        run_dir = make_run_dir(args.out, args.run_name, label=f"{args.arch}-z{args.latent_dim}")
    # One writer per run folder: the chief holds it to the end; other workers write into a copy.
    with RunLock(run_dir) if devices.chief else contextlib.nullcontext():
        scratch = None
        if args.resume and devices.chief:
            remove_stale_temporaries(run_dir)
        if not devices.chief:
            scratch = tempfile.mkdtemp(prefix=f"mnist-vae-{devices.worker.type}{devices.worker.index}-")
            if args.resume:
                shutil.copytree(run_dir, scratch, dirs_exist_ok=True)
            run_dir = scratch

        def interrupted(name):  # a signal outside fit: loading, compiling, or the final evaluation and figures
            if os.path.exists(os.path.join(run_dir, "checkpoint", "state.json")):
                return (f"interrupted by {name}; every completed epoch is in the run's checkpoint; continue with: "
                        f"python train.py {resume_hint(devices, run_dir)}")
            return f"interrupted by {name} before the first epoch completed"

        def cleanup():
            if not args.resume and devices.chief:
                remove_if_empty(run_dir)
            if scratch:
                shutil.rmtree(scratch, ignore_errors=True)

        try:
            with SignalGuard(interrupted, cleanup) as guard:
                return _train_in(run_dir, args, devices, guard)
        except BaseException:
            if not args.resume and devices.chief:
                remove_if_empty(run_dir)  # nothing was earned: leave no empty folder behind
            raise
        finally:
            if scratch:
                shutil.rmtree(scratch, ignore_errors=True)


def remove_if_empty(run_dir):
    from runs import LOCK_NAME

    if os.path.isdir(run_dir) and set(os.listdir(run_dir)) <= {LOCK_NAME}:
        shutil.rmtree(run_dir, ignore_errors=True)


def is_complete(run_dir, epochs):
    """Whether the run's final outputs for `epochs` epochs are all written (metrics.json goes last)."""
    import json

    try:
        with open(os.path.join(run_dir, "metrics.json")) as f:
            metrics = json.load(f)
    except (OSError, ValueError):
        return False
    return (isinstance(metrics, dict) and metrics.get("partial") is False and metrics.get("epochs") == epochs
            and all(os.path.isfile(os.path.join(run_dir, name)) for name in ("model.keras", "eval.json", "report.html")))


def _train_in(run_dir, args, devices, guard):
    import contextlib

    import data  # NumPy only: bad data is reported before the backend starts
    from runs import RunError, write_error, write_json

    started = time.time()
    splits = data.load_for_run(args.data, args.dataset, args.val_split, args.limit, args.binarize, args.seed)
    if args.conditional and splits.y_train is None:
        raise data.DataError(f"--conditional needs the digits' labels, and {splits.source} has none (an .npz needs "
                             "y_train and y_test; an IDX folder the *-labels-idx1-ubyte files)")
    print(f"data: {splits.source}: {len(splits.x_train)} training and {len(splits.x_test)} test images")
    if splits.note:
        print(f"note: {splits.note}")
    print(f"pixels: {pixels_note(args.binarize, args.likelihood)}")
    if args.resume and (len(splits.x_train), len(splits.x_test)) != (args.train_images, args.test_images):
        raise data.DataError(f"{splits.source}: {len(splits.x_train)}/{len(splits.x_test)} training/test images, "
                             f"but the run was trained on {args.train_images}/{args.test_images}")

    from distribute import start_keras

    keras = start_keras()
    with cli.quiet_start_up():
        devices.start(deterministic=args.deterministic)

    import checkpoints
    import figures
    from model import HeldOutLoss, KLWarmup, noise_shape

    check_model_fits_in_memory(args)

    state = checkpoints.read_state(run_dir) if args.resume else None
    done = state["epoch"] if state else 0
    resume = resume_hint(devices, run_dir)  # what to run to continue, as the messages below say
    if done >= args.epochs:
        if is_complete(run_dir, done):
            print(f"{run_dir} is complete ({done} epochs; model.keras, metrics.json, eval.json and report.html are "
                  f"written); nothing to do. To train on: python train.py {resume} --epochs {done + 10}")
            return 0
        print(f"all {done} epochs of {run_dir} are trained; writing the outputs it is missing")
        args.epochs = done

    print(f"backend: {args.backend}" + ("" if devices.replicas == 1 else f", {devices.replicas} replicas"))
    if args.arch == "conv" and args.backend == "jax" and args.jit != "off" and not devices.gpu:
        print("hint: XLA's transposed convolutions are slow on a CPU: --backend tensorflow trains the conv "
              "model about 10x faster here")
    config = {**vars(args), "resume": None, "format": CONFIG_FORMAT, "run_dir": run_dir,
              "data_source": splits.source, "train_images": len(splits.x_train), "test_images": len(splits.x_test),
              "versions": backend_versions(args.backend), "command": reproduce_command(args)}
    write_json(os.path.join(run_dir, "config.json"), config)

    noise = noise_shape(args.latent_dim, args.objective, args.k)

    def labels(y):  # only a conditional model reads the labels
        return y if args.conditional else None

    train_batches, steps = devices.training_batches(
        splits.x_train, args.batch_size, args.seed, args.epochs, initial_epoch=done,
        dynamic_binarization=args.binarize == "dynamic", noise_dim=noise, labels=labels(splits.y_train))
    test_batches = data.test_batches(splits.x_test, seed=args.seed, noise_dim=noise, pad_to=devices.pad_to,
                                     labels=labels(splits.y_test))
    vae = build_model(args, devices, steps, run_dir, state)
    # progress.gif's frames: one per epoch, earlier sessions' from the checkpoint
    frames = figures.SampleFrames(args.latent_dim, args.seed, frames=checkpoints.read_frames(run_dir, done),
                                  conditional=args.conditional, likelihood=args.likelihood)
    saver = checkpoints.EpochCheckpoint(run_dir, state["history"] if state else [], frames=frames.frames)

    callbacks = [guard.callback(), KLWarmup(args.beta, args.kl_warmup), HeldOutLoss(test_batches), frames,
                 keras.callbacks.TerminateOnNaN(), saver]
    if args.tensorboard:  # after frames, whose latest frame it logs
        import tf_backend

        callbacks[4:4] = tf_backend.tensorboard_callbacks(os.path.join(run_dir, "tensorboard"), frames.frames)
    if done < args.epochs:
        try:
            vae.fit(train_batches, epochs=args.epochs, steps_per_epoch=steps, initial_epoch=done,
                    shuffle=False,  # the batches come shuffled by (seed, epoch)
                    callbacks=callbacks,
                    verbose=1 if sys.stdout.isatty() else 2)
        except OSError as e:
            with contextlib.suppress(OSError):
                saver.wait()  # a write in flight may still commit an epoch
            raise RunError(write_error(e, f"the checkpoint of epoch {len(saver.rows)} is intact",
                                       f"python train.py {resume}")) from None
        except Exception as e:
            if not devices.is_lost_worker(e):
                raise
            reason = next((line for line in str(e).splitlines() if "unhealthy" in line or "abort" in line),
                          e.__class__.__name__)
            raise RunError(f"another worker stopped or became unreachable ({reason.strip()}); {len(saver.rows)} "
                           f"completed epochs are checkpointed: restart every worker with python train.py {resume}") \
                from None

    return conclude(vae, run_dir, splits, args, config, devices, guard, saver, frames.frames, steps, started)


def check_model_fits_in_memory(args):
    """Refuse up front a dense model whose weights and Adam state cannot fit in memory: an allocation that
    large fails deep inside the backend, with a traceback."""
    import data
    from model import dense_parameters
    from runs import RunError

    if args.arch != "dense":
        return
    weights = dense_parameters(args.latent_dim, args.hidden)
    needed = weights * 4 * 4  # float32 weights, their gradients and Adam's two moments
    if needed > data.memory_bytes():
        raise RunError(f"--hidden {args.hidden} --latent-dim {args.latent_dim}: the model would have "
                       f"{weights / 1e6:,.0f} million weights, about {needed / 1e9:,.0f} GB with Adam's state, "
                       f"more than this machine's {data.memory_bytes() / 1e9:,.0f} GB of memory")


def build_model(args, devices, steps, run_dir, state):
    """The VAE, compiled for this run's devices and speed options, restored from the checkpoint if any."""
    import keras

    import checkpoints
    from model import build_vae

    done = state["epoch"] if state else 0
    keras.mixed_precision.set_global_policy(args.precision)
    keras.utils.set_random_seed(args.seed)  # weight initialisation (the same on every worker)
    with devices.scope():
        vae = build_vae(args.arch, args.latent_dim, args.hidden, args.beta, seed=args.seed, objective=args.objective,
                        k=args.k, conditional=args.conditional, likelihood=args.likelihood)
        options = speed_options(args, steps, devices, epochs_to_run=max(1, args.epochs - done))
        vae.compile(optimizer=keras.optimizers.Adam(args.lr), **options)
        vae.build_optimizer()  # its variables, made inside the scope, are distributed too
    devices.prepare(vae)
    if state:
        with devices.scope():
            checkpoints.restore(vae, run_dir, state)
        checkpoints.write_history(run_dir, state["history"])  # drops a row written after the last commit
        if done < args.epochs:
            print(f"resuming {run_dir} after epoch {done}")
    return vae


def conclude(vae, run_dir, splits, args, config, devices, guard, saver, frames, steps, started):
    """The one place that decides how a run ends (completed, stopped by a signal, or diverged), writes
    what it earned and picks the exit code. frames: progress.gif's frames so far."""
    from model import LOSS_TERMS
    from runs import RunError, write_error

    resume = resume_hint(devices, run_dir)
    epochs_kept = len(saver.rows)
    interrupted, diverged = guard.stopped, saver.diverged
    complete = interrupted is None and diverged is None
    if not complete:
        guard.saving()  # write what the completed epochs earned even if a signal comes again
    if interrupted and devices.multiworker:
        # The other workers are mid-step, waiting for this one: nothing collective can run any more.
        print(f"interrupted by {interrupted} after {epochs_kept} completed epochs, all checkpointed; the other "
              f"workers stop too; continue by restarting every worker with python train.py {resume}",
              file=sys.stderr)
        return 128 + interrupted.signum
    try:
        metrics, results, written = finish(vae, run_dir, splits, saver.rows, args, config, complete,
                                           frames=frames[:epochs_kept])  # never a broken epoch's frame
    except OSError as e:
        raise RunError(write_error(e, f"all {epochs_kept} completed epochs are checkpointed",
                                   f"python train.py {resume} completes the run")) from None
    if devices.multiworker:
        print(f"{devices.worker.type} {devices.worker.index}: weights after epoch {epochs_kept} have sha256 "
              f"{weights_digest(vae)} (the same on every worker)")
    if interrupted:
        print(f"interrupted by {interrupted} after {epochs_kept} completed epochs, all saved; continue with: "
              f"python train.py {resume}", file=sys.stderr)
        return 128 + interrupted.signum
    if diverged:
        epoch, batch = diverged
        kept = f"kept the checkpoint and plots of epoch {epochs_kept}" if epochs_kept else "no epoch had completed"
        raise RunError(f"the loss became NaN or infinite in epoch {epoch}, batch {batch} of {steps}; {kept}; "
                       f"try a lower --lr than {args.lr}")

    import evaluate

    print(f"\ndone in {time.time() - started:.0f} s. Test set ({len(splits.x_test)} images, nats per image, "
          f"binarize={args.binarize}): " + ", ".join(f"{k} {metrics[k]:.2f}" for k in LOSS_TERMS))
    print(evaluate.report(results, args.binarize))
    if not devices.chief:
        print("(this worker's copy of the outputs is discarded: the chief writes the run)")
        return 0
    for name, what in written.items():
        print(f"  {what}" if os.path.sep in what else f"  ({name} {what})")
    return 0



def finish(vae, run_dir, splits, rows, args, config, complete, frames=None):
    """Write what the run earned: model.keras and eval.json (complete runs), the figures, report.html, and
    metrics.json last (its "partial": false marks a complete run). Partial runs use the model of the last completed
    epoch and report that epoch's test numbers. Returns (metrics, eval results or None, {name: path})."""
    import checkpoints
    import data
    import evaluate
    import figures
    import report
    from model import LOSS_TERMS
    from runs import atomic_write, write_json

    written = {name: os.path.join(run_dir, name) for name in ("config.json", "history.csv")}
    x_test = data.as_float(splits.x_test)
    last = rows[-1] if rows else {}
    results = None
    if complete:
        written["model"] = atomic_write(os.path.join(run_dir, "model.keras"), vae.save)
        # One held-out evaluation: metrics.json, eval.json and the console all report its numbers.
        results, posterior = evaluate.evaluate_model(vae, x_test, args.iw_samples, labels=splits.y_test)
        results.update({"epoch": len(rows), "binarize": args.binarize, "data": splits.source})
        written["eval"] = write_json(os.path.join(run_dir, "eval.json"), results)
        metrics = {"loss": results["negative_elbo"], **{k: results[k] for k in LOSS_TERMS[1:]},
                   "loss_is": "the negative ELBO: reconstruction + KL at weight 1 (whatever --beta and the warm-up)",
                   "kl_weight_in_loss": 1.0}
    else:
        state = checkpoints.read_state(run_dir)
        if state:  # the model of the last completed epoch, never a half-trained or diverged one
            checkpoints.restore(vae, run_dir, state)
        metrics = {**{k: last.get("val_" + k) for k in LOSS_TERMS},
                   "loss_is": "the last completed epoch's test loss: reconstruction + kl_weight_in_loss x KL",
                   "kl_weight_in_loss": last.get("kl_weight")}
        posterior = evaluate.encode(vae, x_test, splits.y_test) if rows else None
    if rows:
        written.update(figures.save_all(vae, x_test, splits.y_test, checkpoints.history_columns(rows), run_dir,
                                        posterior, seed=args.seed, frames=frames))
    metrics_file = {
        **metrics, "units": "nats per image", "split": "test", "test_images": len(splits.x_test),
        "epochs": len(rows), "partial": not complete, "kl_weight_last_epoch": last.get("kl_weight"),
        "binarize": args.binarize, "likelihood": args.likelihood, "pixels": pixels_note(args.binarize, args.likelihood),
    }
    written["report"] = report.write(run_dir, config, metrics_file, results, rows)
    written["metrics"] = write_json(os.path.join(run_dir, "metrics.json"), metrics_file)
    return metrics, results, written


def main(argv=None):
    args, given = parse_args(argv)
    try:
        return cli.exit_on_user_error(train, args, given)
    except KeyboardInterrupt:  # before the run's own handlers are in place
        print("\ninterrupted before training started", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
