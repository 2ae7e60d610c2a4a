"""Regenerate the figures and numbers shown in the README.

    python docs/make_docs.py --data ../shared/data/mnist                   # about two minutes on 2 CPU cores
    python docs/make_docs.py --data ../shared/data/mnist --latent-dim 20   # the same comparison in 20-D
    python docs/make_docs.py --data ../shared/data/mnist --objectives      # ELBO against IWAE (k = 5)
    python docs/make_docs.py --data ../shared/data/mnist --conditional     # the conditional model's figures

Trains the default model twice, with --beta 1 (the ELBO) and with --beta 1/latent_dim (what averaging
the KL over latent dimensions amounts to), writes small PNGs into docs/ and prints a Markdown table
of their test numbers (compare.py's table). The runs themselves go to outputs/docs-z<latent>-*.
With --objectives: trains --objective elbo and --objective iwae --k 5 (20-D, --binarize dynamic), prints
their table and the paired differences of the per-image test numbers (same images, same noise).
"""
import argparse
import os
import subprocess
import sys

DOCS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(DOCS)
FIGURES = {"beta-1": ["loss", "reconstructions", "samples", "latent_scatter", "latent_manifold", "interpolation",
                      "kl_per_dim"],
           "beta-avg": ["samples", "latent_scatter", "latent_manifold", "kl_per_dim"]}


def shrink(source, target, width=480):
    from PIL import Image

    image = Image.open(source).convert("RGB")
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    image.quantize(colors=64).save(target, optimize=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="as in train.py (default: download MNIST)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--latent-dim", type=int, default=2)
    p.add_argument("--objectives", action="store_true", help="ELBO against IWAE instead (20-D unless --latent-dim)")
    p.add_argument("--conditional", action="store_true", help="instead: a --conditional run of 10 epochs and its figures")
    args = p.parse_args()
    if args.objectives:
        return objectives(args)
    if args.conditional:
        run_dir = os.path.join(ROOT, "outputs", "docs-conditional")
        if not os.path.exists(os.path.join(run_dir, "eval.json")):
            subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--conditional", "--epochs", "10",
                            "--out", os.path.join(ROOT, "outputs"), "--run-name", "docs-conditional"]
                           + (["--data", args.data] if args.data else []), check=True)
        for figure in ("samples", "latent_manifold"):
            shrink(os.path.join(run_dir, f"{figure}.png"), os.path.join(DOCS, f"conditional-{figure}.png"), width=640)
        return 0
    runs = {"beta-1": 1.0, "beta-avg": 1.0 / args.latent_dim}
    run_dirs = []
    for name, beta in runs.items():
        run_name = f"docs-z{args.latent_dim}-{name}"
        run_dir = os.path.join(ROOT, "outputs", run_name)
        if not os.path.exists(os.path.join(run_dir, "eval.json")):
            cmd = [sys.executable, os.path.join(ROOT, "train.py"), "--epochs", str(args.epochs), "--beta", str(beta),
                   "--latent-dim", str(args.latent_dim), "--out", os.path.join(ROOT, "outputs"),
                   "--run-name", run_name] + (["--data", args.data] if args.data else [])
            subprocess.run(cmd, check=True)
        for figure in FIGURES[name]:
            shrink(os.path.join(run_dir, f"{figure}.png"), os.path.join(DOCS, f"z{args.latent_dim}-{name}-{figure}.png"))
        run_dirs.append(run_dir)
    sys.path.insert(0, ROOT)
    import compare

    print(compare.markdown(*compare.table([compare.read_run(d) for d in run_dirs])), end="")


def objectives(args):
    latent_dim = 20 if args.latent_dim == 2 else args.latent_dim
    runs = {"elbo": ["--objective", "elbo"], "iwae-k5": ["--objective", "iwae", "--k", "5"]}
    run_dirs = []
    for name, flags in runs.items():
        run_name = f"docs-objective-z{latent_dim}-{name}"
        run_dir = os.path.join(ROOT, "outputs", run_name)
        if not os.path.exists(os.path.join(run_dir, "eval.json")):
            cmd = [sys.executable, os.path.join(ROOT, "train.py"), "--epochs", str(args.epochs), *flags,
                   "--binarize", "dynamic", "--latent-dim", str(latent_dim), "--out", os.path.join(ROOT, "outputs"),
                   "--run-name", run_name] + (["--data", args.data] if args.data else [])
            subprocess.run(cmd, check=True)
        run_dirs.append(run_dir)
    sys.path.insert(0, ROOT)
    import compare

    print(compare.markdown(*compare.table([compare.read_run(d) for d in run_dirs])), end="")
    paired(run_dirs, args.data)


def paired(run_dirs, data_path):
    """Both models on the same test images with the same noise: the mean per-image difference of each
    number and its standard error (far smaller than either number's own, which includes how images differ)."""
    import json

    import numpy as np

    import cli
    from distribute import start_keras

    cli.select_backend(cli.default_backend())
    keras = start_keras()
    import data
    import evaluate
    import model  # noqa: F401  (registers the custom classes for loading)

    per_image = []
    for run_dir in run_dirs:
        config = json.load(open(os.path.join(run_dir, "config.json")))
        splits = data.load_for_run(data_path, config["dataset"], config["val_split"], config["limit"],
                                   config["binarize"], config["seed"])
        vae = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
        _, posterior = evaluate.evaluate_model(vae, data.as_float(splits.x_test), config["iw_samples"],
                                               labels=splits.y_test)
        per_image.append(posterior["per_image"])
    names = [os.path.basename(d) for d in run_dirs]
    print(f"\npaired, {names[1]} minus {names[0]} (nats per image, ± standard error over images):")
    for key in ("negative_elbo", "nll_iw"):
        difference = per_image[1][key] - per_image[0][key]
        print(f"  {key}: {difference.mean():+.2f} ± {difference.std(ddof=1) / np.sqrt(len(difference)):.2f}")


if __name__ == "__main__":
    main()
