"""Train a variational autoencoder on MNIST and save the model, its numbers and the plots that explain it.

    python train.py                                          # downloads MNIST the standard Keras way
    python train.py --data ../shared/data/mnist --epochs 5   # offline, from the IDX files
    python train.py --resume outputs/RUN --epochs 50         # continue a run, interrupted or finished

Every run writes a new folder <out>/<run-name>/: config.json, history.csv, metrics.json, model.keras,
the PNG figures, report.html, explorer.html and a per-epoch checkpoint. Losses are in nats per image.

The story, top to bottom: settings -> data -> the backend and devices -> the model -> fit -> outputs.
The machinery of each step lives in the mnist_vae package; model.py holds the model, losses.py its loss.
"""
import importlib.util
import os
import sys

from mnist_vae import backends, cli, data, messages, presets, settings
from mnist_vae.distribute import SUPPORTED, Devices
from mnist_vae.run import Run


def main(argv=None):
    args, given = settings.parse_args(argv)
    try:
        return cli.exit_on_user_error(train, args, given)
    except KeyboardInterrupt:  # before the run's own handlers are in place
        print("\ninterrupted before training started", file=sys.stderr)
        return 130


def train(args, given):
    # 1. Settings: a resumed run continues with its saved ones; contradictions are one line.
    args = resolve_settings(args, given)
    # Before Keras is imported and before any data is loaded: a missing backend is one line.
    backends.select_backend(args.backend, args.device)
    devices = Devices(args.backend, args.distribute)
    with Run(args, devices) as run:  # creates or resumes the folder, locks it, cleans up whatever happens
        # 2. Data: NumPy only, so bad data is reported before the backend starts.
        splits = load_data(args)
        for line in (presets.published_line(args.preset, settings.preset_overrides(vars(args))),  # its yardstick
                     presets.schedule_line(args.lr, args.lr_schedule, args.stages, args.epochs)):
            print(line) if line else None
        # 3. The backend and its devices.
        backends.start_keras(probe_half_precision=False)  # Devices.start probes, after any strategy
        with cli.quiet_start_up():
            devices.start(deterministic=args.deterministic)
        return fit_and_save(run, args, devices, splits)


def resolve_settings(args, given):
    args = settings.resumed_args(args, given) if args.resume else args
    args.backend = args.backend or backends.default_backend()
    if args.objective == "elbo" and args.k not in (None, 1) and "k" in given:
        settings.build_parser().error(f"--k {args.k} needs --objective iwae (the ELBO draws one z per image)")
    if args.likelihood == "continuous-bernoulli" and args.binarize != "none":
        raise cli.UserError(f"--likelihood continuous-bernoulli is for grey pixels: with --binarize {args.binarize} "
                            "the plain Bernoulli (the default) is already the exact likelihood")
    args.k = settings.resolved_k(args.objective, args.k)  # a preset's k goes with its objective
    if args.lr_schedule == "staged" and "epochs" not in given and (not args.resume or "stages" in given):
        args.epochs = presets.staged_passes(args.stages)  # the schedule says how long the run is (a resumed
        # run's length is its saved one unless --stages or --epochs is given again)
    dense_only = [f"--{name.replace('_', '-')} {getattr(args, name)}" for name, plain in
                  (("activation", "relu"), ("output_bias", "zero")) if getattr(args, name) != plain]
    if args.arch == "conv" and dense_only:
        source = "are for" if given & {"activation", "output_bias"} else f"come from --preset {args.preset} and are for"
        raise cli.UserError(f"{' '.join(dense_only)} {source} the dense model's hidden and output layers; the conv "
                            "model keeps ReLU and a zero output bias")
    if args.tensorboard and importlib.util.find_spec("tensorflow") is None:
        raise cli.UserError("--tensorboard writes its logs through TensorFlow (tf.summary), which is not installed: "
                            'pip install "tensorflow>=2.16", or train without --tensorboard')
    if args.resume and "distribute" not in given and args.distribute not in SUPPORTED[args.backend]:
        raise cli.UserError(f"{args.resume} was trained with --distribute {args.distribute}, which the {args.backend} "
                            f"backend does not offer: add --distribute none to continue it on one device")
    if args.data and (not args.resume or "data" in given):
        args.data = os.path.abspath(args.data)  # so that evaluate.py and --resume find it from anywhere
    return args


def load_data(args):
    splits = data.load_for_run(args.data, args.dataset, args.val_split, args.limit, args.binarize, args.seed,
                               args.validation)
    if args.likelihood == "continuous-bernoulli" and data.is_black_and_white(splits.x_train):
        raise data.DataError(f"--likelihood continuous-bernoulli is a density of grey pixels, and every pixel of "
                             f"{splits.source} is black or white: train these with the plain Bernoulli (the default)")
    if args.conditional and splits.y_train is None:
        raise data.DataError(f"--conditional needs the digits' labels, and {splits.source} has none (an .npz needs "
                             "y_train and y_test; an IDX folder the *-labels-idx1-ubyte files)")
    test_images = messages.count(len(splits.x_test), "test image")
    print(f"data: {splits.source}: {len(splits.x_train):,} training and {test_images}")
    if splits.note:
        print(f"note: {splits.note}")
    print(f"pixels: {messages.pixels_note(args.binarize, args.likelihood)}")
    if args.resume and (len(splits.x_train), len(splits.x_test)) != (args.train_images, args.test_images):
        raise data.DataError(f"{splits.source}: {len(splits.x_train)}/{len(splits.x_test)} training/test images, "
                             f"but the run was trained on {args.train_images}/{args.test_images}")
    if args.resume:
        data.check_fingerprint(splits, getattr(args, "data_sha256", None), args.resume)
    return splits


def fit_and_save(run, args, devices, splits):
    from mnist_vae import checkpoints, pipeline, training
    from mnist_vae.callbacks import SampleFrames
    from model import noise_shape

    training.check_run_fits(args, len(splits.x_train))
    # 4. Where the run stands: a resumed run continues after its last completed epoch.
    state = checkpoints.read_state(run.dir) if args.resume else None
    done = state["epoch"] if state else 0
    if run.nothing_to_do(done):
        return 0
    print(f"backend: {args.backend}" + ("" if devices.replicas == 1 else f", {devices.replicas} replicas"))
    if args.arch == "conv" and args.backend == "jax" and args.jit != "off" and not devices.gpu:
        print("hint: XLA's transposed convolutions are slow on a CPU: --backend tensorflow trains the conv "
              "model about 10x faster here")
    run.write_config(splits, training.versions(args.backend), settings.reproduce_command(args))

    # 5. The batches: every draw (order, binarization, noise) a function of (seed, epoch, step).
    noise = noise_shape(args.latent_dim, args.objective, args.k)
    labels = (lambda y: y) if args.conditional else (lambda y: None)  # only a conditional model reads labels
    batches, steps = devices.training_batches(
        splits.x_train, args.batch_size, args.seed, args.epochs, initial_epoch=done,
        dynamic_binarization=args.binarize == "dynamic", noise_dim=noise, labels=labels(splits.y_train))
    held_out = pipeline.held_out_batches(splits.x_test, seed=args.seed, noise_dim=noise, pad_to=devices.pad_to,
                                         labels=labels(splits.y_test))
    validation = None if splits.x_valid is None else pipeline.held_out_batches(
        splits.x_valid, seed=args.seed + 1, noise_dim=noise, pad_to=devices.pad_to, labels=labels(splits.y_valid))

    # 6. The model, compiled for the devices, restored from the checkpoint when resuming.
    vae = training.build_model(args, devices, steps, run.dir, state, pixel_means=(
        data.mean_pixels(splits.x_train) if args.output_bias == "pixel-means" else None))

    # 7. Fit: each epoch ends with the held-out loss, progress.gif's frame and a checkpoint.
    frames = SampleFrames(args.latent_dim, args.seed, frames=checkpoints.read_frames(run.dir, done),
                          conditional=args.conditional, likelihood=args.likelihood)
    saver = checkpoints.EpochCheckpoint(run.dir, state["history"] if state else [], frames=frames.frames)
    fit_callbacks = training.callbacks(args, run.dir, run.guard, held_out, frames, saver, validation)
    run.fit(vae, batches, steps, done, fit_callbacks, saver)

    # 8. Outputs: what the run earned (also when stopped or diverged), and the exit code.
    return run.conclude(vae, splits, saver, frames.frames, steps)


if __name__ == "__main__":
    sys.exit(main())
