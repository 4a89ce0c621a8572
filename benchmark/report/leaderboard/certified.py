"""The leaderboard's "Certified (randomized smoothing)" section: the certified accuracy of each model of the
suite's ``[[certify]]`` grids (``runner/certification.py``; Cohen, Rosenfeld & Kolter, ICML 2019) by L2
radius, beside the empirical robust accuracy of the same trained model under APGD at that L2 budget (the
suite's L2 APGD cells).

The two numbers bound different classifiers from different sides: the certificate is a lower bound on the
accuracy of the *smoothed* detector (no L2 attack within the radius changes its decision, with probability
1 - alpha), the attack an upper bound on the accuracy of the *base* detector (a stronger attack may lower it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from scipy.stats import norm

from afsl_bench.runner.describe import model_label
from afsl_bench.store.record import Record

#: the empirical attack set beside the certificates: APGD (Croce & Hein 2020) in L2 at the radius
EMPIRICAL = "apgd"


def empirical_l2(records: Iterable[Record]) -> dict[tuple[str, float], float]:
    """{(train id, L2 budget): robust accuracy} of the in-domain L2 APGD cells."""
    found = {}
    for record in records:
        spec, metrics = record.spec or {}, record.metrics or {}
        attack = spec.get("attack", {})
        params = attack.get("params", {})
        in_domain = spec.get("eval_data", {}).get("name") == spec.get("train_data", {}).get("name")
        if attack.get("name") == EMPIRICAL and params.get("norm") == "l2" and in_domain:
            found[(record.train_id, round(float(params["eps"]), 6))] = metrics.get("robust_acc", math.nan)
    return found


def certified_section(results: list[dict[str, Any]], records: Iterable[Record]) -> str:
    """One row per model and sigma (mean ± sd over seeds): the smoothed detector's accuracy (radius 0), then
    at each radius 'certified / APGD-L2' in %, the L-inf ball's radius last, and the abstention rate."""
    if not results:
        return ""
    empirical = empirical_l2(records)
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for result in results:
        training = result["spec"]["training"]
        label = model_label(training).rsplit(", seed ", 1)[0]
        groups.setdefault((label, result["spec"]["certify"]["sigma"]), []).append(result)
    radii = [key for key in results[0]["certified_acc"] if float(key) > 0]
    ball = results[0]["linf_ball"]
    settings = results[0]["spec"]["certify"]
    header = ["model (detector + defense, training data)", "sigma", "smoothed accuracy"]
    header += [f"L2 {r}: certified / APGD" for r in radii[:-1]]
    header += [
        f"L2 {radii[-1]} (the L-inf {ball['eps'] * 255:.0f}/255 ball): certified",
        "abstained",
        "seeds",
    ]
    intro = (
        f"Certified accuracy (%) of each model made a smoothed detector (Cohen et al. 2019: CERTIFY with "
        f"n0 = {settings['n0']}, n = {settings['n']}, alpha = {settings['alpha']:g}, on {results[0]['n_samples']} "
        f"test images), beside the robust accuracy (%) of the model itself under APGD-L2 at the same radius. "
        f"The certificate is a lower bound for the smoothed detector, the attack an upper bound for the base "
        f"one. The L-inf {ball['eps'] * 255:.0f}/255 ball at {'x'.join(map(str, ball['input_shape']))} lies "
        f"within L2 {ball['l2_radius']:.2f}. `afsl-bench certify` certifies any trained model."
        f" {reach(settings['n'], settings['alpha'], sorted({k[1] for k in groups}))}"
    )
    lines = [
        "### Certified (randomized smoothing)",
        "",
        intro,
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for (label, sigma), part in sorted(
        groups.items(), key=lambda kv: (-_mean(kv[1], "certified_acc", radii[0]), kv[0])
    ):
        cells = [label, f"{sigma:g}", _pm([r["certified_acc"]["0"] for r in part])]
        for radius in radii[:-1]:
            attacked = [empirical.get((r["spec"]["train_id"], round(float(radius), 6))) for r in part]
            shown = _pm(attacked) if all(a is not None for a in attacked) else "-"
            cells.append(f"{_pm([r['certified_acc'][radius] for r in part])} / {shown}")
        cells += [_pm([r["certified_acc"][radii[-1]] for r in part]), _pm([r["abstain"] for r in part])]
        lines.append("| " + " | ".join([*cells, str(len(part))]) + " |")
    return "\n".join(lines)


def reach(n: int, alpha: float, sigmas: list[float]) -> str:
    """The largest radius CERTIFY can give: all n noisy votes for the class bound p_A below by alpha ** (1 / n)
    (Clopper-Pearson), so R <= sigma * Phi^-1(alpha ** (1 / n))."""
    factor = float(norm.ppf(alpha ** (1 / n)))
    at = ", ".join(f"{sigma * factor:.2f} at sigma {sigma:g}" for sigma in sigmas)
    return f"With n = {n} and alpha = {alpha:g} no certificate reaches beyond sigma x {factor:.2f} ({at}): a larger n certifies farther."


def _mean(part: list[dict[str, Any]], key: str, radius: str) -> float:
    return float(np.mean([r[key][radius] for r in part]))


def _pm(values: list[float]) -> str:
    mean = 100 * float(np.mean(values))
    return f"{mean:.1f}" if len(values) < 2 else f"{mean:.1f} ± {100 * float(np.std(values, ddof=1)):.1f}"
