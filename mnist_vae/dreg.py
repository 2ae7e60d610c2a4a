"""The doubly reparameterized gradient (DReG; Tucker, Lawson, Gu & Maddison 2018) for the IWAE objective
(--gradient dreg): the same bound, trained with a lower-variance gradient for the encoder.

The plain IWAE gradient of the encoder's parameters phi has two parts: the path through the draws z_i =
mu + sigma * eps_i, and the direct dependence of log q(z_i | x) on phi, a score-function term whose variance
grows with k. DReG rewrites the latter by reparameterizing it a second time: the encoder's gradient becomes
sum_i w~_i^2 d(log w_i)/d(z_i) d(z_i)/d(phi), with w~ the normalized importance weights and q's parameters held
fixed inside log w; the decoder's gradient stays sum_i w~_i grad(log w_i). Both have the plain gradient's
expectation. The model is the learner's VAE unchanged (a run trained this way saves and reloads as one): only
its loss terms are replaced, so that Keras' own trainer takes these gradients on every backend.
"""
from keras import ops

import losses
from model import CLASSES


def _decode(vae, z, inputs):
    """The decoder's logits for k draws per image z (N, k, d), as rows image by image (as VAE.call decodes)."""
    k = z.shape[1]
    z_rows = ops.reshape(z, (-1, z.shape[-1]))
    if not vae.conditional:
        return vae.decoder(z_rows, training=True)
    y = ops.one_hot(ops.cast(inputs["label"], "int32"), CLASSES)
    return vae.decoder([z_rows, ops.repeat(y, k, axis=0)], training=True)


def _log_weights(vae, images, logits, z, z_mean, z_log_var, kl_weight):
    """log w (N, k) of the draws z (N, k, d) decoded as logits, under q(z|x) = N(z_mean, exp(z_log_var))."""
    k = z.shape[1]
    log_px = -ops.reshape(losses.reconstruction_loss(ops.repeat(images, k, axis=0), logits, vae.likelihood), (-1, k))
    return losses.log_importance_weights(log_px, z, ops.expand_dims(z_mean, 1), ops.expand_dims(z_log_var, 1),
                                         kl_weight)


def loss_terms(vae, inputs, outputs):
    """VAE.loss_terms for the IWAE objective with DReG's gradient: (reconstruction, kl, loss) per image, where the
    loss has the value of the negative IWAE bound and the gradient of DReG's surrogate,
    -sum_i w~_i log w'_i, in which z'_i = z_i in value with its gradient scaled by w~_i (so that the encoder's
    gradient, which reaches phi only through z', carries w~_i^2) and q's parameters are held fixed."""
    reconstruction, kl, bound = type(vae).loss_terms(vae, inputs, outputs)  # the values: the plain VAE's own
    images = inputs["image"] if isinstance(inputs, dict) else inputs
    z, z_mean, z_log_var, kl_weight = outputs["z"], outputs["z_mean"], outputs["z_log_var"], vae.kl_weight.value
    log_w = _log_weights(vae, images, outputs["logits"], z, z_mean, z_log_var, kl_weight)
    weights = ops.stop_gradient(ops.softmax(log_w, axis=-1))  # w~: (N, k), constants of the surrogate
    fixed_z = ops.stop_gradient(z)
    scaled_z = fixed_z + ops.cast(ops.expand_dims(weights, -1), z.dtype) * (z - fixed_z)  # = z in value
    log_w_scaled = _log_weights(vae, images, _decode(vae, scaled_z, inputs), scaled_z,
                                ops.stop_gradient(z_mean), ops.stop_gradient(z_log_var), kl_weight)
    surrogate = -ops.sum(weights * log_w_scaled, axis=-1)
    return reconstruction, kl, ops.stop_gradient(bound) + surrogate - ops.stop_gradient(surrogate)


def use_dreg(vae):
    """Train vae (an IWAE, k draws per image) with DReG's gradient; its loss values stay the bound's."""
    if vae.objective != "iwae":
        raise ValueError("DReG is a gradient of the IWAE bound: it needs objective='iwae'")
    vae.loss_terms = lambda inputs, outputs: loss_terms(vae, inputs, outputs)
    return vae
