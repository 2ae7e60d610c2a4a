"""Measure speed and memory: training and the final evaluation in images per second and GFLOP/s against
this machine's float32 matrix-multiply peak (NumPy's BLAS, and each backend's own), where the start-up
time goes, and the peak memory of a whole default run on the full MNIST.

    python tools/bench.py --data ../shared/data/mnist-full       # the three standard configurations
    python tools/bench.py --data ../shared/data/mnist-full --backends tensorflow jax torch   # a row per backend, model
    python tools/bench.py --data ../shared/data/mnist --quick    # fewer epochs, for a fast look
    python tools/bench.py --data ../shared/data/mnist-full --memory   # a default train.py run: peak memory, phases
    python tools/bench.py --data ../shared/data/mnist-full --configs iwae-k1 iwae-k5   # the papers' small batches

The small-batch configurations (the IWAE recipes' 784-200-200-50 tanh at batch 20) and dense-400-20 also run a
hand-fused reference, the same model and step written directly in JAX with a hundred steps per compiled call: the
limit their training through train.py is measured against. dense-400-20 also runs a plain PyTorch loop (training
and a test pass each epoch, as pytorch/examples' VAE), which train.py's whole epochs are compared with.

Each configuration runs in a fresh process (so start-up and peak memory are its own) and prints
one JSON line; tables follow. Each epoch is timed twice, as train.py runs it: its training part alone
(images/s and s/epoch come from this), and the whole epoch with the held-out pass, progress.gif's frame
and the checkpoint (s/whole epoch, and the share of it outside training). Then the importance-weighted
bound (evaluate.py's, k = --eval-k) on test images, once compiled, and the I(x; z) estimate on all of them.
"""
import time

STARTED = time.time()  # before any import: the start-up breakdown counts them

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from bench_references import (  # noqa: E402  (tools/bench_references.py: what train.py is measured against)
    FUSED,
    LOOP,
    REFERENCE,
    SMALL_BATCH_SIZE,
    backend_matmul_gflops,
    fused_reference,
    matmul_peak_gflops,
    torch_loop_reference,
)

from mnist_vae import backends, settings  # noqa: E402
from mnist_vae.cli import HelpFormatter, number_in_range  # noqa: E402

CONFIGS = {
    "dense-512-2": ["--arch", "dense", "--hidden", "512", "--latent-dim", "2"],  # the default model
    "dense-400-20": ["--arch", "dense", "--hidden", "400", "--latent-dim", "20"],  # the classic size
    "conv": ["--arch", "conv", "--latent-dim", "2"],
}
# The IWAE recipes' regime (Burda et al.): 784-200-200-50, tanh, batch 20, dynamic binarization, k = 1 and 5;
# each at its own batch size, whatever --batch-size says, beside a hand-fused reference of the same step.
_IWAE = ["--arch", "dense", "--hidden", "200,200", "--latent-dim", "50", "--activation", "tanh",
         "--binarize", "dynamic"]
SMALL_BATCH = {"iwae-k1": _IWAE + ["--objective", "elbo"], "iwae-k5": _IWAE + ["--objective", "iwae", "--k", "5"]}
CONFIGS.update(SMALL_BATCH)
LOOP_REFERENCE = "dense-400-20"  # whole epochs of this one are also compared with a plain PyTorch loop's
def forward_flops(model):
    """Multiply-adds x 2 of one image's forward pass through the Dense and convolution layers (its k draws
    decoded under IWAE)."""
    return layer_flops(model.encoder) + (model.k if model.objective == "iwae" else 1) * layer_flops(model.decoder)


def layer_flops(sub):
    """Multiply-adds x 2 of one row through a sub-model's Dense and convolution layers."""
    import keras

    total = 0
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


def evaluation_speed(vae, x, k, flop_budget=5e11):
    """The importance-weighted bound as evaluate.py computes it (per batch of 100 images, k draws each), timed
    after its one compilation; and the I(x; z) estimate on all of x's codes."""

    from mnist_vae import evaluation

    decoder_flops = layer_flops(vae.decoder)
    batch = min(100, len(x))
    # Enough images for about flop_budget of decoding, in whole batches, 100 to 1,000 of them (those at hand).
    images = int(min(1000, len(x) // batch * batch, max(batch, flop_budget / (k * decoder_flops) // batch * batch)))
    posterior = evaluation.encode(vae, x)
    z_mean, z_log_var = posterior["z_mean"], posterior["z_log_var"]
    chunk = evaluation.draws_per_call(k, batch, evaluation.ROWS_PER_CALL)  # as a run's evaluation chunks it
    weights = evaluation.importance_weights(vae, batch)(None)
    began = time.perf_counter()
    evaluation.iw_bound(x[:batch], z_mean[:batch], z_log_var[:batch], weights, k, chunk)  # compiles
    compiled = time.perf_counter()
    for start in range(0, images, batch):
        part = slice(start, start + batch)
        evaluation.iw_bound(x[part], z_mean[part], z_log_var[part], weights, k, chunk, seed=(0, start))
    done = time.perf_counter()
    evaluation.mutual_information(z_mean, z_log_var)
    information = time.perf_counter() - done
    per_s = images / (done - compiled)
    return {"eval_k": k, "eval_images": images, "eval_images_per_s": round(per_s, 1),
            "eval_mflop_per_image": round(k * decoder_flops / 1e6, 1),
            "eval_gflops": round(per_s * k * decoder_flops / 1e9, 1),
            "eval_first_batch_s": round(compiled - began, 2),
            "mutual_information_s": round(information, 2), "mutual_information_images": len(x)}


def worker(name, argv, args):
    """Train one configuration in this process, then time its evaluation, and print its JSON line."""
    import resource

    marks = {}  # seconds since the process started, at each step of the way to the first epoch's end
    backends.select_backend(args.backend)
    from mnist_vae.backends import start_keras

    keras = start_keras()
    import numpy as np

    from mnist_vae import data

    marks["imports"] = time.time() - STARTED
    run = _prepared_run(keras, argv, args, marks)
    seconds, whole = _timed_epochs(keras, run, args, marks)
    n = len(run["splits"].x_train)
    per_epoch, whole_epoch = (float(np.median(t[1:] if len(t) > 1 else t)) for t in (seconds, whole))
    images_per_s = n / per_epoch
    train_flops = 3 * forward_flops(run["vae"])  # forward + backward (about twice the forward) per image
    evaluation = evaluation_speed(run["vae"], data.as_float(run["splits"].x_test), args.eval_k)
    print(json.dumps({
        "config": name, "backend": args.backend, "images": n, "batch_size": args.batch_size, "epochs": args.epochs,
        "jit_compile": run["speed"]["jit_compile"], "steps_per_execution": run["speed"]["steps_per_execution"],
        "images_per_s": round(images_per_s), "s_per_epoch": round(per_epoch, 3),
        "s_whole_epoch": round(whole_epoch, 3), "outside_training": f"{(whole_epoch - per_epoch) / per_epoch:.0%}",
        "s_to_first_epoch_end": round(marks["first_epoch_end"], 2),
        "start_up_s": {k: round(v, 2) for k, v in _start_up_steps(marks).items()},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "train_mflop_per_image": round(train_flops / 1e6, 2),
        "achieved_gflops": round(images_per_s * train_flops / 1e9, 1),
        **evaluation,
        # Both peaks measured here, just after the timings: this machine's speed drifts within minutes.
        "backend_matmul_gflops": round(backend_matmul_gflops(), 1), "peak_gflops": round(matmul_peak_gflops(), 1),
    }), flush=True)


def _prepared_run(keras, argv, args, marks):
    """The configuration's data, model (compiled with train.py's speed options) and batches."""
    from mnist_vae import build, data, settings
    from mnist_vae.config import resolve
    from mnist_vae.distribute import Devices
    from model import noise_shape

    options, _ = resolve(argv + ["--batch-size", str(args.batch_size), "--backend", args.backend, "--jit", args.jit])
    splits = data.load(args.data, val_split=settings.DEFAULTS["val_split"], limit=args.limit)
    marks["data"] = time.time() - STARTED
    keras.utils.set_random_seed(0)
    vae = build.model_of(options.replace(seed=0))  # as train.py builds it: activation, objective, k
    devices = Devices(args.backend)
    noise = noise_shape(options.latent_dim, options.objective, options.k)
    batches, steps = devices.training_batches(splits.x_train, args.batch_size, 0, args.epochs, noise_dim=noise,
                                              dynamic_binarization=options.binarize == "dynamic")
    speed = build.speed_options(options, steps, devices)
    if args.steps_per_call:  # an alternative to measure beside train.py's choice
        if steps % args.steps_per_call:
            raise SystemExit(f"error: --steps-per-call {args.steps_per_call} does not divide the {steps} steps of an "
                             "epoch")
        speed["steps_per_execution"] = args.steps_per_call
    vae.compile(optimizer=keras.optimizers.Adam(1e-3), **speed)
    vae.build_optimizer()
    marks["model"] = time.time() - STARTED
    return {"options": options, "splits": splits, "vae": vae, "batches": batches, "steps": steps, "speed": speed,
            "noise": noise}


def _timed_epochs(keras, run, args, marks):
    """Seconds of each epoch's training part and of each whole epoch as train.py runs it: training, then train.py's
    own callbacks (callbacks.for_fit: the held-out pass, progress.gif's frame, the NaN check, the checkpoint into a
    scratch run folder) and its console line per epoch (into /dev/null: only its cost is wanted)."""
    import contextlib
    import tempfile

    from mnist_vae import callbacks as run_callbacks
    from mnist_vae import checkpoints, pipeline
    from mnist_vae.callbacks import SampleFrames
    from mnist_vae.stopping import SignalGuard

    seconds, whole = [], []

    class Timer(keras.callbacks.Callback):  # the training part ends with the epoch's last batch
        def on_epoch_begin(self, epoch, logs=None):
            self.began = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.trained = time.perf_counter()
            marks.setdefault("first_call", time.time() - STARTED)  # the train step's compilation, mostly

    class EpochEnd(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            seconds.append(timer.trained - timer.began)
            whole.append(now - timer.began)
            if epoch == 0:
                marks["first_epoch_trained"] = time.time() - STARTED - (now - timer.trained)
                marks["first_epoch_end"] = time.time() - STARTED

    timer, options = Timer(), run["options"]
    frames = SampleFrames(0)
    with tempfile.TemporaryDirectory() as scratch, SignalGuard() as guard, open(os.devnull, "w") as null:
        held_out = pipeline.held_out_batches(run["splits"].x_test, seed=0, noise_dim=run["noise"])
        saver = checkpoints.EpochCheckpoint(scratch, frames=frames.frames)
        callbacks = run_callbacks.for_fit(options, scratch, guard, held_out, frames, saver)
        with contextlib.redirect_stdout(null):
            run["vae"].fit(run["batches"], epochs=args.epochs, steps_per_epoch=run["steps"], verbose=2,
                           shuffle=False, callbacks=[timer, *callbacks, EpochEnd()])
        saver.wait()
    return seconds, whole


def _start_up_steps(marks):
    """Where the time to the first epoch's end went, step by step."""
    return {"imports": marks["imports"], "data": marks["data"] - marks["imports"],
            "model": marks["model"] - marks["data"], "first_call": marks["first_call"] - marks["model"],
            "rest_of_epoch": marks["first_epoch_trained"] - marks["first_call"],
            "epoch_end": marks["first_epoch_end"] - marks["first_epoch_trained"]}


def full_size_memory(args):
    """A default train.py run (training, the k = 1000 evaluation, figures) on the full MNIST, 60,000 training
    and 10,000 test images (--data: its IDX files; without it, the standard download): its peak resident
    memory, and the seconds of each phase as the run reports them."""
    import re
    import resource
    import tempfile

    from mnist_vae import data

    if args.data:  # a smaller set would understate the memory: refuse it rather than tile it
        try:
            splits = data.load(args.data)
        except data.DataError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        if (len(splits.x_train), len(splits.x_test)) != (60000, 10000):
            print(f"--memory measures a run on the full MNIST (60000 training and 10000 test images); {args.data} "
                  f"has {len(splits.x_train)} and {len(splits.x_test)} (../shared/data/mnist-full has all of it)",
                  file=sys.stderr)
            return 1
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "train.py"),
               *(["--data", args.data] if args.data else []), "--epochs", str(args.epochs), "--out", tmp,
               "--run-name", "memory"]
        started = time.time()
        result = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.time() - started
        if result.returncode != 0:
            print(f"the full-size run failed: {result.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            return 1
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    done = re.search(r"done in \d+ s \((.*?)\)\. Test set", result.stdout)
    phases = {name.strip(): float(value) for name, value in re.findall(r"([a-z][a-z -]*?) (\d+) s", done.group(1))} \
        if done else {}
    evaluation = re.search(r"\(\d+\.\d s: (encoder .*)\)$", result.stdout, re.M)  # "encoder 0.1 s, NLL 45.6 s, ..."
    parts = {name.strip(): float(value) for name, value in re.findall(r"([^,]+?) (\d+\.\d) s", evaluation.group(1))} \
        if evaluation else {}
    print(json.dumps({"config": "default train.py run, 60000 + 10000 images", "epochs": args.epochs,
                      "data": args.data or "download", "peak_rss_mb": round(peak), "seconds": round(seconds, 1),
                      "phases_s": phases, "evaluation_parts_s": parts}))
    print(f"\na default run on the full MNIST ({args.epochs} epochs, the k = 1000 evaluation, figures): peak memory "
          f"{peak:.0f} MB, {seconds:.0f} s in all, process start-up included")
    for name, value in phases.items():
        print(f"  {name:<18}{value:>6.0f} s")
    if parts:
        print("  (evaluation: " + ", ".join(f"{k} {v:.1f} s" for k, v in parts.items()) + ")")
    return 0


def print_tables(rows, peak, args):
    """Training, evaluation and start-up, a table each: the % columns against NumPy's matmul peak and against
    the backend's own matmul (its 2048x2048 product, measured in the worker)."""
    def percent(gflops, of):
        return f"{100 * gflops / of:.0f}%"

    batches = " and ".join(str(b) for b in sorted({r["batch_size"] for r in rows})) or args.batch_size
    print(f"\ntraining ({rows[0]['images'] if rows else 0} images, batch {batches})")
    print(f"{'config':<14}{'backend':<12}{'img/s':>9}{'s/epoch':>9}{'s/whole':>9}{'outside':>9}{'peak MB':>9}"
          f"{'GFLOP/s':>9}{'of peak':>9}{'of own':>8}  jit  steps/call")
    for r in rows:
        print(f"{r['config']:<14}{r['backend']:<12}{r['images_per_s']:>9}{r['s_per_epoch']:>9.2f}"
              f"{r['s_whole_epoch']:>9.2f}{r['outside_training']:>9}{r['peak_rss_mb']:>9}{r['achieved_gflops']:>9.1f}"
              f"{percent(r['achieved_gflops'], r['peak_gflops']):>9}"
              f"{percent(r['achieved_gflops'], r['backend_matmul_gflops']):>8}"
              f"  {'on ' if r['jit_compile'] else 'off'}  {r['steps_per_execution']}")
    print(f"\nevaluation (importance-weighted bound, k = {args.eval_k}, batches of 100 images, after compiling; "
          "I(x; z) on every test image)")
    print(f"{'config':<14}{'backend':<12}{'img/s':>9}{'GFLOP/s':>9}{'of peak':>9}{'of own':>8}{'compile':>9}"
          f"{'I(x;z)':>9}  matmul: NumPy / own")
    for r in rows:
        print(f"{r['config']:<14}{r['backend']:<12}{r['eval_images_per_s']:>9.0f}{r['eval_gflops']:>9.1f}"
              f"{percent(r['eval_gflops'], r['peak_gflops']):>9}"
              f"{percent(r['eval_gflops'], r['backend_matmul_gflops']):>8}"
              f"{r['eval_first_batch_s']:>8.1f}s{r['mutual_information_s']:>8.1f}s"
              f"  {r['peak_gflops']:.0f} / {r['backend_matmul_gflops']:.0f} GFLOP/s")
    print("\nstart-up: seconds from the process's start to the first epoch's end")
    steps = ["imports", "data", "model", "first_call", "rest_of_epoch", "epoch_end"]
    print(f"{'config':<14}{'backend':<12}" + "".join(f"{s:>14}" for s in steps) + f"{'total':>8}")
    for r in rows:
        print(f"{r['config']:<14}{r['backend']:<12}" + "".join(f"{r['start_up_s'][s]:>14.2f}" for s in steps)
              + f"{r['s_to_first_epoch_end']:>8.1f}")
    print(f"(\"of peak\": of the float32 2048x2048 matmul in NumPy's BLAS, measured in each worker right after its "
          f"timings, {peak:.0f} GFLOP/s before the first; \"of own\": of the same matmul in the backend's own "
          f"kernels; {os.cpu_count()} CPUs)")


def print_against_fused(rows, references):
    """train.py's training steps against the hand-fused JAX loop of the same model (fused_reference)."""
    print("\ntraining images/s against the hand-fused JAX loop of the same model and step, on the same machine and "
          "threads")
    print(f"{'config':<14}{'backend':<14}{'img/s':>9}{'of reference':>14}")
    for r in rows:
        if r["config"] in references and r["backend"] != LOOP:
            share = r["images_per_s"] / references[r["config"]]["images_per_s"]
            print(f"{r['config']:<14}{r['backend']:<14}{r['images_per_s']:>9}{share:>14.0%}")


def print_against_loop(rows, loop, fused=None):
    """Whole epochs of train.py (held-out pass, frame, checkpoint) against the plain PyTorch loop's (training and
    test passes) on the same images, in the same sitting; the hand-fused loop's training alone beside them."""
    print(f"\nwhole epochs against a plain PyTorch loop ({LOOP_REFERENCE}, batch {loop['batch_size']}, "
          f"{loop['images']} images, a test pass each epoch; the loop on {loop['threads']} threads): "
          f"{loop['s_whole_epoch']:.2f} s per epoch")
    print(f"{'config':<14}{'backend':<14}{'s/whole':>9}{'of the loop':>13}")
    for r in rows:
        if r["config"] == LOOP_REFERENCE and r["backend"] not in (REFERENCE, LOOP):
            print(f"{r['config']:<14}{r['backend']:<14}{r['s_whole_epoch']:>9.2f}"
                  f"{r['s_whole_epoch'] / loop['s_whole_epoch']:>13.2f}")
    if fused:
        print(f"(the hand-fused JAX loop's training alone, no test pass: {fused['s_per_epoch']:.2f} s, "
              f"{fused['s_per_epoch'] / loop['s_whole_epoch']:.2f} of the loop)")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--data", default=None, help="as in train.py (default: download MNIST)")
    p.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    p.add_argument("--backends", nargs="+", choices=backends.BACKENDS, default=[backends.default_backend()],
                   help="Keras backends to measure, each model on each (default: $KERAS_BACKEND, else tensorflow)")
    p.add_argument("--backend", help=argparse.SUPPRESS)  # the worker's
    # The same range checks as train.py's flags: a bad value is argparse's one line and exit 2.
    p.add_argument("--epochs", type=number_in_range(int, 2), default=None,
                   help="epochs per configuration (the first is not timed, so at least 2; default 5, with --quick 3, "
                        "with --memory 30 as train.py's default)")
    p.add_argument("--batch-size", type=number_in_range(int, 1), default=settings.DEFAULTS["batch_size"])
    p.add_argument("--limit", type=number_in_range(int, 1), default=None, help="use only the first N training images")
    p.add_argument("--eval-k", type=number_in_range(int, 1), default=settings.DEFAULTS["iw_samples"],
                   help="importance samples per image in the timed evaluation (train.py's --iw-samples default)")
    jit = settings.BY_NAME["jit"]
    p.add_argument("--jit", choices=jit.choices, default=jit.default, help="as train.py's --jit")
    p.add_argument("--quick", action="store_true", help="3 epochs, for a fast look")
    p.add_argument("--steps-per-call", type=number_in_range(int, 1), default=None,
                   help="training steps per compiled call, instead of train.py's choice (it must divide an epoch)")
    p.add_argument("--memory", action="store_true",
                   help="instead: a default train.py run on the full MNIST (--epochs of it, 30 for the default run): "
                        "its peak memory and phases")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--reference", choices=(REFERENCE, LOOP), help=argparse.SUPPRESS)  # the worker: a reference loop
    args = p.parse_args(argv)
    args.epochs = args.epochs or (3 if args.quick else 30 if args.memory else 5)
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.memory:
        return full_size_memory(args)
    if args.worker:
        if args.reference:
            return (fused_reference if args.reference == REFERENCE else torch_loop_reference)(args.worker, args)
        return worker(args.worker, CONFIGS[args.worker], args)

    peak = matmul_peak_gflops()
    print(json.dumps({"config": "float32 matmul 2048x2048", "peak_gflops": round(peak, 1),
                      "cpus": os.cpu_count()}), flush=True)
    rows, failed = [], []
    for name in args.configs:
        # interleaved: the machine's speed drifts; each configuration beside its references
        references = ([REFERENCE] if name in FUSED else []) + ([LOOP] if name == LOOP_REFERENCE else [])
        for backend in args.backends + references:
            batch_size = SMALL_BATCH_SIZE if name in SMALL_BATCH else args.batch_size
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", name,
                   *(["--reference", backend] if backend in (REFERENCE, LOOP) else ["--backend", backend]),
                   "--epochs", str(args.epochs), "--batch-size", str(batch_size), "--eval-k", str(args.eval_k),
                   "--jit", args.jit] + \
                (["--steps-per-call", str(args.steps_per_call)] if args.steps_per_call else []) + \
                (["--data", args.data] if args.data else []) + (["--limit", str(args.limit)] if args.limit else [])
            result = subprocess.run(cmd, capture_output=True, text=True)
            lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
            if result.returncode != 0 or not lines:
                print(f"{name} on {backend}: failed: {result.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                failed.append(f"{name} on {backend}")
                continue
            print(lines[-1], flush=True)
            rows.append(json.loads(lines[-1]))

    references = {r["config"]: r for r in rows if r["backend"] == REFERENCE}
    loops = [r for r in rows if r["backend"] == LOOP]
    print_tables([r for r in rows if r["backend"] not in (REFERENCE, LOOP)], peak, args)
    if references:
        print_against_fused(rows, references)
    if loops:
        print_against_loop(rows, loops[0], references.get(LOOP_REFERENCE))
    if failed:
        print(f"error: {len(failed)} of {len(failed) + len(rows)} configurations failed ({', '.join(failed)})",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
