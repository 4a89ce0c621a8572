"""afsl-bench: the benchmark suite for adversarial robustness of deepfake detectors.

The engine lives here (registry, specs, runner, metrics, data sets, CLI); components live in the sibling
packages ``detectors``, ``defenses`` and ``attacks``; records and reports in ``results``.
"""

__version__ = "0.1.0"
AFSL_BENCH = True  # marker: tests check that the imported ``benchmark`` package is this one
