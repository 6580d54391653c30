import numpy as np
import pytest

from rewarded_soups.pareto import auto_reference, hypervolume, lmc_margins, lmc_summary, pareto_front


def test_pareto_front_by_hand():
    pts = [[1, 2], [2, 1], [0.5, 0.5], [1.5, 1.5], [1, 1]]
    assert pareto_front(pts).tolist() == [True, True, False, True, False]


def test_hypervolume_of_hand_checked_fronts():
    # Two boxes of 1x2 and 2x1 overlapping on a 1x1 square: 2 + 2 - 1 = 3.
    assert hypervolume([[1, 2], [2, 1]], [0, 0]) == pytest.approx(3.0)
    # Adding (1.5, 1.5) adds the square [1, 1.5] x [1, 1.5].
    assert hypervolume([[1, 2], [2, 1], [1.5, 1.5]], [0, 0]) == pytest.approx(3.25)
    # Dominated points add nothing; a shifted reference shrinks the boxes.
    assert hypervolume([[1, 2], [2, 1], [0.5, 0.5]], [0, 0]) == pytest.approx(3.0)
    assert hypervolume([[1, 2], [2, 1]], [0.5, 0.5]) == pytest.approx(0.75 + 0.75 - 0.25)


def test_points_not_beating_the_reference_add_nothing():
    assert hypervolume([[1, -1]], [0, 0]) == 0.0
    assert hypervolume(np.zeros((0, 2)), [0, 0]) == 0.0


def test_hypervolume_three_rewards():
    assert hypervolume([[1, 1, 1]], [0, 0, 0]) == pytest.approx(1.0)
    assert hypervolume([[2, 1, 1], [1, 2, 1]], [0, 0, 0]) == pytest.approx(3.0)


def test_reference_dimension_mismatch():
    with pytest.raises(ValueError, match="reference has 3"):
        hypervolume([[1, 2]], [0, 0, 0])


def test_lmc_margins_and_summary():
    experts = np.array([[1.0, 0.0], [0.0, 1.0]])  # expert i is best on reward i
    weights = np.array([[0.75, 0.25], [0.5, 0.5], [0.25, 0.75]])
    soups = np.array([[0.8, 0.3], [0.5, 0.45], [0.3, 0.8]])
    margins = lmc_margins(experts, weights, soups)
    np.testing.assert_allclose(margins, [[0.05, 0.05], [0.0, -0.05], [0.05, 0.05]])
    summary = lmc_summary(margins)
    assert summary["holds_fraction"] == pytest.approx(2 / 3)
    assert summary["worst_margin"] == pytest.approx(-0.05)
    assert summary["n_points"] == 3


def test_lmc_shape_mismatch():
    with pytest.raises(ValueError, match="3 interpolation weights per soup but 2 experts"):
        lmc_margins(np.zeros((2, 2)), np.zeros((1, 3)), np.zeros((1, 2)))


def test_auto_reference_sits_below_every_point():
    pts = np.array([[0.0, 10.0], [1.0, 20.0]])
    ref = auto_reference(pts)
    np.testing.assert_allclose(ref, [-0.05, 9.5])
    assert np.all(pts > ref)
