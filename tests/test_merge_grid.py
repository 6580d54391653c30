"""A λ grid merged in one pass (rewarded_soups.merging.grid) equals the per-soup merges, bit for bit."""

from __future__ import annotations

import pytest
import torch
from test_merge_engine import crash_at_combine, llama, spec, state

from rewarded_soups.merging import methods
from rewarded_soups.merging.engine import MergeSettings, merge
from rewarded_soups.merging.grid import merge_grid

LAMBDAS = [0.0, 0.1, 0.5, 0.9, 1.0]


@pytest.fixture(scope="module", params=[torch.float32, torch.bfloat16], ids=["float32", "bf16"])
def experts(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("grid")
    dtype = request.param
    return [llama(root / f"e{i}", seed=i, dtype=dtype) for i in range(2)], llama(root / "base", seed=9, dtype=dtype)


@pytest.mark.parametrize("method", [m for m in methods.methods() if methods.get(m).one_pass])
def test_a_grid_in_one_pass_equals_the_soups_merged_one_by_one(experts, tmp_path, method):
    members, base = experts
    settings = MergeSettings(method=method)
    specs = [spec(members, [lam, 1 - lam], base=base) for lam in LAMBDAS]
    grid = [tmp_path / "grid" / f"{lam}" for lam in LAMBDAS]
    infos = merge_grid(specs, grid, settings)
    assert [i["weights"] for i in infos] == [s.weights for s in specs]
    for s, out in zip(specs, grid):
        one = merge(s, tmp_path / "one" / out.name, settings)
        assert one["bytes_written"] > 0
        a, b = state(out), state(tmp_path / "one" / out.name)
        assert set(a) == set(b)
        for name in a:
            assert torch.equal(a[name], b[name]), (method, out.name, name)
        assert (out / "config.json").read_text() == (members[0] / "config.json").read_text()


def test_soups_merged_in_blocks_next_to_soups_that_copy_an_expert(experts, tmp_path, monkeypatch):
    """Large tensors are merged in blocks of rows; a soup at a vertex copies the expert whole: the soups advance
    together however many blocks each has."""
    from rewarded_soups.merging import engine

    monkeypatch.setattr(engine, "BLOCK_ELEMENTS", 64)
    members, _ = experts
    outs = [tmp_path / "grid" / f"{lam}" for lam in LAMBDAS]
    merge_grid([spec(members, [lam, 1 - lam]) for lam in LAMBDAS], outs)
    for lam, out in zip(LAMBDAS, outs):
        merge(spec(members, [lam, 1 - lam]), tmp_path / f"one-{lam}")
        one, grid = state(tmp_path / f"one-{lam}"), state(out)
        assert all(torch.equal(grid[k], one[k]) for k in one), lam


def test_each_expert_tensor_is_read_once(experts, tmp_path, monkeypatch):
    from rewarded_soups.merging.checkpoint import Checkpoint

    members, _ = experts
    reads: dict[tuple[str, str], int] = {}
    original = Checkpoint.get

    def counting(self, name):
        key = (str(self.path), name)
        reads[key] = reads.get(key, 0) + 1
        return original(self, name)

    monkeypatch.setattr(Checkpoint, "get", counting)
    merge_grid([spec(members, [lam, 1 - lam]) for lam in LAMBDAS], [tmp_path / f"{lam}" for lam in LAMBDAS])
    assert reads and max(reads.values()) == 1


def test_a_crash_mid_grid_leaves_no_complete_looking_soup(experts, tmp_path, monkeypatch):
    members, _ = experts
    crash_at_combine(monkeypatch, 7)
    outs = [tmp_path / f"{lam}" for lam in LAMBDAS]
    with pytest.raises(RuntimeError, match="simulated crash"):
        merge_grid([spec(members, [lam, 1 - lam]) for lam in LAMBDAS], outs)
    assert not list(tmp_path.iterdir()), "no soup and no partial directory is left"


def test_soups_of_other_experts_are_refused(experts, tmp_path):
    members, base = experts
    with pytest.raises(ValueError, match="must share their members"):
        merge_grid([spec(members, [0.5, 0.5]), spec([members[0], base], [0.5, 0.5])], [tmp_path / "a", tmp_path / "b"])


def test_the_plan_groups_soups_by_their_experts_when_one_pass_applies(default_config):
    from rewarded_soups.config import validate_config
    from rewarded_soups.grid import mix_name
    from rewarded_soups.plan import grid_of, soup_grids, soup_mixes

    task = validate_config(default_config)["tasks"]["text"]
    grids = soup_grids(task)
    names = [mix_name(m) for m in soup_mixes(task)]
    assert sorted(s for soups in grids.values() for s in soups) == sorted(names)  # each soup in one grid
    assert all("+" in members and len(soups) > 1 for members, soups in grids.items())
    assert grid_of(task, names[0]) in grids
    for change in ({"store": "recipe"}, {"one_pass": False}, {"method": "slerp"}):
        assert soup_grids({**task, "merge": {**task["merge"], **change}}) == {}, change


def test_a_grid_builds_only_the_soups_their_jobs_will_take(tmp_path):
    import json
    import os

    from rewarded_soups.stages import soups_to_build, take_soup

    expert = tmp_path / "experts" / "a"
    expert.mkdir(parents=True)
    soups = tmp_path / "soups"
    settings = {"method": "linear", "options": {}}
    grid = {"a@0.3+b@0.7": [0.3, 0.7], "a@0.5+b@0.5": [0.5, 0.5], "a@0.7+b@0.3": [0.7, 0.3], "a@0.9+b@0.1": [0.9, 0.1]}
    for name, weights in grid.items():
        (soups / name).mkdir(parents=True)
        (soups / name / "merge.json").write_text(json.dumps({"method": "linear", "options": {}, "weights": weights}))
    (soups / "a@0.5+b@0.5" / "merge.json").write_text(
        json.dumps({"method": "ties", "options": {}, "weights": [0.5] * 2})
    )
    os.utime(soups / "a@0.7+b@0.3", (1, 1))  # older than the expert
    (soups / "a@0.3+b@0.7" / "merge.json").unlink()  # an incomplete soup
    wanted = soups_to_build(grid, soups, [expert], settings)
    assert sorted(wanted) == ["a@0.3+b@0.7", "a@0.5+b@0.5", "a@0.7+b@0.3"]  # a@0.9 is up to date

    built = tmp_path / "grid" / "a@0.9+b@0.1"
    built.mkdir(parents=True)
    (built / "merge.json").write_text("{}")
    assert take_soup(built, tmp_path / "taken") and (tmp_path / "taken" / "merge.json").exists()
    assert not built.exists() and not take_soup(built, tmp_path / "again")  # taken once; then merged by its job
