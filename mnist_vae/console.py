"""What the console shows of a run's numbers: the held-out evaluation as a short table."""
from mnist_vae import messages, presets


def summary(results, binarize, preset=None, overrides=()):
    """The held-out numbers as a short table for the console (with a preset's run: beside the published one)."""
    likelihood = messages.is_likelihood(binarize, results.get("likelihood", "bernoulli"))
    note = messages.console_pixels_note(binarize, results.get("likelihood", "bernoulli"))
    if results.get("conditional"):
        note += "; a conditional model: bounds on log p(x | label)"
    images = messages.count(results["images"], "image")
    lines = [f"held-out set: {images}, nats per image ({note}; binarize={binarize})",
             f"  negative ELBO           {results['negative_elbo']:9.2f} ± {results['negative_elbo_stderr']:.2f}",
             f"    reconstruction        {results['reconstruction_loss']:9.2f} ± "
             f"{results['reconstruction_loss_stderr']:.2f}",
             f"    KL{', estimated' if results.get('kl_is_estimate') else '           '}         "
             f"{results['kl_loss']:9.2f} ± {results['kl_loss_stderr']:.2f}"
             + (f"   (one draw per image: {messages.kl_estimate_reason(results)})" if results.get("kl_is_estimate")
                else ""),
             f"  NLL estimate, k={results['iw_samples']:<6} {results['nll_iw']:9.2f} ± {results['nll_iw_stderr']:.2f}"
             + ("" if likelihood else f"   ({messages.GREY_NLL})"),
             f"  active units            {results['active_units']} of {len(results['kl_per_dim'])} "
             f"(Var of z_mean > {results['active_threshold']})",
             f"  mutual information I(x;z) {results['mutual_information']:7.2f} ± "
             f"{results['mutual_information_stderr']:.2f}"
             f"   ({messages.mutual_information_note(results)})",
             *sample_quality_lines(results.get("sample_quality")),
             f"  ({results['seconds']:.1f} s{_parts(results.get('seconds_by_part'))})"]
    if preset:
        lines.append(f"  compare: {presets.compared_line(preset, results, overrides)}")
    return "\n".join(lines)


def sample_quality_lines(scores):
    """The samples' scores (evaluation.sample_quality) as console lines; none when they were not measured."""
    if not scores:
        return []
    if "skipped" in scores:
        return [f"  samples: not scored ({scores['skipped']})"]
    lines = [f"  samples, Fréchet distance {scores['frechet_distance']:7.2f}   (classifier features, "
             f"{scores['samples']:,} samples; floor {scores['frechet_distance_floor']:.2f}: training images)",
             f"    labelled confidently  {scores['confident_share']:7.1%}   digit coverage: KL from uniform "
             f"{scores['coverage_kl']:.3f} nats (0: even), {scores['digits_drawn']} of 10 digits drawn"]
    if "requested_digit_share" in scores:
        lines.append(f"    the digit asked for   {scores['requested_digit_share']:7.1%}   of samples")
    return lines


def _parts(seconds):
    names = {"encoder": "encoder", "iw_bound": "NLL", "mutual_information": "I(x;z)",
             "sample_quality": "samples"}
    return ": " + ", ".join(f"{names[k]} {v:.1f} s" for k, v in seconds.items() if k in names) if seconds else ""
