"""FAB: the box-constrained projection against an LP / QP solver, the attack against the closed
form of an affine detector, its budget and output, torchattacks' FAB on the same model, and its place in
``autoattack-binary``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _attack_fixtures import accuracy, make_images
from scipy.optimize import linprog, minimize
from torch import nn

from afsl_bench.attacks import ATTACKS
from afsl_bench.attacks.fab import box_projection, lp_norm
from afsl_bench.attacks.vocabulary import Norm

pytestmark = pytest.mark.usefixtures("one_thread")


def solver_projection(t: np.ndarray, w: np.ndarray, b: float, norm: Norm) -> float | None:
    """The smallest |d| with w . (t + d) = b and t + d in [0, 1]^n from scipy (None: infeasible)."""
    n, c = len(t), b - w @ t
    bounds = list(zip(-t, 1 - t, strict=True))
    if norm is Norm.LINF:  # variables (d, s): min s, -s <= d_i <= s
        a_ub = np.block([[np.eye(n), -np.ones((n, 1))], [-np.eye(n), -np.ones((n, 1))]])
        res = linprog(np.r_[np.zeros(n), 1.0], A_ub=a_ub, b_ub=np.zeros(2 * n), A_eq=np.r_[w, 0.0][None],
                      b_eq=[c], bounds=[*bounds, (0, None)])  # fmt: skip
        return res.x[-1] if res.status == 0 else None
    reachable = sum(abs(wi) * (1 - ti if wi * c > 0 else ti) for wi, ti in zip(w, t, strict=True))
    if reachable < abs(c):
        return None
    res = minimize(lambda d: d @ d, np.zeros(n), jac=lambda d: 2 * d, method="SLSQP", bounds=bounds,
                   constraints=[{"type": "eq", "fun": lambda d: w @ d - c}],
                   options={"ftol": 1e-15, "maxiter": 1000})  # fmt: skip
    return float(np.sqrt(res.x @ res.x))


@pytest.mark.parametrize("norm", [Norm.LINF, Norm.L2])
def test_the_box_projection_is_the_solvers_optimum(norm):
    gen = torch.Generator().manual_seed(0)
    t = torch.rand(40, 7, generator=gen, dtype=torch.float64)
    w = torch.randn(40, 7, generator=gen, dtype=torch.float64) * (torch.rand(40, 7, generator=gen) > 0.2)
    b = torch.randn(40, generator=gen, dtype=torch.float64) * 1.5
    d = box_projection(t, w, b, norm)
    assert ((t + d) >= -1e-12).all() and ((t + d) <= 1 + 1e-12).all()
    infeasible = 0
    for i in range(len(t)):
        best = solver_projection(t[i].numpy(), w[i].numpy(), b[i].item(), norm)
        if best is None:  # the box cannot reach the hyperplane: the corner that gets closest
            infeasible += 1
            moved = (w[i] * d[i]).sum() * torch.sign(b[i] - w[i] @ t[i])
            corner = (w[i].abs() * torch.where(w[i] * (b[i] - w[i] @ t[i]) > 0, 1 - t[i], t[i])).sum()
            assert moved.item() == pytest.approx(corner.item())
            continue
        assert (w[i] @ (t[i] + d[i])).item() == pytest.approx(b[i].item(), abs=1e-9)
        assert lp_norm(d[i : i + 1], norm).item() == pytest.approx(best, rel=1e-6, abs=1e-9)
    assert 0 < infeasible < len(t)  # both cases were exercised


class Affine(nn.Module):
    """Two logits whose margin z_1 - z_0 is a . x + c: its boundary is a hyperplane."""

    def __init__(self, a: torch.Tensor, c: float) -> None:
        super().__init__()
        self.a, self.c = a, c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        margin = x.flatten(1) @ self.a.flatten() + self.c
        return torch.stack([-margin / 2, margin / 2], 1)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fab_finds_the_closed_form_distance_of_an_affine_detector(norm):
    """The closest adversarial of an affine model is |margin| / |a|_dual (|a|_1 for L-inf, |a|_2 for L2) when
    the box does not bind (points near mid-grey, a small step): no attack can be closer, FAB gets within
    its overshoot."""
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(3, 16, 16, generator=gen)
    x = 0.5 + 0.02 * (torch.rand(16, 3, 16, 16, generator=gen) - 0.5)
    model = Affine(a, c=0.0)
    with torch.no_grad():
        margin = model(x).diff(dim=1).squeeze(1)
    y = (margin > 0).long()
    exact = margin.abs() / (a.abs().sum() if norm == "linf" else a.norm())
    out = ATTACKS.build("fab", eps=1.0 if norm == "linf" else 10.0, norm=norm, steps=10).run(model, x, y)
    found = out.info["fab_norm"]
    assert (found >= exact * (1 - 1e-4)).all(), "closer than the boundary: impossible"
    assert (found <= exact * 1.06).all(), found / exact
    assert accuracy(model, out.x_adv, y) == 0


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    return make_images(128, seed=5)


@pytest.mark.parametrize(("norm", "eps"), [("linf", 4 / 255), ("l2", 0.5)])
def test_fab_keeps_only_adversarials_within_the_budget(norm, eps, model, data):
    x, y = data
    out = ATTACKS.build("fab", eps=eps, norm=norm, steps=20).run(model, x, y)
    moved = lp_norm(out.x_adv - x, Norm(norm))
    with torch.no_grad():
        wrong = model(out.x_adv).argmax(1) != y
        wrong_clean = model(x).argmax(1) != y
    changed = moved > 0
    assert (moved <= eps * (1 + 1e-6)).all()
    assert wrong[changed].all(), "every point FAB moved fools the detector"
    found = out.info["fab_norm"]
    assert torch.equal(changed, (found <= eps) & ~wrong_clean)  # moved exactly where within budget
    assert torch.isnan(found).sum() + (found > eps).sum() > 0  # some boundary lies beyond the budget


@pytest.mark.reference
@pytest.mark.parametrize(("norm", "eps"), [("linf", 4 / 255), ("l2", 0.5)])
def test_fab_not_weaker_than_torchattacks_fab(norm, eps, model, data):
    pytest.importorskip("torchattacks")
    x, y = data[0][:64], data[1][:64]
    torch.manual_seed(0)
    ours = accuracy(model, ATTACKS.build("fab", eps=eps, norm=norm, steps=20)(model, x, y), y)
    torch.manual_seed(0)
    theirs = accuracy(
        model, ATTACKS.build("fab", eps=eps, norm=norm, steps=20, backend="torchattacks")(model, x, y), y
    )
    assert ours <= theirs + 1 / len(y), (ours, theirs)


def test_fab_is_an_optional_member_of_autoattack_binary(model, data):
    x, y = data
    ensemble = ATTACKS.build("autoattack-binary", eps=4 / 255, steps=10, queries=50,
                             members=("apgd-ce", "fab", "square"))  # fmt: skip
    out = ensemble.run(model, x, y)
    alone = accuracy(model, ATTACKS.build("apgd", eps=4 / 255, steps=10)(model, x, y), y)
    assert accuracy(model, out.x_adv, y) <= alone
    assert "fab" not in ATTACKS.get("autoattack-binary")().members  # the default ensemble is unchanged
