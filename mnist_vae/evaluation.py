"""The held-out numbers of a trained model: the ELBO's terms, the importance-weighted NLL, active units and
the mutual information I(x; z), all in nats per image (evaluate.py and the end of every run)."""
import math
import sys
import time

import numpy as np

ACTIVE_THRESHOLD = 0.01  # a unit is active when Var_x(E_q[z_j | x]) exceeds this (Burda et al. 2015)


IW_SAMPLES = 1000  # importance samples per image for the NLL (--iw-samples' default)
EVAL_SEED = 2015  # noise for the estimates: fixed, so the same model always gets the same numbers


def _noise(seed, shape):
    return np.random.default_rng(list(seed)).standard_normal(shape, dtype=np.float32)


def iw_bound(x, z_mean, z_log_var, log_px_given_z, k, chunk=None, seed=(EVAL_SEED, 0), labels=None):
    """Per image: log (1/k) sum_i w_i, z_i ~ q(z|x), w_i = p(x|z_i) p(z_i) / q(z_i|x) (Burda et al. 2015).

    A lower bound on log p(x) (log p(x | label) for a conditional model) that tightens as k grows (k = 1: the
    single-sample ELBO). The k noise draws come from one stream (NumPy, from seed), `chunk` samples at a time;
    chunking only bounds memory, whatever k. log_px_given_z(x_rows, z_rows) returns log p(x|z) per row (with
    labels, log_px_given_z(x_rows, z_rows, label_rows)). The log-weights come from
    losses.log_importance_weights, as IWAE training's do; their logsumexp (Keras', as in losses.iwae_loss) is
    kept running, chunk by chunk, in float32.
    """
    from keras import ops

    import losses

    x, z_mean, z_log_var = (np.asarray(t, np.float32) for t in (x, z_mean, z_log_var))
    b, d = z_mean.shape
    stream = np.random.default_rng(list(seed))  # the same draws as one (k, b, d) array, made chunk by chunk
    chunk = chunk or k
    log_sum = None  # log of the running sum of the weights, per image
    for start in range(0, k, chunk):
        c = min(chunk, k - start)
        e = stream.standard_normal((c, b, d), dtype=np.float32)
        rows = lambda t: np.broadcast_to(t[None], (c,) + t.shape).reshape((c * b,) + t.shape[1:])  # noqa: E731
        mean_rows, log_var_rows = rows(z_mean), rows(z_log_var)
        z = ops.convert_to_numpy(losses.reparameterize(mean_rows, log_var_rows, e.reshape(c * b, d)))
        log_px = log_px_given_z(rows(x), z) if labels is None else log_px_given_z(rows(x), z, rows(np.asarray(labels)))
        log_w_chunk = losses.log_importance_weights(log_px, z, mean_rows, log_var_rows)
        chunk_sum = ops.logsumexp(ops.reshape(log_w_chunk, (c, b)), axis=0)
        log_sum = chunk_sum if log_sum is None else ops.logsumexp(ops.stack([log_sum, chunk_sum]), axis=0)
    return ops.convert_to_numpy(log_sum).astype(np.float64) - math.log(k)


def multiple_of_devices():
    """What every batch's rows must be a multiple of: the devices of a data-parallel distribution, or 1."""
    import keras

    distribution = keras.distribution.distribution()
    return distribution.device_mesh.devices.size if distribution is not None else 1


def predict(fn, inputs, batch_size, whole_batches=False):
    """fn applied to inputs (arrays with N rows) batch by batch, as NumPy. Under a data-parallel
    distribution each batch is padded to a multiple of the devices, which must get equal shares; with
    whole_batches, every batch to batch_size rows, so that a compiled fn is traced for one shape only."""
    import keras

    multiple = multiple_of_devices()
    n = len(inputs[0])
    outputs = []
    for start in range(0, n, batch_size):
        part = [a[start:start + batch_size] for a in inputs]
        rows = len(part[0])
        padding = batch_size - rows if whole_batches else -rows % multiple
        if padding:
            part = [np.concatenate([a, np.zeros((padding,) + a.shape[1:], a.dtype)]) for a in part]
        out = fn(*part)
        out = out if isinstance(out, (list, tuple)) else [out]
        outputs.append([np.asarray(keras.ops.convert_to_numpy(o))[:rows] for o in out])
    return [np.concatenate(parts) for parts in zip(*outputs)]


def log_likelihood(vae, rows=None):
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
        # With rows given, every call is padded to that many rows: one compiled shape, however the images
        # and samples divide (each new shape is traced anew, and TensorFlow warns about retracing).
        size = len(x_rows) if rows is None else -(-rows // multiple_of_devices()) * multiple_of_devices()
        return predict(lambda a, b, c: model.predict_on_batch([a, b, c]), [x_rows, z, y], size,
                       whole_batches=rows is not None)[0]

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
    log_q = np.concatenate([ops.convert_to_numpy(losses.log_aggregate_posterior(z[start:start + chunk], z_mean,
                                                                                z_log_var))
                            for start in range(0, len(z), chunk)])  # chunks of rows bound the (rows, N) matrix
    return mean_and_stderr(ops.convert_to_numpy(losses.mutual_information_terms(z, kl, log_q)).astype(np.float64))


def mean_and_stderr(values):
    """(mean, standard error of the mean) of per-image values; a single image has no spread to measure."""
    return float(np.mean(values)), float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


def per_image_bounds(vae, x, z_mean, z_log_var, k, labels=None, batch_images=100, max_rows=10000):
    """(reconstruction term of one z per image, importance-weighted NLL with k samples) per image, in batches
    of images (a progress bar on a terminal: minutes on full MNIST with k = 5000)."""
    import keras
    from keras import ops

    import losses

    chunk = max(1, min(k, max_rows // batch_images))
    log_px_given_z = log_likelihood(vae, rows=chunk * batch_images)
    reconstruction, nll = [], []
    bar = keras.utils.Progbar(len(x), unit_name="image") if sys.stdout.isatty() else None
    if bar:
        print(f"importance-weighted evaluation, k = {k} samples per image:")
    for i, start in enumerate(range(0, len(x), batch_images)):
        rows = slice(start, start + batch_images)
        xb, mb, lb = x[rows], z_mean[rows], z_log_var[rows]
        yb = None if labels is None else labels[rows]
        # The single-sample estimate of the training loss: one z per image, as in train and test steps.
        z = ops.convert_to_numpy(losses.reparameterize(mb, lb, _noise((EVAL_SEED + 1, i), mb.shape)))
        reconstruction.append(-log_px_given_z(xb, z, yb))
        nll.append(-iw_bound(xb, mb, lb, log_px_given_z, k, chunk, seed=(EVAL_SEED, i), labels=yb))
        if bar:
            bar.update(min(start + batch_images, len(x)))
    return np.concatenate(reconstruction), np.concatenate(nll)


def evaluate_model(vae, x, k=IW_SAMPLES, labels=None):
    """The held-out numbers for images x (float32 in [0, 1], binarized or not; labels: their digits, which
    a conditional model reads), as a dict for eval.json, and the posterior (see encode) for the figures,
    with the per-image values behind the means ("per_image": {name: (N,) array}) for paired comparisons."""
    from keras import ops

    import losses

    started = time.time()
    labels = None if labels is None else np.asarray(labels)
    posterior = encode(vae, x, labels)
    z_mean, z_log_var = posterior["z_mean"], posterior["z_log_var"]
    reconstruction, nll = per_image_bounds(vae, x, z_mean, z_log_var, k, labels)
    kl = ops.convert_to_numpy(losses.kl_divergence(z_mean, z_log_var))
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


def mutual_information_note(results):
    """What bounds the I(x; z) estimate, and a warning when this one fell outside them (few images, a 1-D
    code, a poorly fitted posterior: the estimate is noisy, not the quantity)."""
    if not all(isinstance(results.get(k), (int, float)) for k in ("kl_loss", "images", "mutual_information")):
        return "0 = z ignores x; at most the KL"  # an evaluation from before these were recorded
    ceiling = min(results["kl_loss"], math.log(results["images"]))
    if not 0 <= results["mutual_information"] <= ceiling:
        return (f"this estimate fell outside its bounds [0, {ceiling:.2f}] (0, the KL and log N): it is noisy "
                "here; read it as a rough figure")
    return f"0 = z ignores x; at most the KL, and log N = {math.log(results['images']):.2f}"


def console_summary(results, binarize):
    """The held-out numbers as a short table for the console."""
    from mnist_vae import messages

    likelihood = messages.is_likelihood(binarize, results.get("likelihood", "bernoulli"))
    note = messages.console_pixels_note(binarize, results.get("likelihood", "bernoulli"))
    if results.get("conditional"):
        note += "; a conditional model: bounds on log p(x | label)"
    lines = [f"held-out set: {results['images']} images, nats per image ({note}; binarize={binarize})",
             f"  negative ELBO           {results['negative_elbo']:9.2f} ± {results['negative_elbo_stderr']:.2f}",
             f"    reconstruction        {results['reconstruction_loss']:9.2f} ± "
             f"{results['reconstruction_loss_stderr']:.2f}",
             f"    KL                    {results['kl_loss']:9.2f} ± {results['kl_loss_stderr']:.2f}",
             f"  NLL estimate, k={results['iw_samples']:<6} {results['nll_iw']:9.2f} ± {results['nll_iw_stderr']:.2f}"
             + ("" if likelihood else f"   ({messages.GREY_NLL})"),
             f"  active units            {results['active_units']} of {len(results['kl_per_dim'])} "
             f"(Var of z_mean > {results['active_threshold']})",
             f"  mutual information I(x;z) {results['mutual_information']:7.2f} ± "
             f"{results['mutual_information_stderr']:.2f}"
             f"   ({mutual_information_note(results)})",
             f"  ({results['seconds']:.1f} s)"]
    return "\n".join(lines)
