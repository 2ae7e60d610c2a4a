"""Compare finished or stopped runs side by side.

    python compare.py outputs/RUN_A outputs/RUN_B ...            # writes comparison.{png,csv,md} here
    python compare.py outputs/RUN_A outputs/RUN_B --out results  # or into another folder

One figure overlays the runs' test-loss curves and their KL per epoch; one row per run (printed as
Markdown, and written as CSV and Markdown) gives the settings in which the runs differ, the final test
loss terms (nats per image), the importance-weighted NLL estimate, the active units and the samples' scores
(Fréchet distance in a reference classifier's features; KL of the digits drawn from uniform).
"""
import argparse
import csv
import io
import json
import os
import sys

from mnist_vae import cli

COLUMNS = (("loss", "metrics", "test loss"), ("reconstruction_loss", "metrics", "reconstruction"),
           ("kl_loss", "metrics", "KL"), ("nll_iw", "eval", "NLL (IW)"), ("iw_samples", "eval", "k (NLL)"),
           ("active_units", "eval", "active units"), ("frechet_distance", "samples", "sample FD"),
           ("coverage_kl", "samples", "digit coverage KL"))


def read_run(run_dir):
    """{name, config, metrics, eval (or None), history: {column: [values]}} of a run folder, all of one model
    (RunFolder.numbers): RunError if it is not a run that has completed an epoch."""
    from mnist_vae.runfolder import RunFolder
    from mnist_vae.settings import DEFAULTS

    folder = RunFolder(run_dir)
    config = {**DEFAULTS, **folder.record}  # a setting newer than the run: it ran at the default
    metrics, evaluation = folder.numbers()
    return {"name": folder.name, "config": config, "metrics": metrics, "eval": evaluation,
            "history": folder.history(metrics["epochs"])}


def differing_settings(runs):
    from mnist_vae.settings import NOT_COMPARED

    keys = [k for k in runs[0]["config"] if k not in NOT_COMPARED]
    return [k for k in keys if len({json.dumps(run["config"].get(k)) for run in runs}) > 1]


def table(runs):
    """(header, rows) of the comparison: the differing settings, then the numbers."""
    settings = differing_settings(runs)
    header = ["run", *settings, "epochs trained", *(title for _, _, title in COLUMNS)]
    rows = []
    for run in runs:
        values = {"metrics": run["metrics"], "eval": run["eval"] or {},
                  "samples": (run["eval"] or {}).get("sample_quality") or {}}
        numbers = []
        for key, source, _ in COLUMNS:
            value = values[source].get(key)
            numbers.append("" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value))
        epochs = f"{run['metrics'].get('epochs')}" + (" (stopped)" if run["metrics"].get("partial") else "")
        chosen = (run["eval"] or {}).get("early_stopping") or {}
        if chosen.get("chosen_epoch") is not None and chosen["chosen_epoch"] != run["metrics"].get("epochs"):
            epochs += f" (best {chosen['chosen_epoch']}, early stopping)"  # the numbers are the best epoch's
        rows.append([run["name"], *(str(run["config"].get(k)) for k in settings), epochs, *numbers])
    return header, rows


def markdown(header, rows):
    from mnist_vae import markdown

    def cells(values):  # names, paths and settings are what users typed: shown as typed, never as Markdown
        return "| " + " | ".join(markdown.cell(v) for v in values) + " |"
    lines = [cells(header), "| " + " | ".join("---" for _ in header) + " |"]
    return "\n".join(lines + [cells(row) for row in rows]) + "\n"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Compare runs: their test curves in one figure, one row per run.")
    p.add_argument("runs", nargs="+", type=cli.path_text, metavar="RUN", help="run folders written by train.py")
    p.add_argument("--out", type=cli.path_text, default=".",
                   help="folder for comparison.png, comparison.csv and comparison.md")
    args = p.parse_args(argv)
    seen = {}
    for run_dir in args.runs:
        if os.path.realpath(run_dir) in seen:
            same = seen[os.path.realpath(run_dir)]
            p.error(f"{run_dir} is given twice" + ("" if same == run_dir else f" (as {same} too)")
                    + ": each run is one row")
        seen[os.path.realpath(run_dir)] = run_dir
    return args


def run(args):
    from mnist_vae.rundir import RunError, write_text

    runs, problems = [], []
    for run_dir in args.runs:
        try:
            runs.append(read_run(run_dir))
        except RunError as e:
            problems.append(str(e))
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        problems.append(f"--out {args.out}: is a file, not a folder")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 1
    if len({r["name"] for r in runs}) < len(runs):  # same folder names in different places: use the paths
        for r, path in zip(runs, args.runs):
            r["name"] = os.path.normpath(path)
    header, rows = table(runs)
    text = markdown(header, rows)
    os.makedirs(args.out, exist_ok=True)  # before the table is printed: an error comes alone
    print(text, end="")
    buffer = io.StringIO()
    csv.writer(buffer).writerows([header, *rows])
    written = [write_text(os.path.join(args.out, "comparison.csv"), buffer.getvalue()),
               write_text(os.path.join(args.out, "comparison.md"), text)]
    from mnist_vae import plots

    histories = {r["name"]: r["history"] for r in runs}
    written.append(plots.compare_curves(histories, os.path.join(args.out, "comparison.png")))
    print("wrote " + ", ".join(written))
    return 0


def main(argv=None):
    return cli.exit_on_user_error(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
