"""Train a variational autoencoder on MNIST and save the model, its numbers and the plots that explain it.

    python train.py                                          # downloads MNIST the standard Keras way
    python train.py --data ../shared/data/mnist --epochs 5   # offline, from the IDX files
    python train.py --resume outputs/RUN --epochs 50         # continue a run, interrupted or finished

Every run writes a new folder <out>/<run-name>/: config.json, history.csv, metrics.json, model.keras,
the PNG figures, report.html, explorer.html and a per-epoch checkpoint. Losses are in nats per image.

The story, top to bottom: settings -> data -> the backend and devices -> the model, compiled with Adam -> fit ->
outputs. The machinery of each step lives in the mnist_vae package; model.py holds the model, losses.py its loss.
"""
import sys

from mnist_vae import backends, cli, data, messages, presets, settings
from mnist_vae.config import resolve
from mnist_vae.distribute import Devices
from mnist_vae.run import Run


def main(argv=None):
    try:
        return cli.exit_on_user_error(train, argv)
    except KeyboardInterrupt:  # before the run's own handlers are in place
        print("\ninterrupted before training started", file=sys.stderr)
        return 130


def train(argv):
    # 1. Settings, resolved once (a resumed run continues with its saved ones); contradictions are one line.
    config, saved = resolve(argv)
    # Before Keras is imported and before any data is loaded: a missing backend is one line.
    backends.select_backend(config.backend, config.device)
    devices = Devices(config.backend, config.distribute)
    with Run(config, devices) as run:  # creates or resumes the folder, locks it, cleans up whatever happens
        # 2. Data: NumPy only, so bad data is reported before the backend starts.
        splits = load_data(config, saved)
        for line in (presets.published_line(config.preset, settings.preset_overrides(config.as_dict())),
                     presets.schedule_line(config.lr, config.lr_schedule, config.stages, config.epochs)):
            print(line) if line else None
        # 3. The backend and its devices.
        backends.start_keras(probe_half_precision=False)  # Devices.start probes, after any strategy
        with cli.quiet_start_up():
            devices.start(deterministic=config.deterministic)
        return fit_and_save(run, config, devices, splits)


def load_data(config, saved=None):
    """The run's images (a resumed run's must be those it was trained on: saved is its config.json)."""
    splits = data.load_for_run(config.data, config.dataset, config.val_split, config.limit, config.binarize,
                               config.seed, config.validation)
    if config.likelihood == "continuous-bernoulli" and data.is_black_and_white(splits.x_train):
        raise data.DataError(f"--likelihood continuous-bernoulli is a density of grey pixels, and every pixel of "
                             f"{splits.source} is black or white: train these with the plain Bernoulli (the default)")
    if config.conditional and splits.y_train is None:
        raise data.DataError(f"--conditional needs the digits' labels, and {splits.source} has none (an .npz needs "
                             "y_train and y_test; an IDX folder the *-labels-idx1-ubyte files)")
    test_images = messages.count(len(splits.x_test), "test image")
    print(f"data: {splits.source}: {len(splits.x_train):,} training and {test_images}")
    if splits.note:
        print(f"note: {splits.note}")
    print(f"pixels: {messages.pixels_note(config.binarize, config.likelihood)}")
    if saved:
        trained_on = (saved.get("train_images"), saved.get("test_images"))
        if (len(splits.x_train), len(splits.x_test)) != trained_on:
            raise data.DataError(f"{splits.source}: {len(splits.x_train)}/{len(splits.x_test)} training/test images, "
                                 f"but the run was trained on {trained_on[0]}/{trained_on[1]}")
        data.check_fingerprint(splits, saved.get("data_sha256"), config.resume)
    return splits


def fit_and_save(run, config, devices, splits):
    import keras

    from mnist_vae import build, callbacks, checkpoints, pipeline
    from mnist_vae.callbacks import SampleFrames
    from model import noise_shape

    build.check_run_fits(config, len(splits.x_train))
    # 4. Where the run stands: a resumed run continues after its last completed epoch.
    state = run.folder.state if config.resume else None
    done = state["epoch"] if state else 0
    if run.nothing_to_do(done):
        return 0
    print(messages.backend_line(config, devices))
    run.write_config(splits, build.versions(config.backend), settings.reproduce_command(config))

    # 5. The batches: every draw (order, binarization, noise) a function of (seed, epoch, step).
    noise = noise_shape(build.noise_dim(config), config.objective, config.k)
    labels = (lambda y: y) if config.conditional else (lambda y: None)  # only a conditional model reads labels
    batches, steps = devices.training_batches(
        splits.x_train, config.batch_size, config.seed, config.epochs, initial_epoch=done,
        dynamic_binarization=config.binarize == "dynamic", noise_dim=noise, labels=labels(splits.y_train))
    held_out = pipeline.held_out_batches(splits.x_test, seed=config.seed, noise_dim=noise, pad_to=devices.pad_to,
                                         labels=labels(splits.y_test))
    validation = None if splits.x_valid is None else pipeline.held_out_batches(
        splits.x_valid, seed=config.seed + 1, noise_dim=noise, pad_to=devices.pad_to, labels=labels(splits.y_valid))

    # 6. The model: model.py's VAE (or the family the settings name), compiled with Adam on the run's devices,
    #    with the options that measured fastest there; a resumed run's weights and optimizer from its checkpoint.
    with devices.scope():
        vae = build.new_model(config, pixel_means=(
            data.mean_pixels(splits.x_train) if config.output_bias == "pixel-means" else None))
        vae.compile(optimizer=keras.optimizers.Adam(build.learning_rate(config, done), epsilon=config.adam_epsilon),
                    **build.speed_options(config, steps, devices, epochs_to_run=max(1, config.epochs - done)))
    build.made_ready(vae, config, devices, run.dir, state)

    # 7. Fit: each epoch ends with the held-out loss, progress.gif's frame and a checkpoint.
    frames = SampleFrames(config.seed, frames=checkpoints.read_frames(run.dir, done))
    saver = callbacks.checkpoint_saver(config, run.dir, state, frames.frames)
    fit_callbacks = callbacks.for_fit(config, run.dir, run.guard, held_out, frames, saver, validation,
                                      callbacks.stage_nll(config, splits.x_test, splits.y_test))
    if not run.trained:  # unless the history already ends the run (all epochs trained, or stopped early)
        with run.training(saver):  # a full disk or a lost worker: one line saying what is kept
            vae.fit(batches, epochs=config.epochs, steps_per_epoch=steps, initial_epoch=done, callbacks=fit_callbacks,
                    shuffle=False, verbose=run.verbose)  # shuffle=False: the batches come shuffled by (seed, epoch)

    # 8. Outputs: what the run earned (also when stopped or diverged), and the exit code.
    return run.conclude(vae, splits, saver, frames.frames, steps)


if __name__ == "__main__":
    sys.exit(main())
