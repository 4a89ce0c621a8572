"""The robust-accuracy ceiling (afsl_bench/data/ceiling.py) against brute force, and `afsl-bench ceiling`."""

import itertools

import pytest
import torch
from typer.testing import CliRunner

from afsl_bench.cli import app
from afsl_bench.core.types import Split
from afsl_bench.data.ceiling import ceilings, linf_distances, robust_ceiling


def brute_force_ceiling(points: torch.Tensor, labels: torch.Tensor, eps: float) -> float:
    """The largest set of samples whose eps-balls meet no ball of the other class, over all subsets."""
    n = len(labels)
    best = 0
    for keep in itertools.product((False, True), repeat=n):
        chosen = [i for i in range(n) if keep[i]]
        clash = any(
            labels[i] != labels[j] and (points[i] - points[j]).abs().max() <= 2 * eps
            for i, j in itertools.combinations(chosen, 2)
        )
        best = max(best, 0 if clash else len(chosen))
    return best / n


@pytest.mark.parametrize("seed", range(6))
def test_ceiling_equals_the_brute_force_maximum_over_subsets(seed) -> None:
    g = torch.Generator().manual_seed(seed)
    points, labels = torch.rand(10, 3, generator=g), torch.randint(0, 2, (10,), generator=g)
    if labels.unique().numel() < 2:
        labels[0] = 1 - labels[1]
    distances = linf_distances(points[labels == 0], points[labels == 1])
    for eps in (0.02, 0.1, 0.2, 0.4):
        assert robust_ceiling(distances, eps)[0] == pytest.approx(brute_force_ceiling(points, labels, eps))


def test_a_fake_within_two_eps_of_its_real_costs_one_of_the_pair() -> None:
    real = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    fake = real.clone()
    fake[0, :, :2, :2] = 10  # 10/255 from real 0 (and real 1) in the region it changed
    fake[1, :, :2, :2] = 40
    images = torch.cat([real, fake])
    split = Split(images, torch.tensor([0, 0, 1, 1]), list("abcd"), list("abcd"), ["real"] * 2 + ["x"] * 2)
    rows = {round(r["eps"] * 255): r for r in ceilings(split, [4 / 255, 8 / 255, 16 / 255, 24 / 255])}
    assert rows[4]["ceiling"] == 1.0  # 10/255 > 2 x 4/255
    assert rows[8]["ceiling"] == 0.75  # the 10/255 fake conflicts with both reals: one point lost
    assert rows[24]["ceiling"] == 0.5  # both fakes within 48/255 of both reals
    assert rows[4]["closest_pair"] == pytest.approx(10 / 255)


def test_ceiling_command_prints_the_table() -> None:
    args = [
        "ceiling",
        "synthetic",
        "--set",
        "n_identities=10",
        "--set",
        "images_per_identity=4",
        "--eps",
        "8/255",
    ]
    shown = CliRunner().invoke(app, args)
    assert shown.exit_code == 0, shown.output
    assert "8/255" in shown.stdout and "closest real-fake pair" in shown.stdout
    bad = CliRunner().invoke(app, ["ceiling", "synthetic", "--eps", "8"])
    assert bad.exit_code == 2 and "pixel units" in bad.output
