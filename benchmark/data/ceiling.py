"""The robust-accuracy ceiling of a labelled image set: the best robust accuracy ANY classifier can reach on
it against an L-inf attacker of budget eps, computed exactly from the data.

Two samples of different classes whose L-inf distance is at most 2 eps share a point (their midpoint) that
both eps-balls contain; a classifier labels that point one way, so it is wrong under attack on one of the
two. Every classifier therefore loses at least a minimum vertex cover of this "conflict graph" (reals on
one side, fakes on the other), and a classifier losing exactly that many exists (label each ball of the
cover's complement by its class; their balls are disjoint across classes). By Konig's theorem the minimum
vertex cover of a bipartite graph equals its maximum matching, so

    ceiling(eps) = 1 - max_matching(conflict graph at 2 eps) / n

(Bhagoji, Cullina and Mittal, NeurIPS 2019, https://arxiv.org/abs/1909.12272; Pydi and Jog, ICML 2020,
https://arxiv.org/abs/1912.07561). It bounds what a defense can show on that set: a robust accuracy above
it means the attack, not the model, failed. It says nothing about learnability: a set whose reals and
fakes are far apart everywhere has a ceiling of 100 % even when the only cue that tells them apart is one
a detector cannot learn robustly (docs/data.md).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching

from afsl_bench.core.types import Split

#: rows of the pairwise-distance computation held in memory at once (rows x others x pixels floats)
_CHUNK = 16


def linf_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """L-inf distance between every row of ``a`` [N, ...] and every row of ``b`` [M, ...], in [0, 1] units."""
    a, b = a.flatten(1).float(), b.flatten(1).float()
    return torch.cat([(a[i : i + _CHUNK, None] - b[None]).abs().amax(-1) for i in range(0, len(a), _CHUNK)])


def robust_ceiling(distances: torch.Tensor, eps: float) -> tuple[float, int]:
    """(ceiling, conflicts) for a real x fake distance matrix: ``1 - matching / n`` and the matching size."""
    n_real, n_fake = distances.shape
    conflict = csr_matrix((distances <= 2 * eps).numpy())
    matched = int((maximum_bipartite_matching(conflict, perm_type="column") >= 0).sum())
    return 1 - matched / (n_real + n_fake), matched


def ceilings(split: Split, budgets: Iterable[float]) -> list[dict[str, float]]:
    """The ceiling of ``split`` at each L-inf budget, with the closest real-fake distance."""
    images, labels = split.batch(torch.arange(len(split))).x, split.labels
    distances = linf_distances(images[labels == 0], images[labels == 1])
    out = []
    for eps in budgets:
        ceiling, matched = robust_ceiling(distances, eps)
        out.append({"eps": eps, "ceiling": ceiling, "conflicts": matched, "n": len(labels)})
    closest = float(distances.min()) if distances.numel() else float("nan")
    return [row | {"closest_pair": closest} for row in out]
