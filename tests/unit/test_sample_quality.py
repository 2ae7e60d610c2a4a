"""mnist_vae/sample_quality.py: the Fréchet distance against closed forms and sampled Gaussians, and the
coverage numbers on hand-made predictions."""
import math

import numpy as np
import pytest

from mnist_vae import sample_quality as sq

pytestmark = pytest.mark.backend_independent  # NumPy only


def random_covariance(rng, d):
    a = rng.standard_normal((d, d))
    return a @ a.T + 0.1 * np.eye(d)


def test_one_dimension_and_diagonal_covariances_have_their_closed_forms():
    # N(m1, s1^2) and N(m2, s2^2): (m1 - m2)^2 + (s1 - s2)^2
    assert sq.frechet_distance([1.0], [[4.0]], [-2.0], [[9.0]]) == pytest.approx(9.0 + 1.0)
    s1, s2 = np.array([0.5, 2.0, 3.0]), np.array([1.5, 2.0, 0.25])
    m1, m2 = np.array([0.0, 1.0, 2.0]), np.array([3.0, 1.0, -1.0])
    expected = np.sum((m1 - m2) ** 2) + np.sum((s1 - s2) ** 2)
    assert sq.frechet_distance(m1, np.diag(s1 ** 2), m2, np.diag(s2 ** 2)) == pytest.approx(expected, rel=1e-12)


def test_against_the_identity_covariance_it_is_the_eigenvalues_distance():
    # cov_a = I: tr(I + B - 2 B^(1/2)) = sum (1 - sqrt(lambda_i))^2, for any (non-diagonal) B
    rng = np.random.default_rng(0)
    b = random_covariance(rng, 6)
    mean_difference = rng.standard_normal(6)
    expected = np.sum(mean_difference ** 2) + np.sum((1 - np.sqrt(np.linalg.eigvalsh(b))) ** 2)
    assert sq.frechet_distance(np.zeros(6), np.eye(6), mean_difference, b) == pytest.approx(expected, rel=1e-10)


def test_non_commuting_covariances_match_the_matrix_square_root_and_are_symmetric():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(1)
    a, b = random_covariance(rng, 5), random_covariance(rng, 5)
    assert not np.allclose(a @ b, b @ a)
    mean_a, mean_b = rng.standard_normal(5), rng.standard_normal(5)
    cross = scipy_linalg.sqrtm(a @ b).real
    expected = np.sum((mean_a - mean_b) ** 2) + np.trace(a + b - 2 * cross)
    assert sq.frechet_distance(mean_a, a, mean_b, b) == pytest.approx(expected, rel=1e-8)
    assert sq.frechet_distance(mean_b, b, mean_a, a) == pytest.approx(expected, rel=1e-8)


def test_identical_sets_are_at_zero_and_sampled_gaussians_near_their_closed_form():
    rng = np.random.default_rng(2)
    features = rng.standard_normal((500, 8))
    assert sq.features_distance(features, features) == pytest.approx(0.0, abs=1e-9)
    cov_a, cov_b = random_covariance(rng, 3), random_covariance(rng, 3)
    mean_b = np.array([1.0, -0.5, 2.0])
    exact = sq.frechet_distance(np.zeros(3), cov_a, mean_b, cov_b)
    draws = 200_000
    sample_a = rng.multivariate_normal(np.zeros(3), cov_a, draws)
    sample_b = rng.multivariate_normal(mean_b, cov_b, draws)
    assert sq.features_distance(sample_a, sample_b) == pytest.approx(exact, rel=0.02)
    # a worse match is farther: the same Gaussian shifted further
    assert sq.features_distance(sample_a, sample_b + 1.0) > sq.features_distance(sample_a, sample_b)


def one_hot_probabilities(classes, confidence=0.99):
    probabilities = np.full((len(classes), 10), (1 - confidence) / 9)
    probabilities[np.arange(len(classes)), classes] = confidence
    return probabilities


def test_coverage_of_hand_made_predictions():
    even = sq.coverage(one_hot_probabilities(np.arange(100) % 10))
    assert even["coverage_kl"] == pytest.approx(0.0, abs=1e-12) and even["digits_drawn"] == 10
    assert even["class_histogram"] == [0.1] * 10 and even["confident_share"] == 1.0
    only_threes = sq.coverage(one_hot_probabilities(np.full(50, 3)))
    assert only_threes["coverage_kl"] == pytest.approx(math.log(10)) and only_threes["digits_drawn"] == 1
    # half the samples 0, half 1: KL = log 5
    two = sq.coverage(one_hot_probabilities(np.arange(40) % 2))
    assert two["coverage_kl"] == pytest.approx(math.log(5)) and two["digits_drawn"] == 2
    unsure = one_hot_probabilities(np.arange(10), confidence=0.5)
    unsure[:3] = one_hot_probabilities(np.arange(3), confidence=0.95)
    assert sq.coverage(unsure)["confident_share"] == pytest.approx(0.3)


def test_the_requested_digit_share_counts_samples_read_as_the_digit_asked_for():
    requested = np.arange(20) % 10
    predicted = requested.copy()
    predicted[[0, 10, 3]] = [5, 5, 4]  # both 0s and one of the 3s read as other digits
    per_digit, mean = sq.requested_digit_share(one_hot_probabilities(predicted), requested)
    assert per_digit[0] == 0.0 and per_digit[3] == 0.5 and per_digit[7] == 1.0
    assert mean == pytest.approx(17 / 20)
