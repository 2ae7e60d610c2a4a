"""The held-out numbers of a trained model: the ELBO's terms, the importance-weighted NLL, active units and
the mutual information I(x; z), all in nats per image, and the samples' scores (evaluate.py and the end of every
run)."""
import math
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from mnist_vae.batching import multiple_of_devices, predict
from mnist_vae.presets import IW_SAMPLES

ACTIVE_THRESHOLD = 0.01  # a unit is active when Var_x(E_q[z_j | x]) exceeds this (Burda et al. 2015)


ROWS_PER_CALL = 10000  # decoded draws per compiled call of the bound: bounds its memory, whatever k; JAX's
# bound ran faster at 10,000 than 20,000, TensorFlow's alike (docs/performance.md)
EVAL_SEED = 2015  # noise for the estimates: fixed, so the same model always gets the same numbers


def _noise(seed, shape):
    return np.random.default_rng(list(seed)).standard_normal(shape, dtype=np.float32)


def log_sum_weights_of(log_px_given_z):
    """One chunk of the importance-weighted bound, in Keras ops (compiled whole by importance_weights):
    (x, z_mean, z_log_var, eps, drawn) -> log sum_i w_i per image over the first `drawn` of the chunk's draws.

    eps: (B, c, d), the chunk's noise; drawn: (B,) how many of the c draws are real (the rest pad the chunk to
    one compiled shape). log_px_given_z(x, z) takes the images (B, ...) and their draws z (B, c, d) and returns
    log p(x|z) (B, c), the images broadcast against their draws rather than copied. The log-weights come from
    losses.log_importance_weights under N(0, I), and their logsumexp is Keras', as in losses.iwae_loss. A model's
    bound is importance_weights', from the model's own per-draw terms; this form serves a log p(x|z) given alone.
    """
    from keras import ops

    import losses

    def log_sum_weights(x, z_mean, z_log_var, eps, drawn):
        mean, log_var = ops.expand_dims(z_mean, 1), ops.expand_dims(z_log_var, 1)
        z = losses.reparameterize(mean, log_var, eps)
        log_w = losses.log_importance_weights(log_px_given_z(x, z), z, mean, log_var)
        return _masked_logsumexp(log_w, drawn)

    return log_sum_weights


def iw_bound(x, z_mean, z_log_var, log_sum_weights, k, chunk=None, seed=(EVAL_SEED, 0), done=None, noise_dim=None):
    """Per image: log (1/k) sum_i w_i, z_i ~ q(z|x), w_i = p(x|z_i) p(z_i) / q(z_i|x) (Burda et al. 2015).

    A lower bound on log p(x) (log p(x | label) for a conditional model) that tightens as k grows (k = 1: the
    single-sample ELBO). The k noise draws come from one stream (NumPy, from seed), `chunk` samples at a time,
    each chunk one call of log_sum_weights (log_sum_weights_of; importance_weights compiles it for a model);
    chunking only bounds memory, whatever k. The chunks' sums are combined in float32. done(draws): called
    after each chunk with the draws per image made so far (progress). noise_dim: numbers of noise per draw
    (z's dimensions unless given: vae.noise_dim, where a draw takes more).
    """
    from keras import ops

    x, z_mean, z_log_var = (np.asarray(t, np.float32) for t in (x, z_mean, z_log_var))
    b, d = z_mean.shape[0], noise_dim or z_mean.shape[1]
    chunk = min(chunk or k, k)
    log_sum = None  # log of the running sum of the weights, per image
    for start, c, eps in _one_ahead(_noise_chunks(np.random.default_rng(list(seed)), k, b, chunk, d)):
        chunk_sum = log_sum_weights(x, z_mean, z_log_var, eps, np.full(b, c, np.float32))
        log_sum = chunk_sum if log_sum is None else ops.logsumexp(ops.stack([log_sum, chunk_sum]), axis=0)
        if done:
            done(start + c)
    return ops.convert_to_numpy(log_sum).astype(np.float64) - math.log(k)


def _noise_chunks(stream, k, b, chunk, d):
    """(first draw, draws, eps (b, chunk, d)) for each call of the bound: the same draws as one (k, b, d) array
    from the stream, made chunk by chunk; the last chunk is padded, so that every call has one shape."""
    for start in range(0, k, chunk):
        c = min(chunk, k - start)
        eps = np.zeros((b, chunk, d), np.float32)
        eps[:, :c] = stream.standard_normal((c, b, d), dtype=np.float32).transpose(1, 0, 2)
        yield start, c, eps


def _one_ahead(items):
    """items, each made on a helper thread while the caller works on the one before: the next chunk's noise
    is drawn while the backend computes (it releases the GIL), in the same order, so the same numbers."""
    with ThreadPoolExecutor(1) as pool:
        items = iter(items)
        pending = pool.submit(next, items, None)
        while (item := pending.result()) is not None:
            pending = pool.submit(next, items, None)
            yield item


def _as_function(model, rows, xla):
    """model's compiled predict_on_batch as a function of NumPy arrays, every call padded to `rows` rows (made a
    multiple of the devices): one compiled shape, however the images divide (each new shape is traced anew).
    The model is built float32: under a mixed policy its inputs, the draws among them, must not be cast to
    16 bits; the decoder inside keeps the run's policy. xla: compile it whole with XLA (see xla_suits)."""
    model.compile(jit_compile=xla)

    def run(*inputs):
        size = -(-rows // multiple_of_devices()) * multiple_of_devices()
        def call(*part):
            return model.predict_on_batch(list(part) if len(part) > 1 else part[0])

        return predict(call, list(inputs), size, whole_batches=True)[0]

    return run


def xla_suits(vae):
    """Whether the computations that decode many draws of vae (the bound, log p(x|z)) compile whole with XLA:
    always on JAX (op by op it is many times slower); on TensorFlow for dense decoders, whose fused elementwise
    work the bound measured faster with it, but not for transposed convolutions (about 4x slower under XLA on a
    CPU), nor where TensorFlow's op determinism is on (Keras then refuses XLA) or the weights are mirrored
    over replicas (XLA cannot reach their copies); never on PyTorch (docs/performance.md)."""
    import keras

    backend = keras.backend.backend()
    if backend != "tensorflow":
        return backend == "jax"
    from mnist_vae import tf_engine

    convolutional = any(isinstance(layer, keras.layers.Conv2DTranspose) for layer in vae.decoder.layers)
    return not (convolutional or tf_engine.mirrored(vae) or tf_engine.op_determinism_enabled())


def _masked_logsumexp(log_w, drawn):
    from keras import ops

    real = ops.arange(ops.shape(log_w)[1]) < ops.cast(ops.expand_dims(drawn, 1), "int32")
    return ops.logsumexp(ops.where(real, log_w, float("-inf")), axis=1)


def _labels_input(vae, labels, n):
    """What the compiled functions take for the images' labels: one-hot rows for a conditional model, a
    placeholder column otherwise (one compiled signature for both)."""
    from model import one_hot

    return one_hot(labels) if vae.conditional and labels is not None else np.zeros((n, 1), np.float32)


def one_draw_terms(vae, images):
    """A compiled function (x, z_mean, z_log_var, eps, y) -> (N, 2): log p(x|z) and log p(z) - log q(z|x) at one
    draw per image made with noise eps (N, noise_dim), from the model's own per-draw terms (VAE.log_weight_terms),
    up to `images` images per call: the single-draw estimates of the ELBO's two terms."""
    import keras

    class OneDraw(keras.Model):
        def call(self, inputs):
            x, z_mean, z_log_var, eps, y = inputs
            terms = vae.log_weight_terms(x, eps, y if vae.conditional else None, posterior=(z_mean, z_log_var))
            return keras.ops.stack([terms["log_px"], terms["log_ratio"]], axis=1)

    run = _as_function(OneDraw(dtype="float32"), images, xla_suits(vae))
    return lambda x, z_mean, z_log_var, eps, labels=None: np.asarray(run(
        x, z_mean, z_log_var, eps, _labels_input(vae, labels, len(x))))


def importance_weights(vae, images):
    """log_sum_weights (see iw_bound) for a model, compiled as one computation per call: the draws, the decoder
    on all of them, the log-weights from the model's per-draw terms (VAE.log_weight_terms) and their logsumexp,
    for up to `images` images per call."""
    import keras

    class LogSumWeights(keras.Model):
        def call(self, inputs):
            x, z_mean, z_log_var, eps, drawn, y = inputs
            terms = vae.log_weight_terms(x, eps, y if vae.conditional else None, posterior=(z_mean, z_log_var))
            return _masked_logsumexp(terms["log_px"] + terms["log_ratio"], drawn)

    run = _as_function(LogSumWeights(dtype="float32"), images, xla_suits(vae))

    def for_labels(labels):
        return lambda x, m, v, eps, drawn: run(x, m, v, eps, drawn, _labels_input(vae, labels, len(x)))

    return for_labels


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


def aggregate_posterior(z_mean, z_log_var, block=20_000_000):
    """A compiled function z (M, d) -> log q(z) per row under the aggregate posterior of these N codes
    (losses.log_aggregate_posterior), computed in chunks of rows whose (rows, N, d) block stays near `block`
    values (about 80 MB): the codes are the model's constants, each chunk one call."""
    import keras

    import losses

    class LogAggregatePosterior(keras.Model):
        def __init__(self):
            super().__init__(dtype="float32")
            self.codes = [self.add_weight(shape=a.shape, initializer=keras.initializers.Constant(a), trainable=False,
                                          name=name) for a, name in ((z_mean, "z_mean"), (z_log_var, "z_log_var"))]

        def call(self, z):
            return losses.log_aggregate_posterior(z, *self.codes)

    # TensorFlow's own kernels, as before: the measurements behind xla_suits were of the bound.
    return _as_function(LogAggregatePosterior(), max(1, block // z_mean.size), keras.backend.backend() == "jax")


def mutual_information(z_mean, z_log_var, seed=(EVAL_SEED, 2)):
    """(estimate, standard error) of I(x; z) under the encoder for these codes (nats): one z_m ~ q(z|x_m) per
    image (fixed noise), scored against the aggregate posterior q(z) = (1/N) sum_n q(z|x_n) of all N codes
    (losses.mutual_information_terms). It lies between 0 and the mean KL, and below log N."""
    from keras import ops

    import losses

    z_mean, z_log_var = np.asarray(z_mean, np.float32), np.asarray(z_log_var, np.float32)
    z = ops.convert_to_numpy(losses.reparameterize(z_mean, z_log_var, _noise(seed, z_mean.shape)))
    kl = ops.convert_to_numpy(losses.kl_divergence(z_mean, z_log_var))
    log_q = aggregate_posterior(z_mean, z_log_var)(z)
    return mean_and_stderr(ops.convert_to_numpy(losses.mutual_information_terms(z, kl, log_q)).astype(np.float64))


def mean_and_stderr(values):
    """(mean, standard error of the mean) of per-image values; a single image has no spread to measure."""
    return float(np.mean(values)), float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


def draws_per_call(k, batch_images, max_rows):
    """How many of the k draws per image one call decodes: up to max_rows rows for batch_images images."""
    return max(1, min(k, max_rows // batch_images))


def per_image_bounds(vae, x, z_mean, z_log_var, k, labels=None, batch_images=100, max_rows=ROWS_PER_CALL):
    """(reconstruction term of one z per image, importance-weighted NLL with k samples) per image, in batches
    of images, each of up to max_rows decoded rows per call (a progress bar on a terminal: minutes on full
    MNIST with k = 5000)."""
    from mnist_vae.progress import Progress, duration

    x = np.asarray(x, np.float32)
    max_rows = vae.prior.rows_per_call(max_rows)  # a mixture prior scores each row against its components
    batch_images = min(batch_images, max_rows)
    chunk = draws_per_call(k, batch_images, max_rows)
    one_draw, weights = one_draw_terms(vae, batch_images), importance_weights(vae, batch_images)
    reconstruction, nll = [], []
    progress = Progress(f"importance-weighted evaluation, k = {k:,} samples per image", len(x), "image",
                        shorter=lambda seconds: f"--iw-samples {IW_SAMPLES} would take about "
                                                f"{duration(seconds * IW_SAMPLES / k)}" if k > IW_SAMPLES else None)
    for i, start in enumerate(range(0, len(x), batch_images)):
        rows = slice(start, start + batch_images)
        xb, mb, lb = x[rows], z_mean[rows], z_log_var[rows]
        yb = None if labels is None else labels[rows]
        # the single-draw estimate of the training loss's reconstruction term: one draw per image, as in training
        eps = _noise((EVAL_SEED + 1, i), (len(xb), vae.noise_dim))
        reconstruction.append(-one_draw(xb, mb, lb, eps, yb)[:, 0])
        nll.append(-iw_bound(xb, mb, lb, weights(yb), k, chunk, seed=(EVAL_SEED, i), noise_dim=vae.noise_dim,
                             done=lambda draws, start=start, n=len(xb): progress.update(start + n * draws / k)))
    return np.concatenate(reconstruction), np.concatenate(nll)


def nll_estimate(vae, x, k=IW_SAMPLES, labels=None):
    """(mean, standard error) of the importance-weighted NLL of images x with k samples each: the bound of
    evaluate_model alone, for the NLL at the end of each stage of a staged run (callbacks.StageNLL)."""
    posterior = encode(vae, x, labels)
    _, nll = per_image_bounds(vae, x, posterior["z_mean"], posterior["z_log_var"], k, labels)
    return mean_and_stderr(nll)


def kl_term(vae, x, z_mean, z_log_var, posterior, labels=None, seed=(EVAL_SEED, 4)):
    """Each image's KL term: in closed form where the model has one; otherwise the single-draw estimate
    log q - log p of its per-draw terms at fixed noise, and where the prior has no closed form, posterior's
    kl_per_dim becomes the prior's per-dimension estimate (its kl_per_dim)."""
    from keras import ops

    if vae.kl_has_closed_form:
        return ops.convert_to_numpy(vae.prior.kl(z_mean, z_log_var))
    noise = _noise(seed, (len(x), vae.noise_dim))
    rows = vae.prior.rows_per_call(1000)
    one_draw = one_draw_terms(vae, rows)
    log_ratio = np.concatenate([one_draw(x[i:i + rows], z_mean[i:i + rows], z_log_var[i:i + rows], noise[i:i + rows],
                                         None if labels is None else labels[i:i + rows])[:, 1]
                                for i in range(0, len(x), rows)])
    if not vae.prior.closed_form:
        posterior["kl_per_dim"] = vae.prior.kl_per_dim(z_mean, z_log_var, noise)
    return -log_ratio


def evaluate_model(vae, x, k=IW_SAMPLES, labels=None):
    """The held-out numbers for images x (float32 in [0, 1], binarized or not; labels: their digits, which
    a conditional model reads), as a dict for eval.json, and the posterior (see encode) for the figures,
    with the per-image values behind the means ("per_image": {name: (N,) array}) for paired comparisons."""


    started = time.time()
    labels = None if labels is None else np.asarray(labels)
    posterior = encode(vae, x, labels)
    z_mean, z_log_var = posterior["z_mean"], posterior["z_log_var"]
    bounds_began = time.time()
    reconstruction, nll = per_image_bounds(vae, x, z_mean, z_log_var, k, labels)
    seconds = {"encoder": round(bounds_began - started, 2), "iw_bound": round(time.time() - bounds_began, 2)}
    kl = kl_term(vae, np.asarray(x, np.float32), z_mean, z_log_var, posterior, labels)
    results = {}
    for name, values in (("negative_elbo", reconstruction + kl), ("reconstruction_loss", reconstruction),
                         ("kl_loss", kl), ("nll_iw", nll)):
        results[name], results[name + "_stderr"] = mean_and_stderr(values)
    information_began = time.time()
    results["mutual_information"], results["mutual_information_stderr"] = mutual_information(z_mean, z_log_var)
    seconds["mutual_information"] = round(time.time() - information_began, 2)
    results.update({
        "conditional": bool(vae.conditional),
        "kl_is_estimate": not vae.kl_has_closed_form,
        **({"stochastic_layers": vae.stochastic_layers} if vae.stochastic_layers > 1 else {}),
        "likelihood": vae.likelihood,
        "iw_samples": k, "images": int(len(x)),
        "active_units": int(posterior["active"].sum()),
        "active_unit_variances": [float(v) for v in posterior["variances"]],
        "active_threshold": ACTIVE_THRESHOLD,
        "kl_per_dim": [float(v) for v in posterior["kl_per_dim"]],
        "seconds": round(time.time() - started, 2),
        "seconds_by_part": seconds,
    })
    posterior["per_image"] = {"negative_elbo": reconstruction + kl, "nll_iw": nll}
    return results, posterior


SAMPLES = 10_000  # samples scored by the reference classifier (fewer when the test set is smaller)


def prior_samples(vae, requested, seed):
    """(pixel means of len(requested) samples, what they were drawn from): z from the model's prior at fixed noise
    (its draw), decoded with the digits requested (a conditional model's)."""
    from keras import ops

    import losses
    from model import decoder_inputs

    z = vae.prior.draw(len(requested), list(seed))
    pixels, = predict(lambda zb, yb: ops.convert_to_numpy(losses.pixel_means(
        vae.decoder(decoder_inputs(vae, zb, yb)), vae.likelihood)), [z, requested], 1000)
    return pixels, vae.sampled_from


def sample_quality(vae, grey, say=print, n=SAMPLES, seed=(EVAL_SEED, 3)):
    """How good and how varied the model's samples are (sample_quality.py), for eval.json: N = min(n, test images)
    draws from the prior (prior_samples) decoded to pixel means (a conditional model's: the digits 0-9 in turn)
    against the grey test images, in the features of the reference classifier trained on the grey training images
    (classifier.py);
    the same distance between N training images and the test images is the floor. grey: the run's splits before
    any binarization. None (with the reason in "skipped") for data without labels."""
    from mnist_vae import classifier
    from mnist_vae import sample_quality as sq

    if grey.y_train is None or grey.y_test is None:
        return {"skipped": "the data has no labels to train the reference classifier on"}
    if len(grey.x_test) < 2:  # a covariance needs two
        return {"skipped": "a Fréchet distance needs at least two test images"}
    began = time.time()
    reference, record = classifier.cached(grey, say)
    n = min(n, len(grey.x_test))
    requested = np.arange(n) % sq.CLASSES
    pixels, prior_name = prior_samples(vae, requested, seed)
    sample_features, sample_probabilities = classifier.outputs(reference, pixels)
    test_features, test_probabilities = classifier.outputs(reference, grey.x_test.astype(np.float32) / 255.0)
    chosen = np.random.default_rng(list(seed) + [1]).permutation(len(grey.x_train))[:n]
    train_features, _ = classifier.outputs(reference, grey.x_train[chosen].astype(np.float32) / 255.0)
    results = {
        "frechet_distance": sq.features_distance(sample_features, test_features),
        "frechet_distance_floor": sq.features_distance(train_features, test_features),
        **sq.coverage(sample_probabilities),
        "test_images_coverage": {k: v for k, v in sq.coverage(test_probabilities).items() if k != "class_histogram"},
        "samples": n, "test_images": int(len(grey.x_test)),
        "protocol": f"{n:,} samples (pixel means decoded from z ~ {prior_name}) against the {len(grey.x_test):,} "
                    "grey test "
                    f"images, in the {reference.get_layer(classifier.FEATURES).units} penultimate features of an MNIST "
                    "classifier trained on the run's grey training images; floor: the same distance for "
                    f"{n:,} training images",
        "confident": sq.CONFIDENT,
        "classifier": {k: record[k] for k in ("key", "trained_on", "test_images", "test_accuracy")},
    }
    if vae.conditional:
        results["requested_digit_share_per_digit"], results["requested_digit_share"] = sq.requested_digit_share(
            sample_probabilities, requested)
    results["seconds"] = round(time.time() - began, 2)
    return results
