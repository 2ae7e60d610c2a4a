"""docs/results.md: the published recipes' runs (--preset) on the full split beside the papers' figures and the
public re-runs, every number read from a run folder and every comparing sentence computed from them
(`python tools/make_docs.py --data ../shared/data/mnist-full --results`; tools/make_docs.py trains what is missing).
"""
import json
import math
import os

from make_docs import DOCS, ROOT, trained

from mnist_vae.runfolder import RunFolder

# docs/results.md's runs on the full split: (run name, train.py flags). The KL-mistake runs are the README's
# (the default mode of this script, run on the full split).
PRESET_RUNS = [("results-pytorch-examples", ["--preset", "pytorch-examples"]),
               ("results-iwae-vae-stages6", ["--preset", "iwae-vae", "--stages", "6"]),
               ("results-iwae-k5-stages6", ["--preset", "iwae-k5", "--stages", "6"]),
               ("results-iwae-k5-dreg-stages6", ["--preset", "iwae-k5-dreg", "--stages", "6"]),
               ("results-iwae-2layer-vae-stages6", ["--preset", "iwae-2layer-vae", "--stages", "6"]),
               ("results-iwae-2layer-k5-stages6", ["--preset", "iwae-2layer-k5", "--stages", "6"]),
               ("results-iwae-2layer-k50-stages6", ["--preset", "iwae-2layer-k50", "--stages", "6"])]
IWAE_RUNS = [name for name, _ in PRESET_RUNS if name.startswith("results-iwae")]  # one layer first: VAE, k5, DReG
# Tomczak & Welling's protocol allows 2,000 epochs (stopped early after 50 without improvement); these ran the
# first VAMP_EPOCHS, which fit a session of this machine beside the other runs: said on the page.
VAMP_EPOCHS = 200
VAMP_RUNS = [(f"results-vampprior-{VAMP_EPOCHS}", ["--preset", "vampprior", "--epochs", str(VAMP_EPOCHS)]),
             (f"results-vampprior-standard-{VAMP_EPOCHS}",
              ["--preset", "vampprior-standard", "--epochs", str(VAMP_EPOCHS)])]
# The VampPrior rows' whole protocol (up to 2,000 epochs, stopped after 50 without a better validation bound), run in
# the background across sessions with --resume from a worktree of a fixed commit; --in-progress names their folder.
PROTOCOL_RUNS = [("vampprior-protocol", "vampprior"), ("vampprior-standard", "vampprior-standard")]
KL_RUNS = [(f"docs-z{d}-beta-{name}", ["--epochs", "30", "--beta", str(beta), "--latent-dim", str(d)])
           for d in (2, 20) for name, beta in (("1", 1.0), ("avg", 1.0 / d))]
# How these folders were made, where it is not in them (wall times depend on what else the machine ran): data
# beside the runs, docs/run-notes.json: a note per run, and the runs resumed before checkpoints kept the training
# time (the epoch after which each was resumed, the median seconds of its passes in its console logs).
with open(os.path.join(DOCS, "run-notes.json"), encoding="utf-8") as _notes:
    _PROVENANCE = json.load(_notes)
RUN_NOTES = _PROVENANCE["notes"]
RESUMED = {name: (resumed["after_epoch"], resumed["seconds_per_pass"])
           for name, resumed in _PROVENANCE["resumed"].items()}


def results(args):
    """docs/results.md from the runs above, trained first where they have not finished: every number on the
    page is read from a run folder, every sentence that compares is computed from them."""
    runs, unfinished = {}, {}  # unfinished: {name: its RunFolder in --in-progress, or None}
    for name, flags in PRESET_RUNS + VAMP_RUNS + KL_RUNS:
        if args.finished_only and not os.path.exists(os.path.join(ROOT, "outputs", name, "eval.json")):
            folder = RunFolder(os.path.join(args.in_progress, name)) if args.in_progress else None
            unfinished[name] = folder if folder and folder.state else None
            continue
        runs[name] = read_result(trained(name, flags, args.data))
    data = args.data or "(the download)"
    lines = (_results_header(runs, data) + _pytorch_section(runs, data) + _iwae_section(runs, data, unfinished)
             + vampprior_section(runs, data) + protocol_section(args.in_progress) + _kl_section(runs, data))
    with open(os.path.join(DOCS, "results.md"), "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {os.path.join(DOCS, 'results.md')}")
    return 0


def _command(run, data):
    saved = run["config"]["command"]  # with the absolute --data path the run was given
    return "`" + (saved.replace(run["config"]["data"], data) if run["config"]["data"] else saved) + "`"


def _samples(run, key, digits=2):
    """A sample-quality number of the run's eval.json, or a dash where its samples were not scored."""
    value = (run["eval"].get("sample_quality") or {}).get(key)
    return "–" if value is None else f"{value:.{digits}f}"


def _share(run, key):
    """A sample-quality share of the run's eval.json as a percentage, or a dash where its samples were not scored."""
    value = (run["eval"].get("sample_quality") or {}).get(key)
    return "–" if value is None else f"{100 * value:.0f}%"


def _number(run, key):
    return f"{run['eval'][key]:.2f} ± {run['eval'][key + '_stderr']:.2f}"


def _beside(run):
    """ours - published, and whether that is more than our standard error."""
    from mnist_vae.presets import PRESETS

    recipe = PRESETS[run["config"]["preset"]]
    ours, stderr = run["eval"][recipe.result_key], run["eval"][recipe.result_key + "_stderr"]
    return ours - recipe.figure, abs(ours - recipe.figure) > stderr


def _results_header(runs, data):
    versions = runs[PRESET_RUNS[0][0]]["config"]["versions"]
    days = [run["finished"] for run in runs.values()]
    return [
        "# Results beside the literature",
        "",
        "Our numbers on the standard MNIST split (60,000 training images, 10,000 test images; "
        "`../shared/data/mnist-full`, the bytes a Keras download gives), from the published recipes as presets "
        "(`--preset`, see `python train.py -h`). All figures are nats per test image, ± one standard error over "
        "the 10,000 test images, which measures how the images differ, not how training runs differ (the papers "
        "give no run-to-run spread either). One run each, seed 0; no number was adjusted or chosen after the fact.",
        "",
        "This page is written by one command, which trains the runs that have not finished, then reads their "
        "folders (`outputs/<run>`):",
        "",
        f"    python tools/make_docs.py --data {data} --results",
        "",
        f"Machine: {os.cpu_count()} CPU cores, no GPU; Python {versions['python']}, TensorFlow "
        f"{versions.get('tensorflow', '-')}, Keras {versions['keras']}, NumPy {versions['numpy']}; the runs "
        f"finished {' to '.join(sorted({min(days), max(days)}))}. Wall time: from the run folder's config.json to its "
        "eval.json, the final evaluation included.",
        "",
    ]


def _pytorch_section(runs, data):
    from mnist_vae.presets import PRESETS

    pytorch = runs["results-pytorch-examples"]
    difference, outside = _beside(pytorch)
    return [
        "## pytorch/examples' VAE",
        "",
        "784-400-20, ReLU, grey pixels (the cross-entropy against grey targets, so a loss, not a likelihood), "
        "Adam at 1e-3, batch 128, 10 epochs. The test loss is the one-sample negative ELBO, summed over pixels "
        "and averaged over the test images, as `vae/main.py` prints it.",
        "",
        "| run | command | test loss, ours | published | ours - published | reconstruction | KL | wall time |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| {pytorch['name']} | {_command(pytorch, data)} | {_number(pytorch, 'negative_elbo')} | "
        f"{PRESETS['pytorch-examples'].figure} | {difference:+.2f} | {_number(pytorch, 'reconstruction_loss')} | "
        f"{_number(pytorch, 'kl_loss')} | {pytorch['minutes']:.0f} min |",
        "",
        (f"Ours differs from the published figure by {difference:+.2f} nats, more than its standard error. "
         "What is known to cause a difference of this size: the published figure is given only as \"about 105.5\" "
         "(one run of `vae/main.py`, its own seed and initialisation: PyTorch's default initialisation is not "
         "Keras' Glorot uniform), and each test image is scored with one draw of z, whose noise differs between "
         "the two programs." if outside else
         f"Ours is within its standard error of the published figure ({difference:+.2f} nats)."),
        "",
    ]


def _iwae_section(runs, data, unfinished=None):
    from mnist_vae.presets import PAPER_STAGES, PRESETS, staged_passes

    iwae = [runs[name] for name in IWAE_RUNS if name in runs]  # the one-layer rows always: iwae[0:3]
    stages = iwae[0]["config"]["stages"]
    passes = staged_passes(stages)
    lines = [
        f"## Burda et al. 2015 (IWAE), Table 1: shortened schedule, stages 0-{stages - 1}",
        "",
        "784-200-200-50, tanh, Adam (epsilon 1e-4), batch 20, dynamically binarized training images, 400 "
        "training images held out for validation (59,600 trained on), decoder output bias at the logit of the "
        "training pixel means, learning rate 1e-3 · 10^(-i/7) for 3^i passes in stage i. The paper runs stages "
        f"0-{PAPER_STAGES - 1} ({staged_passes(PAPER_STAGES):,} passes); these runs ran stages 0-{stages - 1} "
        f"(`--stages {stages}`: {passes} passes, the last at learning rate {1e-3 * 10 ** (-(stages - 1) / 7):.2g}). "
        "NLL: the importance-weighted bound with k = 5000 on the test set, binarized once with a fixed seed. The "
        "DReG row's published figure is nbip/IWAE's re-run of the recipe with DReG (the paper has no DReG). The "
        "two-layer rows (`2layer`) are the paper's second architecture, x-200-200-z1 (100)-100-100-z2 (50), the "
        "same schedule; their NLL is the bound over both layers' draws.",
        "",
        "| run | command | NLL, ours | published | ours - published | active units (paper) | wall time |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in iwae:
        recipe = PRESETS[run["config"]["preset"]]
        lines.append(f"| {run['name']} | {_command(run, data)} | {_number(run, 'nll_iw')} | {recipe.figure} | "
                     f"{_beside(run)[0]:+.2f} | {run['eval']['active_units']} ({recipe.active_units or '–'}) | "
                     + f"{_wall_time(run, passes)} |")
    return lines + _nll_curves(iwae, unfinished) + _iwae_comparison(iwae, stages, passes, unfinished)


def _nll_curves(iwae, unfinished=None):
    """docs/results-nll-by-stage.png: each staged run's test NLL at the end of each stage, beside the papers'
    end points, and the lines that show it; an unfinished run's stages so far, where its folder was given."""
    from mnist_vae import plots
    from mnist_vae.presets import PAPER_STAGES, PRESETS, staged_passes

    curves = {run["name"]: plots.stage_points(RunFolder(run["dir"]).history(run["config"]["epochs"])) for run in iwae}
    presets = [run["config"]["preset"] for run in iwae]
    for name, folder in (unfinished or {}).items():
        if folder is not None and name in IWAE_RUNS:
            curves[f"{name} (unfinished: {folder.epochs_trained} of {folder.record['epochs']} passes)"] = \
                plots.stage_points(folder.history())
            presets.append(folder.record["preset"])
    published = [(f"{preset}, published ({PRESETS[preset].figure})", staged_passes(PAPER_STAGES),
                  PRESETS[preset].figure) for preset in presets]
    plots.nll_against_passes(curves, os.path.join(DOCS, "results-nll-by-stage.png"),
                             "Test NLL against passes (k = 1000, the first 2,000 test images)", published)
    return ["", "The NLL at the end of each stage (k = 1000 on the first 2,000 test images, recorded by the runs "
                "themselves: `test_nll_iw` in history.csv), against passes on a log scale, with the published "
                f"figures at the end of the paper's {staged_passes(PAPER_STAGES):,} passes:", "",
            '<img src="results-nll-by-stage.png" alt="test NLL against passes, per run" width="640">', ""]


def _iwae_comparison(iwae, stages, passes, unfinished=None):
    """What the IWAE rows say beside the paper's, in sentences computed from them."""
    from mnist_vae.presets import PAPER_STAGES, PRESETS, staged_passes

    gaps = [_beside(run) for run in iwae]
    gain_ours = iwae[0]["eval"]["nll_iw"] - iwae[1]["eval"]["nll_iw"]
    gain_paper = PRESETS["iwae-vae"].figure - PRESETS["iwae-k5"].figure
    remaining = staged_passes(PAPER_STAGES) - passes
    seconds_per_pass = (RESUMED[iwae[0]["name"]][1] if iwae[0]["name"] in RESUMED else
                        (iwae[0]["minutes"] * 60 - iwae[0]["eval"]["seconds"]) / passes)  # the evaluation left out
    lines = [""]
    if all(outside and gap > 0 for gap, outside in gaps):
        lines.append(
            "Every NLL is above its published figure by more than its standard error: by "
            + ", ".join(f"{gap:.2f} nats (`{run['config']['preset']}`)" for run, (gap, _) in zip(iwae, gaps))
            + f". The known cause is the schedule: these runs stopped after "
            f"{passes} of the paper's {staged_passes(PAPER_STAGES):,} passes, before the {remaining:,} passes of "
            f"the stages {stages}-{PAPER_STAGES - 1} at the lowest learning rates; their training loss was still "
            "falling at the end (history.csv in each run folder).")
        lines.append("")
    else:
        lines.append("Ours minus published: " + ", ".join(
            f"{run['name']} {gap:+.2f} nats ({'more' if outside else 'less'} than its standard error)"
            for run, (gap, outside) in zip(iwae, gaps)) + ".")
        lines.append("")
    plain, dreg = iwae[1]["eval"], iwae[2]["eval"]
    lines += [
        f"DReG at the same budget: IWAE k = 5 reaches {dreg['nll_iw']:.2f} with it against {plain['nll_iw']:.2f} "
        f"without, {plain['nll_iw'] - dreg['nll_iw']:+.2f} ± "
        f"{math.hypot(plain['nll_iw_stderr'], dreg['nll_iw_stderr']):.2f} nats (unpaired standard errors); "
        "nbip/IWAE measures 85.18 - 84.90 = +0.28 over the whole schedule.",
        "",
        f"What reproduces: IWAE (k = 5) beats the VAE by {gain_ours:.2f} nats here against {gain_paper:.2f} in the "
        f"paper, with {iwae[1]['eval']['active_units']} active units against {iwae[0]['eval']['active_units']} "
        f"(the paper {PRESETS['iwae-k5'].active_units} against {PRESETS['iwae-vae'].active_units}).",
        "",
        *_two_layer_gains(iwae),
        *(f"- {run['name']}: {RUN_NOTES[run['name']]}." for run in iwae if run["name"] in RUN_NOTES),
        "",
        f"Not run, said plainly: the whole {staged_passes(PAPER_STAGES):,}-pass schedule (at the VAE's pace "
        f"here, {seconds_per_pass * staged_passes(PAPER_STAGES) / 3600:.1f} hours of training on one "
        "thread for the VAE alone, beside other runs; bench.py's small-batch rows, on both threads of the quiet "
        "machine, give 4.5 hours for the VAE row and 6.7 for IWAE k = 5: [performance.md](performance.md#todays-"
        "figures); no GPU machine was lent to this work), `--preset iwae-k50` (fifty decodings per image and step, "
        "as in the two-layer k = 50 run: not started)"
        + _unfinished_clause({name: folder for name, folder in (unfinished or {}).items() if name in IWAE_RUNS}),
        "",
    ]
    return lines


def _wall_time(run, passes):
    """The run's wall time (RunFolder.wall_time); a run resumed before checkpoints kept the training time is
    estimated from its pace (RESUMED)."""
    if run["name"] not in RESUMED:
        return f"{run['minutes']:.0f} min"
    return f"≈ {(passes * RESUMED[run['name']][1] + run['eval']['seconds']) / 60:.0f} min (estimated)"


def _progress(folder):
    """How far an unfinished run got, and at what pace (its checkpoint's training time, where it kept one)."""
    done, seconds = folder.epochs_trained, (folder.state or {}).get("training_seconds")
    return (f"{done} of {folder.record['epochs']} passes"
            + (f", {seconds / done:.0f} s each so far" if seconds and done else ""))


def _unfinished_clause(unfinished):
    """unfinished: {name: its RunFolder, or None where it was not given}."""
    return "." if not unfinished else (
        ", and these shortened runs, started but not finished when this page was written: "
        + ", ".join(f"`{name}`" + (f" ({_progress(folder)}, its curve so far drawn above)" if folder else "")
                    for name, folder in unfinished.items()) + ".")


def _two_layer_gains(iwae):
    """What a second stochastic layer gains at the same budget, beside the paper's gain, for each objective whose
    one- and two-layer rows have both finished."""
    from mnist_vae.presets import PRESETS

    by_preset = {run["config"]["preset"]: run for run in iwae}
    lines = []
    for one, two, what in (("iwae-vae", "iwae-2layer-vae", "the VAE"), ("iwae-k5", "iwae-2layer-k5", "IWAE k = 5")):
        if one in by_preset and two in by_preset:
            a, b = by_preset[one]["eval"], by_preset[two]["eval"]
            lines.append(f"A second stochastic layer gains {a['nll_iw'] - b['nll_iw']:.2f} ± "
                         f"{math.hypot(a['nll_iw_stderr'], b['nll_iw_stderr']):.2f} nats for {what} at the same "
                         f"budget, against {PRESETS[one].figure - PRESETS[two].figure:.2f} in the paper.")
    return lines + ([""] if lines else [])


def vampprior_section(runs, data):
    from results_vampprior import vampprior_section as section  # tools/results_vampprior.py

    return section(runs, data)


def protocol_section(in_progress):
    from results_vampprior import protocol_section as section

    return section(in_progress)


def _kl_section(runs, data):
    lines = [
        "## The KL mistake on the full split",
        "",
        "The README's table, remade on the standard split: the default model (784-512-d, grey pixels, 30 epochs) "
        "with the KL summed over latent dimensions (`--beta 1`, correct) and averaged over them, which is "
        "`--beta 1/latent_dim`. Every test number is at KL weight 1, whatever the run trained with; NLL: k = 1000. "
        "Grey pixels: these compare the two settings, they are not likelihoods. Samples: the Fréchet distance of "
        "10,000 samples to the test images in the reference classifier's features (floor: "
        f"{_samples(runs['docs-z2-beta-1'], 'frechet_distance_floor')}) and the KL of the digits they show from "
        "uniform ([quoting-numbers.md](quoting-numbers.md#sample-quality-how-good-and-how-varied-the-samples-are)). "
        f"These runs finished {' to '.join(sorted({runs[name]['finished'] for name, _ in KL_RUNS}))}.",
        "",
        "| run | command | beta | test loss | reconstruction | KL | NLL (IW) | active units | sample FD | "
        "read confidently | digit coverage KL | wall time |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, _ in KL_RUNS:
        run = runs[name]
        lines.append(f"| {name} | {_command(run, data)} | {run['config']['beta']:g} | "
                     f"{_number(run, 'negative_elbo')} | {_number(run, 'reconstruction_loss')} | "
                     f"{_number(run, 'kl_loss')} | {_number(run, 'nll_iw')} | "
                     f"{run['eval']['active_units']} | {_samples(run, 'frechet_distance')} | "
                     f"{_share(run, 'confident_share')} | {_samples(run, 'coverage_kl', 3)} | "
                     f"{run['minutes']:.0f} min |")
    lines.append("")
    for d in (2, 20):
        right, wrong = runs[f"docs-z{d}-beta-1"]["eval"], runs[f"docs-z{d}-beta-avg"]["eval"]
        worse = wrong["negative_elbo"] - right["negative_elbo"]
        stderr = math.hypot(right["negative_elbo_stderr"], wrong["negative_elbo_stderr"])
        lines.append(
            f"- {d}-D: averaging makes the test loss {worse:+.2f} nats "
            + (f"worse, more than the {stderr:.2f} standard error of the difference" if worse > stderr else
               f"different, within the {stderr:.2f} standard error of the difference")
            + f"; the KL goes from {right['kl_loss']:.2f} to {wrong['kl_loss']:.2f} nats, the reconstruction "
            f"from {right['reconstruction_loss']:.2f} to {wrong['reconstruction_loss']:.2f} and the samples' "
            f"Fréchet distance from {_samples(runs[f'docs-z{d}-beta-1'], 'frechet_distance')} to "
            f"{_samples(runs[f'docs-z{d}-beta-avg'], 'frechet_distance')}.")
    lines += ["", "What the samples, the codes and the KL per dimension look like (the README shows the first pair):",
              ""]
    for kind, title, dims, beta in (("samples", "samples", 20, "0.05"), ("latent_scatter", "latent space", 2, "0.5"),
                                    ("kl_per_dim", "KL per dimension", 20, "0.05")):
        lines += [f"| {dims}-D, `--beta 1`: {title} | {dims}-D, `--beta {beta}`: {title} |", "| --- | --- |",
                  f"| ![{kind}](z{dims}-beta-1-{kind}.png) | ![{kind}](z{dims}-beta-avg-{kind}.png) |", ""]
    return lines


def read_result(run_dir):
    """A finished run folder's config, eval.json, finishing date and wall time (RunFolder.wall_time)."""
    folder = RunFolder(run_dir)
    minutes, finished = folder.wall_time()
    return {"name": folder.name, "config": folder.record, "eval": folder.evaluation, "minutes": minutes,
            "finished": finished, "dir": run_dir}

