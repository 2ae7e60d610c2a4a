"""Evaluate a trained run on its held-out images: ELBO terms, the importance-weighted NLL, active units.

    python evaluate.py outputs/RUN                      # k = 1000 importance samples per image
    python evaluate.py outputs/RUN --iw-samples 5000    # as in the papers
    python evaluate.py outputs/RUN --max-images 500     # a quick look

Reloads model.keras and the run's config (data source, binarization), writes eval.json and the
figures into the run folder, and prints a table. All values are nats per image.
"""
import argparse
import math
import os
import shlex
import sys
import time

import numpy as np

import cli

ACTIVE_THRESHOLD = 0.01  # a unit is active when Var_x(E_q[z_j | x]) exceeds this (Burda et al. 2015)
EVAL_SEED = 2015  # noise for the estimates: fixed, so the same model always gets the same numbers


def _noise(seed, shape):
    return np.random.default_rng(list(seed)).standard_normal(shape, dtype=np.float32)


def iw_bound(x, z_mean, z_log_var, log_px_given_z, k, chunk=None, seed=(EVAL_SEED, 0), labels=None):
    """Per image: log (1/k) sum_i w_i, z_i ~ q(z|x), w_i = p(x|z_i) p(z_i) / q(z_i|x) (Burda et al. 2015).

    A lower bound on log p(x) (log p(x | label) for a conditional model) that tightens as k grows (k = 1: the
    single-sample ELBO). All k noise draws are made first (NumPy, from seed); `chunk` (samples decoded at
    once) only bounds memory and leaves the result unchanged. log_px_given_z(x_rows, z_rows) returns
    log p(x|z) per row (with labels, log_px_given_z(x_rows, z_rows, label_rows)). The log-weights come from losses.log_importance_weights, as IWAE training's
    do; their logsumexp is taken stably, in float64.
    """
    from keras import ops

    import losses

    x, z_mean, z_log_var = (np.asarray(t, np.float32) for t in (x, z_mean, z_log_var))
    b, d = z_mean.shape
    eps = _noise(seed, (k, b, d))
    chunk = chunk or k
    log_w = []
    for start in range(0, k, chunk):
        e = eps[start:start + chunk]
        c = e.shape[0]
        rows = lambda t: np.broadcast_to(t[None], (c,) + t.shape).reshape((c * b,) + t.shape[1:])  # noqa: E731
        mean_rows, log_var_rows = rows(z_mean), rows(z_log_var)
        z = ops.convert_to_numpy(losses.reparameterize(mean_rows, log_var_rows, e.reshape(c * b, d)))
        log_px = log_px_given_z(rows(x), z) if labels is None else log_px_given_z(rows(x), z, rows(np.asarray(labels)))
        log_w.append(ops.convert_to_numpy(losses.log_importance_weights(log_px, z, mean_rows, log_var_rows)).reshape(c, b))
    log_w = np.concatenate(log_w).astype(np.float64)
    top = log_w.max(axis=0)
    return top + np.log(np.exp(log_w - top).sum(axis=0)) - math.log(k)


def predict(fn, inputs, batch_size):
    """fn applied to inputs (arrays with N rows) batch by batch, as NumPy. Under a data-parallel
    distribution each batch is padded to a multiple of the devices, which must get equal shares."""
    import keras

    distribution = keras.distribution.distribution()
    multiple = distribution.device_mesh.devices.size if distribution is not None else 1
    n = len(inputs[0])
    outputs = []
    for start in range(0, n, batch_size):
        part = [a[start:start + batch_size] for a in inputs]
        rows, padding = len(part[0]), -len(part[0]) % multiple
        if padding:
            part = [np.concatenate([a, np.zeros((padding,) + a.shape[1:], a.dtype)]) for a in part]
        out = fn(*part)
        outputs.append([np.asarray(keras.ops.convert_to_numpy(o))[:rows] for o in (out if isinstance(out, (list, tuple)) else [out])])
    return [np.concatenate(parts) for parts in zip(*outputs)]


def log_likelihood(vae):
    """A compiled function (x_rows, z_rows, label_rows) -> log p(x|z) per row (label_rows: digits, read by
    a conditional model only): the decoder and the reconstruction term as one small Keras model, so each
    backend compiles it its own way."""
    import keras

    import losses
    from model import one_hot

    class LogLikelihood(keras.Model):
        def __init__(self):
            super().__init__()
            self.decoder = vae.decoder

        def call(self, inputs):
            x, z, y = inputs
            return -losses.reconstruction_loss(x, self.decoder([z, y] if vae.conditional else z), likelihood)

    likelihood = getattr(vae, "likelihood", "bernoulli")
    model = LogLikelihood()

    def log_px_given_z(x_rows, z, label_rows=None):
        y = one_hot(label_rows) if vae.conditional else np.zeros((len(z), 1), np.float32)
        return predict(lambda a, b, c: model.predict_on_batch([a, b, c]), [x_rows, z, y], len(x_rows))[0]

    return log_px_given_z


def posterior_summary(z_mean, z_log_var):
    """Per latent dimension: mean KL over images, variance over images of the posterior mean, activity."""
    from keras import ops

    import losses

    kl_per_dim = ops.convert_to_numpy(losses.kl_divergence_per_dim(z_mean, z_log_var)).mean(axis=0)
    variances = np.asarray(z_mean, dtype=np.float64).var(axis=0)
    return {"kl_per_dim": kl_per_dim, "variances": variances, "active": variances > ACTIVE_THRESHOLD,
            "threshold": ACTIVE_THRESHOLD}


def encode(vae, x, labels=None, batch_size=1000):
    """q(z|x) (q(z|x, label) for a conditional model) for images x: {"z_mean", "z_log_var"} as NumPy, with
    the per-dimension summary."""
    from model import encoder_inputs

    x = np.asarray(x, np.float32)
    labels = np.zeros(len(x), np.uint8) if labels is None else np.asarray(labels)
    z_mean, z_log_var = predict(lambda a, y: vae.encoder.predict_on_batch(encoder_inputs(vae, a, y)), [x, labels],
                                batch_size)
    return {"z_mean": z_mean, "z_log_var": z_log_var, **posterior_summary(z_mean, z_log_var)}


def mutual_information(z_mean, z_log_var, seed=(EVAL_SEED, 2)):
    """(estimate, standard error) of I(x; z) under the encoder for these codes (nats): one z_m ~ q(z|x_m) per
    image (fixed noise), scored against the aggregate posterior q(z) = (1/N) sum_n q(z|x_n) of all N codes
    (losses.mutual_information_terms). It lies between 0 and the mean KL, and below log N."""
    from keras import ops

    import losses

    z_mean, z_log_var = np.asarray(z_mean, np.float32), np.asarray(z_log_var, np.float32)
    z = ops.convert_to_numpy(losses.reparameterize(z_mean, z_log_var, _noise(seed, z_mean.shape)))
    kl = ops.convert_to_numpy(losses.kl_divergence(z_mean, z_log_var))
    chunk = max(1, 20_000_000 // z_mean.size)  # rows per (rows, N, d) block: about 80 MB
    log_q = np.concatenate([ops.convert_to_numpy(losses.log_aggregate_posterior(z[start:start + chunk], z_mean, z_log_var))
                            for start in range(0, len(z), chunk)])  # chunks of rows bound the (rows, N) matrix
    terms = ops.convert_to_numpy(losses.mutual_information_terms(z, kl, log_q)).astype(np.float64)
    return float(terms.mean()), float(terms.std(ddof=1) / np.sqrt(len(terms))) if len(terms) > 1 else 0.0


def evaluate_model(vae, x, k=1000, batch_images=100, max_rows=10000, labels=None):
    """The held-out numbers for images x (float32 in [0, 1], binarized or not; labels: their digits, which
    a conditional model reads), as a dict for eval.json, and the posterior (see encode) for the figures,
    with the per-image values behind the means ("per_image": {name: (N,) array}) for paired comparisons."""
    import keras
    from keras import ops

    import losses

    started = time.time()
    labels = None if labels is None else np.asarray(labels)
    posterior = encode(vae, x, labels)
    z_mean, z_log_var = posterior["z_mean"], posterior["z_log_var"]
    log_px_given_z = log_likelihood(vae)
    chunk = max(1, min(k, max_rows // batch_images))
    reconstruction, nll = [], []
    starts = range(0, len(x), batch_images)
    # A bar on a terminal (minutes on full MNIST with k = 5000); the report's time line otherwise.
    bar = keras.utils.Progbar(len(x), unit_name="image") if sys.stdout.isatty() else None
    if bar:
        print(f"importance-weighted evaluation, k = {k} samples per image:")
    for i, start in enumerate(starts):
        xb, mb, lb = x[start:start + batch_images], z_mean[start:start + batch_images], z_log_var[start:start + batch_images]
        yb = None if labels is None else labels[start:start + batch_images]
        # The single-sample estimate of the training loss: one z per image, as in train and test steps.
        z = ops.convert_to_numpy(losses.reparameterize(mb, lb, _noise((EVAL_SEED + 1, i), mb.shape)))
        reconstruction.append(-log_px_given_z(xb, z, yb))
        nll.append(-iw_bound(xb, mb, lb, log_px_given_z, k, chunk, seed=(EVAL_SEED, i), labels=yb))
        if bar:
            bar.update(min(start + batch_images, len(x)))
    reconstruction, nll = np.concatenate(reconstruction), np.concatenate(nll)
    kl = ops.convert_to_numpy(losses.kl_divergence(z_mean, z_log_var))

    def mean_and_stderr(values):
        return float(np.mean(values)), float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0

    results = {}
    for name, values in (("negative_elbo", reconstruction + kl), ("reconstruction_loss", reconstruction),
                         ("kl_loss", kl), ("nll_iw", nll)):
        results[name], results[name + "_stderr"] = mean_and_stderr(values)
    results["mutual_information"], results["mutual_information_stderr"] = mutual_information(z_mean, z_log_var)
    results.update({
        "conditional": bool(vae.conditional),
        "likelihood": getattr(vae, "likelihood", "bernoulli"),
        "iw_samples": k, "images": int(len(x)),
        "active_units": int(posterior["active"].sum()),
        "active_unit_variances": [float(v) for v in posterior["variances"]],
        "active_threshold": ACTIVE_THRESHOLD,
        "kl_per_dim": [float(v) for v in posterior["kl_per_dim"]],
        "seconds": round(time.time() - started, 2),
    })
    posterior["per_image"] = {"negative_elbo": reconstruction + kl, "nll_iw": nll}
    return results, posterior


def report(results, binarize):
    """A short table for the console."""
    density = results.get("likelihood") == "continuous-bernoulli"
    likelihood = binarize != "none" or density
    note = ("grey pixels under a continuous Bernoulli: bounds on a true density, may be negative" if density
            else "binarized pixels" if likelihood else "GREY pixels: these are not likelihoods")
    if results.get("conditional"):
        note += "; a conditional model: bounds on log p(x | label)"
    lines = [f"held-out set: {results['images']} images, nats per image ({note}; binarize={binarize})",
             f"  negative ELBO           {results['negative_elbo']:9.2f} ± {results['negative_elbo_stderr']:.2f}",
             f"    reconstruction        {results['reconstruction_loss']:9.2f} ± {results['reconstruction_loss_stderr']:.2f}",
             f"    KL                    {results['kl_loss']:9.2f} ± {results['kl_loss_stderr']:.2f}",
             f"  NLL estimate, k={results['iw_samples']:<6} {results['nll_iw']:9.2f} ± {results['nll_iw_stderr']:.2f}"
             + ("" if likelihood else "   (a bound on a 'likelihood' of grey targets)"),
             f"  active units            {results['active_units']} of {len(results['kl_per_dim'])} "
             f"(Var of z_mean > {results['active_threshold']})",
             f"  mutual information I(x;z) {results['mutual_information']:7.2f} ± {results['mutual_information_stderr']:.2f}"
             f"   (0 = z ignores x; at most the KL, and log N = {math.log(results['images']):.2f})",
             f"  ({results['seconds']:.1f} s)"]
    return "\n".join(lines)


def parse_args(argv=None):
    from cli import number_in_range

    p = argparse.ArgumentParser(description="Evaluate a trained run on its held-out images.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by train.py")
    p.add_argument("--iw-samples", type=number_in_range(int, 1), default=1000,
                   help="importance samples per image (papers: 5000)")
    p.add_argument("--max-images", type=number_in_range(int, 1), default=None,
                   help="evaluate only the first N held-out images (written to eval-firstN.json; the run's "
                        "eval.json and figures stay as they are)")
    p.add_argument("--data", default=None, metavar="PATH",
                   help="where the run's data is now, if it has moved since training (default: the saved path)")
    p.add_argument("--older-model", action="store_true",
                   help="evaluate model.keras even when the run's checkpoint has trained further")
    cli.add_backend_flag(p)
    return p.parse_args(argv)


def run(args):
    from runs import CONFIG_FORMAT, RunLock, read_config

    backend = cli.select_backend(args.backend or cli.default_backend())
    config = read_config(args.run_dir, CONFIG_FORMAT)
    from distribute import start_keras

    start_keras()
    from stopping import SignalGuard

    # Every file is written atomically: a signal leaves each one as it was or complete.
    with RunLock(args.run_dir), SignalGuard(lambda name: f"interrupted by {name}; eval.json and the figures are "
                                                         "each either as before or complete"):
        return _evaluate(args, config, backend)


def model_state(run_dir, config):
    """(epochs in the run's checkpoint, path of model.keras or None): what --resume and this program
    make of the folder. A RunError, with the command that moves the run on, when there is no model."""
    import checkpoints
    from runs import RunError

    state = checkpoints.read_state(run_dir)
    trained, planned = (state["epoch"] if state else 0), config.get("epochs")
    model_path = os.path.join(run_dir, "model.keras")
    if os.path.isfile(model_path):
        return trained, model_path
    resume = f"python train.py --resume {shlex.quote(run_dir)}"
    if trained == 0:
        raise RunError(f"{run_dir}: no epoch has completed yet, so there is no model.keras; {resume} trains it")
    if isinstance(planned, int) and trained < planned:
        raise RunError(f"{run_dir}: stopped after epoch {trained} of {planned}, before model.keras was written; "
                       f"{resume} trains the rest and writes it")
    raise RunError(f"{run_dir}: all {trained} epochs are trained but the final outputs were not written; "
                   f"{resume} writes them")


def _evaluate(args, config, backend):
    import data
    from runs import RunError, write_json

    config_path = os.path.join(args.run_dir, "config.json")
    trained, model_path = model_state(args.run_dir, config)
    binarize, seed, source = config.get("binarize", "none"), config.get("seed", 0), args.data or config.get("data")
    if binarize not in data.BINARIZE_MODES or not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise RunError(f"{config_path}: binarize = {binarize!r}, seed = {seed!r}: not valid settings; "
                       "the file was edited or damaged")
    try:
        splits = data.load_for_run(source, config.get("dataset", "mnist"), config.get("val_split", 0.2),
                                   config.get("limit"), binarize, seed)
    except data.DataError as e:
        raise data.DataError(f"{e}{'' if args.data else ' (moved? pass --data PATH)'}") from None
    except (TypeError, ValueError, KeyError) as e:
        raise RunError(f"{config_path}: a saved setting is not valid ({e.__class__.__name__}: {e})") from None
    if config.get("test_images") not in (None, len(splits.x_test)):
        raise data.DataError(f"{splits.source}: {len(splits.x_test)} test images, but the run was tested on "
                             f"{config['test_images']}")
    if config.get("conditional") and splits.y_test is None:
        raise data.DataError(f"{splits.source}: has no labels, which the run's conditional model needs")
    x_test = data.as_float(splits.x_test[:args.max_images])
    partial = len(x_test) < len(splits.x_test)

    import keras

    import figures
    import model  # noqa: F401  (registers the custom classes for loading)

    try:
        vae = keras.saving.load_model(model_path)  # safe mode
    except Exception as e:
        raise RunError(f"{model_path}: cannot load ({e.__class__.__name__}: {str(e).splitlines()[0][:200]})") from None
    epoch = model_epoch(vae, config)
    if epoch is not None and epoch < trained and not args.older_model:
        raise RunError(f"{model_path} is the model of epoch {epoch}, but the run's checkpoint has trained {trained} "
                       f"epochs (a --resume that did not finish): python train.py --resume "
                       f"{shlex.quote(args.run_dir)} finishes it; --older-model evaluates epoch {epoch}'s model")
    y_test = None if splits.y_test is None else splits.y_test[:args.max_images]
    results, posterior = evaluate_model(vae, x_test, args.iw_samples, labels=y_test)
    results.update({"epoch": epoch, "binarize": binarize, "data": splits.source})
    name = f"eval-first{len(x_test)}.json" if partial else "eval.json"
    written = [write_json(os.path.join(args.run_dir, name), results)]
    print(report(results, binarize))
    if not partial:  # the figures stay those of the whole held-out set
        import checkpoints

        state = checkpoints.read_state(args.run_dir)
        history = checkpoints.history_columns(state["history"]) if state else None
        written += [p for p in figures.save_all(vae, x_test, splits.y_test, history, args.run_dir, posterior,
                                                seed=seed).values() if os.path.sep in p]
        written.append(refresh_report(args.run_dir, config, results, state["history"] if state else []))
    print(f"evaluated on {backend} (the model of epoch {epoch}); wrote " + ", ".join(os.path.basename(p) for p in written))
    return 0


def refresh_report(run_dir, config, results, history):
    """report.html with this evaluation's numbers (and metrics.json's, where the run wrote one)."""
    import json

    import report

    try:
        with open(os.path.join(run_dir, "metrics.json")) as f:
            metrics = json.load(f)
    except (OSError, ValueError):
        metrics = {"epochs": results.get("epoch"), "partial": False}
    return report.write(run_dir, config, metrics, results, history)


def model_epoch(vae, config):
    """The epoch a saved model was trained to, from its count of training steps."""
    from keras import ops

    try:
        steps_per_epoch = math.ceil(config["train_images"] / config["batch_size"])
        return int(ops.convert_to_numpy(vae.steps_taken.value)) // steps_per_epoch
    except (KeyError, TypeError, ZeroDivisionError, AttributeError):
        return None


def main(argv=None):
    args = parse_args(argv)
    try:
        return cli.exit_on_user_error(run, args)
    except KeyboardInterrupt:  # before the run folder is touched
        print("\ninterrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
