"""The references tools/bench.py measures train.py against: the machine's float32 matrix-multiply peak (NumPy's
BLAS and each backend's own kernels), a plain PyTorch loop of pytorch/examples' kind, and a hand-fused JAX loop of
the same model and step with many steps per compiled call."""
import json
import time

SMALL_BATCH_SIZE = 20  # the IWAE recipes' batch (Burda et al.), whatever --batch-size says
REFERENCE = "reference"  # the hand-fused loop's rows, in the backend column
LOOP = "pytorch-loop"  # the plain PyTorch loop's rows, in the backend column
# The hand-fused loop's model for each configuration it runs beside: widths, latent size, activation, k, batch size
# (None: --batch-size) and dynamic binarization, as CONFIGS builds them through train.py.
FUSED = {"iwae-k1": ((200, 200), 50, "tanh", 1, SMALL_BATCH_SIZE, True),
         "iwae-k5": ((200, 200), 50, "tanh", 5, SMALL_BATCH_SIZE, True),
         "dense-400-20": ((400,), 20, "relu", 1, None, False)}



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


def backend_matmul_gflops(n=2048, repeats=10):
    """The same float32 matrix multiply in the running Keras backend's own kernels (keras.ops.matmul)."""
    import numpy as np
    from keras import ops

    rng = np.random.default_rng(0)
    a, b = (ops.convert_to_tensor(rng.standard_normal((n, n), dtype=np.float32)) for _ in range(2))

    def product():
        c = ops.matmul(a, b)
        getattr(c, "block_until_ready", lambda: None)()  # JAX runs asynchronously
        return c

    product()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        product()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def torch_loop_reference(name, args):
    """The dense-400-20 model trained by a plain PyTorch loop, as pytorch/examples' vae/main.py trains it: 784-400-20
    ReLU networks, Adam, batch --batch-size, the Bernoulli loss from logits plus the KL, each epoch a shuffled
    training pass and then a pass over the test images without gradients. Eager PyTorch on all the CPU's
    threads, nothing else (no checkpoint, no frame): what train.py's whole epochs are compared with."""
    import numpy as np
    import torch
    from torch import nn
    from torch.nn import functional

    from mnist_vae import data, settings

    splits = data.load(args.data, val_split=settings.DEFAULTS["val_split"], limit=args.limit)
    x_train, x_test = (torch.from_numpy(data.as_float(a).reshape(len(a), -1)) for a in (splits.x_train, splits.x_test))
    torch.manual_seed(0)
    encoder, mean, log_var = nn.Sequential(nn.Linear(784, 400), nn.ReLU()), nn.Linear(400, 20), nn.Linear(400, 20)
    decoder = nn.Sequential(nn.Linear(20, 400), nn.ReLU(), nn.Linear(400, 784))
    parameters = [p for m in (encoder, mean, log_var, decoder) for p in m.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=1e-3)

    def loss_of(x):
        h = encoder(x)
        z_mean, z_log_var = mean(h), log_var(h)
        z = z_mean + torch.exp(0.5 * z_log_var) * torch.randn_like(z_mean)
        reconstruction = functional.binary_cross_entropy_with_logits(decoder(z), x, reduction="sum")
        kl = -0.5 * torch.sum(1 + z_log_var - z_mean ** 2 - z_log_var.exp())
        return (reconstruction + kl) / len(x)

    timings = []
    for epoch in range(args.epochs):
        began = time.perf_counter()
        order = torch.randperm(len(x_train))
        for start in range(0, len(x_train), args.batch_size):
            optimizer.zero_grad()
            loss = loss_of(x_train[order[start:start + args.batch_size]])
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            batches = [x_test[i:i + args.batch_size] for i in range(0, len(x_test), args.batch_size)]
            test_loss = sum(float(loss_of(batch)) * len(batch) for batch in batches) / len(x_test)
        timings.append(time.perf_counter() - began)
    whole_epoch = float(np.median(timings[1:]))
    print(json.dumps({"config": name, "backend": LOOP, "images": len(x_train), "batch_size": args.batch_size,
                      "images_per_s": round(len(x_train) / whole_epoch), "s_whole_epoch": round(whole_epoch, 3),
                      "threads": torch.get_num_threads(), "last_test_loss": round(test_loss, 1),
                      "peak_gflops": round(matmul_peak_gflops(), 1)}), flush=True)


def fused_reference(name, args, steps_per_call=100):
    """The configuration's model and training step written by hand in JAX, with no framework around it (FUSED:
    784-200-200-50 tanh networks with the ELBO (k = 1) or the IWAE bound (k = 5) and pixels re-binarized inside
    the step; 784-400-20 ReLU ones on grey pixels), noise drawn inside the step, Adam, and steps_per_call steps per
    compiled call (lax.scan). Not a trainer (no held-out pass, no checkpoint): the limit that train.py's training
    steps are measured against."""
    import jax
    import numpy as np

    from mnist_vae import data, settings

    spec = FUSED[name]
    batch = spec[4] or args.batch_size
    x = data.as_float(data.load(args.data, val_split=settings.DEFAULTS["val_split"], limit=args.limit).x_train)
    x = jax.numpy.asarray(x.reshape(len(x), -1))
    steps_per_call = max(1, min(steps_per_call, len(x) // batch))  # a small set: one pass per call
    steps, state = _reference_training(x, spec, batch, steps_per_call)
    calls = max(1, len(x) // (steps_per_call * batch))
    jax.block_until_ready(steps(state, jax.random.PRNGKey(1)))  # compiles
    timings = []
    for epoch in range(args.epochs - 1):
        began = time.perf_counter()
        for call in range(calls):
            state = steps(state, jax.random.PRNGKey(epoch * calls + call))
        jax.block_until_ready(state)
        timings.append(time.perf_counter() - began)
    images_per_s = calls * steps_per_call * batch / float(np.median(timings))
    print(json.dumps({"config": name, "backend": REFERENCE, "images": int(calls * steps_per_call * batch),
                      "batch_size": batch, "images_per_s": round(images_per_s),
                      "s_per_epoch": round(len(x) / images_per_s, 3), "steps_per_call": steps_per_call,
                      "peak_gflops": round(matmul_peak_gflops(), 1)}), flush=True)


def _reference_model(spec):
    """(the initial parameters, loss(params, images, key)): fused_reference's networks (Glorot uniform, as Keras'
    Dense) and their bound with k draws per image (the ELBO at k = 1), in plain JAX."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    widths, latent, activation, k, _, binarize = spec
    act = {"tanh": jnp.tanh, "relu": jax.nn.relu}[activation]
    up = list(widths[::-1])
    sizes = [*zip((784, *widths), widths), (widths[-1], latent), (widths[-1], latent), *zip((latent, *up), (*up, 784))]
    keys = jax.random.split(jax.random.PRNGKey(0), len(sizes))
    params = [(jax.random.uniform(key, shape, minval=-1, maxval=1) * np.sqrt(6 / sum(shape)), jnp.zeros(shape[1]))
              for key, shape in zip(keys, sizes)]
    n = len(widths)

    def loss(params, images, key):
        (wm, bm), (wv, bv) = params[n:n + 2]
        draw, noise = jax.random.split(key)
        if binarize:
            images = (jax.random.uniform(draw, images.shape) < images).astype(jnp.float32)
        h = images
        for w, b in params[:n]:
            h = act(h @ w + b)
        mean, log_var = h @ wm + bm, h @ wv + bv
        eps = jax.random.normal(noise, (images.shape[0], k, latent))
        z = h = mean[:, None] + jnp.exp(0.5 * log_var)[:, None] * eps
        for w, b in params[n + 2:-1]:
            h = act(h @ w + b)
        logits = h @ params[-1][0] + params[-1][1]
        log_px = jnp.sum(images[:, None] * logits - jax.nn.softplus(logits), axis=-1)
        log_w = log_px - 0.5 * jnp.sum(z ** 2 - eps ** 2 - log_var[:, None], axis=-1)  # log p(z) - log q(z|x)
        return -jnp.mean(jax.nn.logsumexp(log_w, axis=1) - jnp.log(k))

    return params, loss


def _reference_training(x, spec, batch, steps_per_call):
    """(a compiled function (state, key) -> state that takes steps_per_call training steps, the initial state):
    fused_reference's model, loss, Adam and loop, in plain JAX."""
    import jax
    import jax.numpy as jnp

    params, loss = _reference_model(spec)

    def step(state, inputs):
        params, m, v, t = state
        images, key = inputs
        grads = jax.grad(loss)(params, images, key)
        t = t + 1
        m = jax.tree_util.tree_map(lambda a, g: 0.9 * a + 0.1 * g, m, grads)
        v = jax.tree_util.tree_map(lambda a, g: 0.999 * a + 0.001 * g * g, v, grads)
        scale = 1e-3 * jnp.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        params = jax.tree_util.tree_map(lambda p, a, b: p - scale * a / (jnp.sqrt(b) + 1e-4), params, m, v)
        return (params, m, v, t), None

    @jax.jit
    def steps(state, key):
        order = jax.random.permutation(key, x.shape[0])[:steps_per_call * batch]  # this call's images
        batches = x[order].reshape(steps_per_call, batch, -1)
        return jax.lax.scan(step, state, (batches, jax.random.split(key, steps_per_call)))[0]

    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    return steps, (params, zeros, zeros, jnp.zeros(()))
