"""Measure training speed and memory: images per second, seconds per epoch, start-up time, peak
memory, and achieved GFLOP/s against this machine's own float32 matrix-multiply peak.

    python bench.py --data ../shared/data/mnist            # the three standard configurations
    python bench.py --data ../shared/data/mnist --backends tensorflow jax torch   # one row per backend and model
    python bench.py --data ../shared/data/mnist --quick    # fewer epochs, for a fast look
    python bench.py --data ../shared/data/mnist --memory   # peak memory of a default run at full MNIST size

Each configuration runs in a fresh process (so start-up and peak memory are its own) and prints
one JSON line; a table follows. Each epoch is timed twice, as train.py runs it: its training part alone
(images/s and s/epoch come from this), and the whole epoch with the held-out pass, progress.gif's frame
and the checkpoint (s/whole epoch, and the share of it outside training).
"""
import argparse
import json
import os
import subprocess
import sys
import time

from mnist_vae import backends
from mnist_vae.cli import number_in_range

STARTED = time.time()

CONFIGS = {
    "dense-512-2": ["--arch", "dense", "--hidden", "512", "--latent-dim", "2"],  # the default model
    "dense-400-20": ["--arch", "dense", "--hidden", "400", "--latent-dim", "20"],  # the classic size
    "conv": ["--arch", "conv", "--latent-dim", "2"],
}


def forward_flops(model):
    """Multiply-adds x 2 of one image's forward pass through the Dense and convolution layers."""
    import keras

    total = 0
    for sub in (model.encoder, model.decoder):
        for layer in sub.layers:
            if isinstance(layer, keras.layers.Dense):
                total += 2 * layer.kernel.shape[0] * layer.kernel.shape[1]
            elif isinstance(layer, keras.layers.Conv2DTranspose):
                h, w = layer.input.shape[1:3]  # each input pixel is spread by a k x k x c_out kernel
                total += 2 * h * w * int(layer.kernel.shape[0] * layer.kernel.shape[1]) * \
                    layer.kernel.shape[2] * layer.kernel.shape[3]
            elif isinstance(layer, keras.layers.Conv2D):
                h, w = layer.output.shape[1:3]
                total += 2 * h * w * int(layer.kernel.shape[0] * layer.kernel.shape[1]) * \
                    layer.kernel.shape[2] * layer.kernel.shape[3]
    return total


def matmul_peak_gflops(n=2048, repeats=10):
    """The machine's float32 matrix-multiply speed (NumPy's BLAS): what any backend could hope for."""
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def worker(name, argv, args):
    """Train one configuration in this process and print its JSON line."""
    import resource

    backends.select_backend(args.backend)
    from mnist_vae.backends import start_keras

    keras = start_keras()
    import numpy as np

    from mnist_vae import data, pipeline, settings, training
    from mnist_vae.callbacks import HeldOutLoss, SampleFrames
    from mnist_vae.distribute import Devices
    from model import build_vae

    options, _ = settings.parse_args(argv + ["--batch-size", str(args.batch_size), "--backend", args.backend])
    splits = data.load(args.data, val_split=settings.DEFAULTS["val_split"], limit=args.limit)
    keras.utils.set_random_seed(0)
    vae = build_vae(options.arch, options.latent_dim, options.hidden, seed=0)
    devices = Devices(args.backend)
    batches, steps = devices.training_batches(splits.x_train, args.batch_size, 0, args.epochs,
                                              noise_dim=options.latent_dim)
    speed = training.speed_options(options, steps, devices)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3), **speed)
    vae.build_optimizer()

    # A whole epoch as train.py runs it: training, the held-out pass, progress.gif's frame and the
    # checkpoint (into a scratch run folder); the training part ends with the epoch's last batch.
    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.began = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.trained = time.perf_counter()

    class EpochEnd(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            seconds.append(timer.trained - timer.began)
            whole.append(now - timer.began)
            if epoch == 0:
                first_epoch_done.append(time.time() - STARTED)

    import tempfile

    from mnist_vae import checkpoints

    timer, seconds, whole, first_epoch_done = Timer(), [], [], []
    frames = SampleFrames(options.latent_dim, 0)
    with tempfile.TemporaryDirectory() as scratch:
        held_out = HeldOutLoss(pipeline.held_out_batches(splits.x_test, seed=0, noise_dim=options.latent_dim))
        vae.fit(batches, epochs=args.epochs, steps_per_epoch=steps, verbose=0, shuffle=False,
                callbacks=[timer, held_out, frames, checkpoints.EpochCheckpoint(scratch, frames=frames.frames),
                           EpochEnd()])
    n = len(splits.x_train)
    per_epoch = float(np.median(seconds[1:] if len(seconds) > 1 else seconds))
    whole_epoch = float(np.median(whole[1:] if len(whole) > 1 else whole))
    images_per_s = n / per_epoch
    train_flops = 3 * forward_flops(vae)  # forward + backward (about twice the forward) per image
    print(json.dumps({
        "config": name, "backend": args.backend, "images": n, "batch_size": args.batch_size, "epochs": args.epochs,
        "jit_compile": speed["jit_compile"], "steps_per_execution": speed["steps_per_execution"],
        "images_per_s": round(images_per_s), "s_per_epoch": round(per_epoch, 3),
        "s_whole_epoch": round(whole_epoch, 3), "outside_training": f"{(whole_epoch - per_epoch) / per_epoch:.0%}",
        "s_to_first_epoch_end": round(first_epoch_done[0], 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "train_mflop_per_image": round(train_flops / 1e6, 2),
        "achieved_gflops": round(images_per_s * train_flops / 1e9, 1),
    }), flush=True)


def full_size_memory(args):
    """Peak resident memory of a default train.py run (training, evaluation with k = 1000, figures) at full
    MNIST size: 60,000 training and 10,000 test images. Without the download (--data), the images at hand
    are tiled up to that size, which costs the same memory as distinct ones."""
    import resource
    import tempfile

    import numpy as np

    from mnist_vae import data, settings


    with tempfile.TemporaryDirectory() as tmp:
        source = []
        if args.data:
            splits = data.load(args.data, val_split=settings.DEFAULTS["val_split"])
            x = np.concatenate([splits.x_train, splits.x_test])[..., 0]
            y = np.concatenate([splits.y_train, splits.y_test])
            path = os.path.join(tmp, "full-size.npz")  # np.resize repeats the images up to the size asked
            np.savez(path, x_train=np.resize(x, (60000, 28, 28)), y_train=np.resize(y, 60000),
                     x_test=np.resize(x, (10000, 28, 28)), y_test=np.resize(y, 10000))
            source = ["--data", path]
        cmd = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "train.py"), *source,
               "--epochs", str(args.epochs), "--out", tmp, "--run-name", "memory"]
        started = time.time()
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            print(f"full-size run failed: {result.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            return 1
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"config": "default train.py run, 60000 + 10000 images", "epochs": args.epochs,
                      "tiled_from": args.data, "peak_rss_mb": round(peak), "seconds": round(time.time() - started)}))
    print(f"\npeak memory of a default run at full MNIST size: {peak:.0f} MB ({args.epochs} epochs, evaluation, "
          "figures)")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default=None, help="as in train.py (default: download MNIST)")
    p.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    p.add_argument("--backends", nargs="+", choices=backends.BACKENDS, default=[backends.default_backend()],
                   help="Keras backends to measure, each model on each (default: $KERAS_BACKEND, else tensorflow)")
    p.add_argument("--backend", help=argparse.SUPPRESS)  # the worker's
    # The same range checks as train.py's flags: a bad value is argparse's one line and exit 2.
    p.add_argument("--epochs", type=number_in_range(int, 2), default=5,
                   help="epochs per configuration (the first is not timed, so at least 2)")
    p.add_argument("--batch-size", type=number_in_range(int, 1), default=128)
    p.add_argument("--limit", type=number_in_range(int, 1), default=None, help="use only the first N training images")
    p.add_argument("--quick", action="store_true", help="3 epochs, for a fast look")
    p.add_argument("--memory", action="store_true",
                   help="instead: peak memory of a default train.py run at full MNIST size (--epochs of it)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.quick:
        args.epochs = 3
    if args.memory:
        return full_size_memory(args)
    if args.worker:
        return worker(args.worker, CONFIGS[args.worker], args)

    peak = matmul_peak_gflops()
    print(json.dumps({"config": "float32 matmul 2048x2048", "peak_gflops": round(peak, 1),
                      "cpus": os.cpu_count()}), flush=True)
    rows, failed = [], []
    for name in args.configs:
        for backend in args.backends:  # interleaved: the machine's speed drifts
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", name, "--backend", backend,
                   "--epochs", str(args.epochs), "--batch-size", str(args.batch_size)] + \
                (["--data", args.data] if args.data else []) + (["--limit", str(args.limit)] if args.limit else [])
            result = subprocess.run(cmd, capture_output=True, text=True)
            lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
            if result.returncode != 0 or not lines:
                print(f"{name} on {backend}: failed: {result.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                failed.append(f"{name} on {backend}")
                continue
            print(lines[-1], flush=True)
            rows.append(json.loads(lines[-1]))

    print(f"\n{'config':<14}{'backend':<12}{'img/s':>9}{'s/epoch':>9}{'s/whole':>9}{'outside':>9}{'1st epoch at':>14}"
          f"{'peak MB':>9}{'GFLOP/s':>9}{'% of peak':>10}  jit  steps/call")
    for r in rows:
        print(f"{r['config']:<14}{r['backend']:<12}{r['images_per_s']:>9}{r['s_per_epoch']:>9.2f}{r['s_whole_epoch']:>9.2f}"
              f"{r['outside_training']:>9}{r['s_to_first_epoch_end']:>13.1f}s"
              f"{r['peak_rss_mb']:>9}{r['achieved_gflops']:>9.1f}{100 * r['achieved_gflops'] / peak:>9.0f}%"
              f"  {'on ' if r['jit_compile'] else 'off'}  {r['steps_per_execution']}")
    print(f"(float32 matmul peak measured here: {peak:.0f} GFLOP/s on {os.cpu_count()} CPUs; "
          f"{rows[0]['images'] if rows else 0} training images, batch {args.batch_size})")
    if failed:
        print(f"error: {len(failed)} of {len(failed) + len(rows)} configurations failed ({', '.join(failed)})",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
