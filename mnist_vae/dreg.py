"""The doubly reparameterized gradient (DReG; Tucker, Lawson, Gu & Maddison 2018) for the IWAE objective
(--gradient dreg): the same bound, trained with a lower-variance gradient for the encoder.

The plain IWAE gradient of the encoder's parameters phi has two parts: the path through the draws z_i =
mu + sigma * eps_i, and the direct dependence of log q(z_i | x) on phi, a score-function term whose variance
grows with k. DReG rewrites the latter by reparameterizing it a second time: the encoder's gradient becomes
sum_i w~_i^2 d(log w_i)/d(z_i) d(z_i)/d(phi), with w~ the normalized importance weights and q's parameters held
fixed inside log w; the decoder's gradient stays sum_i w~_i grad(log w_i). Both have the plain gradient's
expectation. The model is the learner's VAE unchanged (a run trained this way saves and reloads as one): the
builder hands it this estimator (VAE's gradient_estimator), and Keras' own trainer takes its gradient on every
backend. It needs a prior that does not depend on the encoder (mnist_vae/families.py refuses the others).
"""
from keras import ops


def estimator(vae, inputs, outputs, bound):
    """VAE's gradient_estimator for the IWAE objective: a loss with the value of bound (the negative IWAE bound per
    image) and the gradient of DReG's surrogate, -sum_i w~_i log w'_i, in which z'_i = z_i in value with its
    gradient scaled by w~_i (so that the encoder's gradient, which reaches phi only through z', carries w~_i^2)
    and q's parameters are held fixed. Read through the model's protocol: its per-draw terms (outputs, from
    log_weight_terms) and draw_terms at the scaled draws."""
    if vae.prior.depends_on_encoder:
        raise ValueError(f"DReG's gradient assumes a prior that does not depend on the encoder; {vae.prior.name} does")
    images, _, y = vae.batch_parts(inputs)
    kl_weight = vae.kl_weight.value
    z = outputs["z"]
    log_w = outputs["log_px"] + kl_weight * outputs["log_ratio"]
    weights = ops.stop_gradient(ops.softmax(log_w, axis=-1))  # w~: (N, k), constants of the surrogate
    fixed_z = ops.stop_gradient(z)
    scaled_z = fixed_z + ops.cast(ops.expand_dims(weights, -1), z.dtype) * (z - fixed_z)  # = z in value
    fixed_q = (ops.stop_gradient(ops.expand_dims(outputs[name], 1)) for name in ("z_mean", "z_log_var"))
    log_px, log_ratio, _ = vae.draw_terms(images, scaled_z, *fixed_q, y, training=True)
    surrogate = -ops.sum(weights * (log_px + kl_weight * log_ratio), axis=-1)
    return ops.stop_gradient(bound) + surrogate - ops.stop_gradient(surrogate)
