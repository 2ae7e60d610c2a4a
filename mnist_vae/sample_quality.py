"""How good and how varied samples are, from a reference classifier's outputs (classifier.py), in NumPy float64:
the Fréchet distance between Gaussians fitted to two sets of features (Heusel et al. 2017's FID, here in an MNIST
classifier's features, as TF-GAN's mnist_frechet_distance), the share of samples the classifier labels
confidently, and how evenly the samples cover the ten digits. Pure functions of arrays; no Keras.
"""
import numpy as np

CONFIDENT = 0.9  # a sample is labelled confidently when its most probable class has at least this probability
CLASSES = 10


def gaussian_fit(features):
    """(mean (D,), covariance (D, D)) of features (N, D), as float64 (the covariance with N - 1)."""
    features = np.asarray(features, np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _sqrt_psd(matrix):
    """The symmetric square root of a symmetric positive semi-definite matrix (negative rounding clipped)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(mean_a, cov_a, mean_b, cov_b):
    """The squared Fréchet (2-Wasserstein) distance between N(mean_a, cov_a) and N(mean_b, cov_b):
    |mean_a - mean_b|^2 + tr(cov_a + cov_b - 2 (cov_a^(1/2) cov_b cov_a^(1/2))^(1/2)). The trace of the
    cross term is computed from the symmetric matrix cov_a^(1/2) cov_b cov_a^(1/2), whose eigenvalues are those
    of cov_a cov_b: no complex parts to discard, unlike scipy.linalg.sqrtm of the product."""
    mean_a, mean_b = np.asarray(mean_a, np.float64), np.asarray(mean_b, np.float64)
    cov_a, cov_b = np.atleast_2d(np.asarray(cov_a, np.float64)), np.atleast_2d(np.asarray(cov_b, np.float64))
    root_a = _sqrt_psd(cov_a)
    cross = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace = np.trace(cov_a) + np.trace(cov_b) - 2 * np.sqrt(np.clip(cross, 0, None)).sum()
    return float(np.sum((mean_a - mean_b) ** 2) + max(trace, 0.0))


def features_distance(features_a, features_b):
    """frechet_distance between Gaussians fitted to two sets of features."""
    return frechet_distance(*gaussian_fit(features_a), *gaussian_fit(features_b))


def class_histogram(probabilities):
    """The share of samples whose most probable class is each digit (10,)."""
    predicted = np.asarray(probabilities).argmax(axis=1)
    return np.bincount(predicted, minlength=CLASSES) / len(predicted)


def kl_from_uniform(histogram):
    """KL(histogram || uniform) in nats: 0 when every digit is drawn equally often, log 10 (2.30) when one digit
    is all there is (mode dropping)."""
    histogram = np.asarray(histogram, np.float64)
    shown = histogram > 0
    return float(np.sum(histogram[shown] * np.log(histogram[shown] * len(histogram))))


def coverage(probabilities, confident=CONFIDENT):
    """What the classifier says of a set of samples: the share labelled confidently, the predicted-class
    histogram, its KL from uniform and how many digits appear at all."""
    probabilities = np.asarray(probabilities, np.float64)
    histogram = class_histogram(probabilities)
    return {"confident_share": float(np.mean(probabilities.max(axis=1) >= confident)),
            "class_histogram": [float(v) for v in histogram],
            "coverage_kl": kl_from_uniform(histogram),
            "digits_drawn": int(np.count_nonzero(histogram))}


def requested_digit_share(probabilities, requested):
    """For a conditional model: per digit asked for, the share of its samples the classifier labels as that
    digit (10,), and their mean over the samples."""
    predicted = np.asarray(probabilities).argmax(axis=1)
    requested = np.asarray(requested)
    per_digit = [float(np.mean(predicted[requested == d] == d)) if np.any(requested == d) else None
                 for d in range(CLASSES)]
    return per_digit, float(np.mean(predicted == requested))
