"""Train a variational autoencoder on MNIST and save the model, its numbers and the plots that explain it.

    python train.py                                   # downloads MNIST the standard Keras way
    python train.py --data ../shared/data/mnist --epochs 5   # offline, from the IDX files

Every run writes a new folder <out>/<run-name>/ with config.json, history.csv, metrics.json,
model.keras and the PNG figures. Losses are in nats per image.
"""
import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter short


# ------------------------------------------------------------------ flags

def _number(kind, low, low_ok=True, high=None):
    """An argparse type: kind(text) within [low, high] (low excluded unless low_ok)."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a{'n integer' if kind is int else ' number'}, got {text!r}")
        if value != value or value < low or (value == low and not low_ok) or (high is not None and value >= high):
            bound = f">= {low}" if low_ok else f"> {low}"
            raise argparse.ArgumentTypeError(f"must be {bound}{f' and < {high}' if high else ''}, got {text}")
        return value
    return parse


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Train a VAE on MNIST; writes the model, metrics and plots to <out>/<run-name>/.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--epochs", type=_number(int, 1), default=30, help="passes over the training images")
    p.add_argument("--batch-size", type=_number(int, 1), default=128, help="images per step (global batch)")
    p.add_argument("--latent-dim", type=_number(int, 1), default=2, help="size of z")
    p.add_argument("--arch", choices=("dense", "conv"), default="dense",
                   help="dense: 784-hidden-latent MLP; conv: two stride-2 convolutions (32, 64 filters)")
    p.add_argument("--hidden", type=_number(int, 1), default=512, help="width of the dense hidden layer")
    p.add_argument("--lr", type=_number(float, 0, low_ok=False), default=1e-3, help="Adam learning rate")
    p.add_argument("--beta", type=_number(float, 0), default=1.0, help="weight of the KL term")
    p.add_argument("--seed", type=_number(int, 0), default=0, help="seed for weights, shuffling and sampling")
    p.add_argument("--data", metavar="PATH", default=None,
                   help="offline data: a folder of MNIST IDX files (plain or .gz) or a Keras-layout .npz; "
                        "default: download with keras.datasets")
    p.add_argument("--dataset", choices=("mnist", "fashion_mnist"), default="mnist",
                   help="which dataset to download when --data is not given")
    p.add_argument("--val-split", type=_number(float, 0, low_ok=False, high=1), default=0.2,
                   help="fraction held out as the test set when the data has only one split")
    p.add_argument("--limit", type=_number(int, 1), default=None,
                   help="use only the first N training images (and N/4 test images) for a quick run")
    p.add_argument("--jit", choices=("auto", "on", "off"), default="auto",
                   help="XLA compilation of the training step; auto: on for dense models or with a GPU, off for "
                        "conv on CPU (XLA's CPU convolutions measured 1.8x slower than TensorFlow's own)")
    p.add_argument("--out", default="outputs", help="folder that receives one sub-folder per run")
    p.add_argument("--run-name", default=None, help="name of this run's folder (default: time, arch and latent size)")
    return p.parse_args(argv)


# ------------------------------------------------------------------ the run

def speed_options(args, steps_per_epoch, tf):
    """compile() options that measurably speed training up (see bench.py and the README)."""
    gpu = bool(tf.config.list_physical_devices("GPU"))
    jit = {"on": True, "off": False, "auto": args.arch == "dense" or gpu}[args.jit]
    # Several steps per call into TensorFlow cut per-step Python overhead. It must divide the epoch:
    # otherwise Keras would run the last call into the next epoch's batches.
    per_call = max(d for d in range(1, 17) if steps_per_epoch % d == 0) if args.arch == "dense" else 1
    return {"jit_compile": jit, "steps_per_execution": per_call}


def train(args):
    from runs import atomic_write, make_run_dir, write_json

    # The output folder is checked before any data is loaded or any time is spent.
    run_dir = make_run_dir(args.out, args.run_name, label=f"{args.arch}-z{args.latent_dim}")
    try:
        return _train_in(run_dir, args, atomic_write, write_json)
    except BaseException:
        if os.path.isdir(run_dir) and not os.listdir(run_dir):
            os.rmdir(run_dir)  # nothing was earned: leave no empty folder behind
        raise


def _train_in(run_dir, args, atomic_write, write_json):
    import data  # NumPy only: bad data is reported before TensorFlow starts

    started = time.time()
    splits = data.load(args.data, args.dataset, args.val_split, args.limit)
    print(f"data: {splits.source}: {len(splits.x_train)} training and {len(splits.x_test)} test images")
    if splits.note:
        print(f"note: {splits.note}")

    import platform

    import keras
    import numpy as np
    import tensorflow as tf

    import figures
    from model import build_vae

    config = {**vars(args), "run_dir": run_dir, "data_source": splits.source,
              "train_images": len(splits.x_train), "test_images": len(splits.x_test),
              "versions": {"python": platform.python_version(), "tensorflow": tf.__version__,
                           "keras": keras.__version__, "numpy": np.__version__}}
    write_json(os.path.join(run_dir, "config.json"), config)

    keras.utils.set_random_seed(args.seed)  # weight initialisation
    vae = build_vae(args.arch, args.latent_dim, args.hidden, args.beta, seed=args.seed)
    train_ds, steps = data.train_dataset(splits.x_train, args.batch_size, args.seed, args.epochs)
    vae.compile(optimizer=keras.optimizers.Adam(args.lr), **speed_options(args, steps, tf))
    test_ds = data.test_dataset(splits.x_test, args.batch_size)
    history_path = os.path.join(run_dir, "history.csv")
    fit = vae.fit(
        train_ds, epochs=args.epochs, steps_per_epoch=steps, validation_data=test_ds, shuffle=False,  # the dataset shuffles itself
        callbacks=[keras.callbacks.CSVLogger(history_path)],
        verbose=1 if sys.stdout.isatty() else 2,
    )

    # Held-out numbers: the same single-sample ELBO estimate as in training.
    metrics = vae.evaluate(test_ds, return_dict=True, verbose=0)
    metrics = {k: float(metrics[k]) for k in ("loss", "reconstruction_loss", "kl_loss")}
    write_json(os.path.join(run_dir, "metrics.json"), {
        **metrics, "units": "nats per image", "split": "test", "test_images": len(splits.x_test),
        "epochs": args.epochs, "pixels": "grey levels in [0, 1] (not a likelihood)",
    })
    model_path = os.path.join(run_dir, "model.keras")
    atomic_write(model_path, vae.save)

    written = figures.save_all(vae, data.as_float(splits.x_test), splits.y_test, fit.history,
                               run_dir, seed=args.seed)

    print(f"\ndone in {time.time() - started:.0f} s. Test set ({len(splits.x_test)} images, nats per image): "
          + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
    for name in ("config.json", "history.csv", "metrics.json", "model.keras"):
        print(f"  {os.path.join(run_dir, name)}")
    for name, what in written.items():
        print(f"  {what}" if what.endswith(".png") else f"  ({name} {what})")
    return run_dir


def main(argv=None):
    args = parse_args(argv)
    try:
        train(args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except Exception as e:
        from data import DataError
        from runs import RunError
        if isinstance(e, (DataError, RunError)):
            print(f"error: {e}", file=sys.stderr)
            return 1
        if isinstance(e, OSError):
            print(f"error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
