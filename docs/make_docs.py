"""Regenerate the figures and numbers shown in the README.

    python docs/make_docs.py --data ../shared/data/mnist                   # about two minutes on 2 CPU cores
    python docs/make_docs.py --data ../shared/data/mnist --latent-dim 20   # the same comparison in 20-D

Trains the default model twice, with --beta 1 (the ELBO) and with --beta 1/latent_dim (what averaging
the KL over latent dimensions amounts to), writes small PNGs into docs/ and prints a Markdown table
of their test numbers (compare.py's table). The runs themselves go to outputs/docs-z<latent>-*.
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
    args = p.parse_args()
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


if __name__ == "__main__":
    main()
