"""Regenerate the figures and numbers shown in the README.

    python tools/make_docs.py --data ../shared/data/mnist-full              # the README's figures and KL table
    python tools/make_docs.py --data ../shared/data/mnist-full --latent-dim 20   # the same comparison in 20-D
    python tools/make_docs.py --data ../shared/data/mnist --objectives      # ELBO against IWAE (k = 5)
    python tools/make_docs.py --data ../shared/data/mnist --conditional     # the conditional model's figures
    python tools/make_docs.py --data ../shared/data/mnist --likelihoods     # Bernoulli against continuous Bernoulli
    python tools/make_docs.py --data ../shared/data/mnist --priors          # N(0, I) against the VampPrior
    python tools/make_docs.py --data ../shared/data/mnist --explorer        # a screenshot of explorer.html in use
    python tools/make_docs.py --data ../shared/data/mnist-full --results    # docs/results.md (tools/results_page.py)

Trains the default model twice, with --beta 1 (the ELBO) and with --beta 1/latent_dim (what averaging
the KL over latent dimensions amounts to), writes small PNGs into docs/ and prints a Markdown table
of their test numbers (compare.py's table). The runs themselves go to outputs/docs-z<latent>-*.
With --objectives: trains --objective elbo and --objective iwae --k 5 (20-D, --binarize dynamic), prints
their table and the paired differences of the per-image test numbers (same images, same noise).
With --likelihoods: trains --likelihood bernoulli and continuous-bernoulli (20-D, grey pixels), draws both
models' reconstructions of the same test digits into docs/likelihood-reconstructions.png and prints their
numbers with two measures of sharpness.
"""
import argparse
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
sys.path.insert(0, ROOT)
from mnist_vae.runfolder import RunFolder  # noqa: E402  (Keras-free: the backend is chosen later)

FIGURES = {"beta-1": ["loss", "reconstructions", "samples", "latent_scatter", "latent_manifold", "interpolation",
                      "kl_per_dim"],
           "beta-avg": ["samples", "latent_scatter", "latent_manifold", "kl_per_dim"]}


def shrink(source, target, width=480, colors=64):
    from PIL import Image

    image = Image.open(source).convert("RGB")
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    image.quantize(colors=colors).save(target, optimize=True)


def trained(run_name, flags, data):
    """outputs/<run_name>, trained with these train.py flags unless it has finished already."""
    run_dir = os.path.join(ROOT, "outputs", run_name)
    if os.path.exists(os.path.join(run_dir, "config.json")):  # never mix numbers from different data
        source = RunFolder(run_dir).record["data_source"]
        wanted = os.path.abspath(data) if data else "keras.datasets.mnist"
        if source != wanted:
            sys.exit(f"{run_dir} was trained on {source}, not {wanted}: move it away to train it anew")
    if not os.path.exists(os.path.join(run_dir, "eval.json")):
        subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *flags, "--out", os.path.join(ROOT, "outputs"),
                        "--run-name", run_name] + (["--data", data] if data else []), check=True)
    return run_dir


def print_table(run_dirs):
    """compare.py's Markdown table of these runs."""
    sys.path.insert(0, ROOT)
    import compare

    print(compare.markdown(*compare.table([compare.read_run(d) for d in run_dirs])), end="")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="as in train.py (default: download MNIST)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--latent-dim", type=int, default=2)
    p.add_argument("--objectives", action="store_true", help="ELBO against IWAE instead (20-D unless --latent-dim)")
    p.add_argument("--conditional", action="store_true",
                   help="instead: a --conditional run of 10 epochs and its figures")
    p.add_argument("--likelihoods", action="store_true", help="instead: Bernoulli against continuous Bernoulli (20-D)")
    p.add_argument("--priors", action="store_true",
                   help="instead: N(0, I) against the VampPrior at the same budget (20-D, gated 300-300, dynamic "
                        "binarization), their samples side by side in docs/priors-samples.png")
    p.add_argument("--explorer", action="store_true",
                   help="instead: docs/explorer.png, the default run's explorer.html "
                   "in headless Chromium (needs selenium and Debian's chromium-driver)")
    p.add_argument("--results", action="store_true",
                   help="instead: docs/results.md, the published recipes' runs beside the papers' figures "
                        "(hours on 2 CPU cores; runs already finished are reused)")
    p.add_argument("--finished-only", action="store_true",
                   help="with --results: leave out the IWAE runs not finished in outputs/ (the page names them) "
                        "rather than train them")
    p.add_argument("--in-progress", metavar="DIR",
                   help="where unfinished runs train (outside the repository): the IWAE rows --finished-only leaves "
                        "out and the VampPrior protocol's rows; the page says how far each got and draws its curve")
    args = p.parse_args()
    if args.results:
        return results(args)
    if args.explorer:
        return explorer_screenshot(args)
    if args.objectives:
        return objectives(args)
    if args.likelihoods:
        return likelihoods(args)
    if args.priors:
        return priors(args)
    if args.conditional:
        run_dir = trained("docs-conditional", ["--conditional", "--epochs", "10"], args.data)
        for figure in ("samples", "latent_manifold"):
            shrink(os.path.join(run_dir, f"{figure}.png"), os.path.join(DOCS, f"conditional-{figure}.png"), width=640)
        return 0
    runs = {"beta-1": 1.0, "beta-avg": 1.0 / args.latent_dim}
    run_dirs = []
    for name, beta in runs.items():
        run_dir = trained(f"docs-z{args.latent_dim}-{name}", ["--epochs", str(args.epochs), "--beta", str(beta),
                                                              "--latent-dim", str(args.latent_dim)], args.data)
        for figure in FIGURES[name]:
            shrink(os.path.join(run_dir, f"{figure}.png"),
                   os.path.join(DOCS, f"z{args.latent_dim}-{name}-{figure}.png"))
        run_dirs.append(run_dir)
    print_table(run_dirs)


def results(args):
    """docs/results.md (tools/results_page.py: its runs, trained where missing, and its sections)."""
    import results_page

    return results_page.results(args)


def objectives(args):
    latent_dim = 20 if args.latent_dim == 2 else args.latent_dim
    runs = {"elbo": ["--objective", "elbo"], "iwae-k5": ["--objective", "iwae", "--k", "5"]}
    run_dirs = [trained(f"docs-objective-z{latent_dim}-{name}", ["--epochs", str(args.epochs), *flags, "--binarize",
                                                                 "dynamic", "--latent-dim", str(latent_dim)], args.data)
                for name, flags in runs.items()]
    print_table(run_dirs)
    paired(run_dirs, args.data)


def likelihoods(args):
    latent_dim = 20 if args.latent_dim == 2 else args.latent_dim
    run_dirs = [trained(f"docs-likelihood-z{latent_dim}-{likelihood}", ["--epochs", str(args.epochs), "--likelihood",
                                                                         likelihood, "--latent-dim", str(latent_dim)],
                        args.data) for likelihood in ("bernoulli", "continuous-bernoulli")]
    print_table(run_dirs)
    sharpness(run_dirs, args.data)


def priors(args):
    """The standard prior against the VampPrior, the same networks, data and epochs: their table and their
    samples, each drawn from its own prior, side by side."""
    from PIL import Image

    latent_dim = 20 if args.latent_dim == 2 else args.latent_dim
    common = ["--epochs", str(args.epochs), "--latent-dim", str(latent_dim), "--hidden", "300,300", "--activation",
              "gated", "--binarize", "dynamic", "--batch-size", "100", "--lr", "5e-4"]
    run_dirs = [trained(f"docs-prior-z{latent_dim}-{prior}", [*common, "--prior", prior], args.data)
                for prior in ("standard", "vampprior")]
    print_table(run_dirs)
    panels = [Image.open(os.path.join(run_dir, "samples.png")).convert("RGB") for run_dir in run_dirs]
    pair = Image.new("RGB", (sum(p.width for p in panels) + 20, max(p.height for p in panels)), "white")
    pair.paste(panels[0], (0, 0))
    pair.paste(panels[1], (panels[0].width + 20, 0))
    pair.save(os.path.join(DOCS, "priors-samples.png"))
    shrink(os.path.join(DOCS, "priors-samples.png"), os.path.join(DOCS, "priors-samples.png"), width=900)


def sharpness(run_dirs, data_path, shown=12):
    """Both models' reconstructions (decoder means at z_mean) of the same test images: their mean absolute
    error against the images, the share of grey pixels (mean between 0.1 and 0.9; the images' own share
    beside it), and one picture: the test digits, then each model's reconstructions."""

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from mnist_vae import backends
    from mnist_vae.backends import start_keras

    backends.select_backend(backends.default_backend())
    keras = start_keras()
    import losses
    from mnist_vae import build, data, evaluation

    rows, names = [], []
    for run_dir in run_dirs:
        folder = RunFolder(run_dir)
        config, splits, (vae, _) = folder.record, folder.splits(data_path), build.saved_model(folder)
        x = data.as_float(splits.x_test)
        z_mean = evaluation.encode(vae, x)["z_mean"]
        means = keras.ops.convert_to_numpy(losses.pixel_means(vae.decoder.predict(z_mean, verbose=0), vae.likelihood))
        grey = lambda a: float(np.mean((a > 0.1) & (a < 0.9)))  # noqa: E731
        print(f"{config['likelihood']}: mean |reconstruction - image| {np.abs(means - x).mean():.4f}, grey pixels "
              f"{grey(means):.1%} of the reconstructions ({grey(x):.1%} of the test images)")
        rows.append(means[:shown, ..., 0])
        names.append(config["likelihood"])
    images = [x[:shown, ..., 0]] + rows
    fig, ax = plt.subplots(figsize=(shown * 0.8, 0.8 * len(images) + 0.6))
    ax.imshow(np.concatenate([np.concatenate(list(r), axis=1) for r in images]), cmap="gray_r", vmin=0, vmax=1)
    ax.set_yticks([14 + 28 * i for i in range(len(images))], ["test digit", *names])
    ax.set_xticks([])
    ax.set_title("Reconstructions from z_mean (each pixel the decoder's mean), same digits, same training")
    full = os.path.join(run_dirs[-1], "likelihood-reconstructions.png")
    fig.savefig(full, dpi=100, bbox_inches="tight")
    shrink(full, os.path.join(DOCS, "likelihood-reconstructions.png"), width=800)


def explorer_screenshot(args):
    """The default run's explorer.html as a user leaves it: two held-out digits picked (their interpolation
    shown) and the pointer on the plane."""
    import numpy as np
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains

    run_dir = trained("docs-explorer", ["--epochs", str(args.epochs)], args.data)
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--window-size=1150,1040"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get("file://" + os.path.join(run_dir, "explorer.html"))
        labels = driver.execute_script("return JSON.parse(document.getElementById('vae-data').textContent)"
                                       ".points.labels")
        import base64

        digits = np.frombuffer(base64.b64decode(labels), np.uint8)
        for n in (int(np.argmax(digits == 7)), int(np.argmax(digits == 0))):  # a 7, then a 0
            driver.execute_script(
                "var c = document.getElementById('plane'), r = c.getBoundingClientRect(),"
                " p = explorerPixelOf(arguments[0]);"
                "c.dispatchEvent(new MouseEvent('click', {clientX: r.left + p[0] * r.width / c.width, "
                "clientY: r.top + p[1] * r.height / c.height, bubbles: true}));", n)
        ActionChains(driver).move_to_element_with_offset(driver.find_element("id", "plane"), 90, -40).perform()
        shot = os.path.join(run_dir, "explorer-screenshot.png")
        driver.save_screenshot(shot)
    finally:
        driver.quit()
    shrink(shot, os.path.join(DOCS, "explorer.png"), width=900, colors=256)


def paired(run_dirs, data_path):
    """Both models on the same test images with the same noise: the mean per-image difference of each
    number and its standard error (far smaller than either number's own, which includes how images differ)."""

    from mnist_vae import backends
    from mnist_vae.backends import start_keras

    backends.select_backend(backends.default_backend())
    start_keras()
    from mnist_vae import build, data, evaluation

    per_image = []
    for run_dir in run_dirs:
        folder = RunFolder(run_dir)
        splits, (vae, _) = folder.splits(data_path), build.saved_model(folder)
        _, posterior = evaluation.evaluate_model(vae, data.as_float(splits.x_test), folder.settings.iw_samples,
                                               labels=splits.y_test)
        per_image.append(posterior["per_image"])
    names = [os.path.basename(d) for d in run_dirs]
    print(f"\npaired, {names[1]} minus {names[0]} (nats per image, ± standard error over images):")
    for key in ("negative_elbo", "nll_iw"):
        difference = per_image[1][key] - per_image[0][key]
        mean, stderr = evaluation.mean_and_stderr(difference)
        print(f"  {key}: {mean:+.2f} ± {stderr:.2f}")


if __name__ == "__main__":
    main()
