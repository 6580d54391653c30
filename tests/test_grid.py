import math

import pytest

from rewarded_soups.grid import is_vertex, mix_name, normalise, parse_mix, simplex_lattice


def test_two_rewards_eleven_points_run_from_first_expert_to_second():
    grid = simplex_lattice(2, 11)
    assert len(grid) == 11
    assert grid[0] == (1.0, 0.0) and grid[-1] == (0.0, 1.0)
    assert [round(a, 10) for a, _ in grid] == [round(1 - i / 10, 10) for i in range(11)]
    assert all(math.isclose(sum(v), 1.0) for v in grid)


def test_three_rewards_lattice_has_binomial_count_plus_uniform():
    grid = simplex_lattice(3, 3)  # step 1/2: 6 points, uniform (1/3,1/3,1/3) not on it
    assert len(grid) == 7
    assert grid[-1] == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert all(min(v) >= 0 and math.isclose(sum(v), 1) for v in grid)


def test_uniform_not_duplicated_when_on_lattice():
    grid = simplex_lattice(3, 4)  # step 1/3 contains the uniform point
    assert len(grid) == 10
    assert sum(1 for v in grid if all(math.isclose(x, 1 / 3) for x in v)) == 1


def test_bad_grid_arguments():
    with pytest.raises(ValueError, match="grid_points"):
        simplex_lattice(2, 1)
    with pytest.raises(ValueError, match="at least one"):
        simplex_lattice(0, 3)


def test_mix_names_round_trip_and_are_filesystem_safe():
    mix = {"sentiment": 0.3, "concise": 0.7}
    name = mix_name(mix)
    assert name == "sentiment@0.3+concise@0.7"
    assert "/" not in name and " " not in name
    assert parse_mix(name) == mix
    assert parse_mix(mix_name({"bleu1": 1 / 3, "rouge": 2 / 3})) == {"bleu1": 0.3333, "rouge": 0.6667}


def test_bad_mix_names():
    with pytest.raises(ValueError, match="reward name"):
        mix_name({"Bad Name": 1.0})
    with pytest.raises(ValueError, match="cannot parse"):
        parse_mix("sentiment0.5")


def test_vertex_and_normalise():
    assert is_vertex((0.0, 1.0)) and not is_vertex((0.5, 0.5))
    assert normalise([1, 3]) == (0.25, 0.75)
    with pytest.raises(ValueError):
        normalise([0, 0])
