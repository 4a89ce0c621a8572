"""The ``not_learned`` flag: a detector at chance on its evaluation set (clean AUC below 0.6)
makes every robust number of its cell noise; the record says so, ``run`` prints one warning line, tables
mark the cell, and the CI gate neither passes such a cell nor writes a baseline on one."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from afsl_bench.cli import app
from afsl_bench.core.errors import ConfigError
from afsl_bench.report.gate import compare, write_baseline
from afsl_bench.report.tables import NOT_LEARNED_MARK, pivot, tidy
from afsl_bench.store.record import NOT_LEARNED_AUC, Record, learning

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(
    ("auc", "raised"), [(0.5, True), (0.59, True), (0.3, True), (NOT_LEARNED_AUC, False), (0.97, False)]
)
def test_the_flag_is_raised_below_the_threshold(auc, raised):
    assert learning({"clean_auc": auc}) == {"raised": raised, "clean_auc": auc, "threshold": NOT_LEARNED_AUC}


def test_an_undefined_auc_is_raised():
    """A test split of one class has no AUC: nothing shows that the detector learned, so it is raised."""
    assert learning({"clean_auc": math.nan}) == {"raised": True, "clean_auc": None, "threshold": 0.6}


def noise(path, rng, n, size=16):
    path.mkdir(parents=True)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        Image.fromarray(image).save(path / f"{i:03d}.png")
    return images


def no_signal_folder(root):
    """Noise images in every split; the test fakes are the test reals themselves, so whatever the detector
    learned, its clean AUC is exactly 0.5 (every real has its identical fake)."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 24), ("val", 8)):
        for label in ("real", "fake"):
            noise(root / split / label, rng, n)
    reals = noise(root / "test" / "real", rng, 10)
    (root / "test" / "fake").mkdir(parents=True)
    for i, image in enumerate(reals):
        Image.fromarray(image).save(root / "test" / "fake" / f"{i:03d}.png")


def test_a_folder_without_signal_is_flagged_and_run_warns_once(tmp_path):
    no_signal_folder(tmp_path / "faces")
    result = CliRunner().invoke(
        app,
        ["run", "--detector", "tiny-cnn", "--defense", "none", "--attack", "fgsm", "--dataset", "folder",
         "--set", f"data.root={tmp_path / 'faces'}", "--set", "data.resolution=16", "--set", "train.epochs=1",
         "--set", "train.robust_val_samples=8", "--set", "train.robust_val_steps=1", "--no-checks",
         "--results-dir", str(tmp_path / "results"), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["not_learned"] == {"raised": True, "clean_auc": 0.5, "threshold": NOT_LEARNED_AUC}
    assert result.stderr.count("not learned: clean AUC 0.500 < 0.6") == 1


def records(*aucs):
    """Stored-record stand-ins: one per seed of one cell, with the given clean AUCs."""
    spec = {
        "detector": {"name": "tiny-cnn", "params": {"head": "linear"}},
        "defense": {"name": "none", "params": {}},
        "attack": {"name": "fgsm", "params": {"eps": 8 / 255, "norm": "linf"}},
        "train_data": {"name": "folder", "params": {}},
        "eval_data": {"name": "folder", "params": {}},
        "train": {"name": "train", "params": {}},
    }
    return [
        Record(f"c{seed}", "ok", spec | {"seed": seed},
               metrics={"clean_auc": auc, "clean_acc": 0.5, "robust_acc": 0.4})
        for seed, auc in enumerate(aucs)
    ]  # fmt: skip


def test_tables_mark_a_cell_where_any_seed_did_not_learn():
    ((_, table),) = pivot(tidy(records(0.99, 0.55)), "robust_acc")
    assert table.iloc[0, 0].endswith(NOT_LEARNED_MARK)
    ((_, table),) = pivot(tidy(records(0.99, 0.98)), "robust_acc")
    assert NOT_LEARNED_MARK not in table.iloc[0, 0]


def test_the_gate_fails_a_cell_that_did_not_learn_and_refuses_such_a_baseline(tmp_path):
    baseline = {
        "cells": {"c0": {"what": "x", "robust_acc": 0.4, "clean_acc": 0.5}},
        "metrics": ["robust_acc"],
    }
    current = {"c0": {"what": "x", "robust_acc": 0.4, "clean_acc": 0.5, "clean_auc": 0.52}}
    row, flags = compare(baseline, current, 0.02).rows
    assert flags["metric"] == "flags" and flags["ok"], "the baseline records no flags: only told"
    assert not row["ok"] and row["why"] == "did not learn: clean AUC 0.520 < 0.6"
    with pytest.raises(
        ConfigError, match=r"refusing to write a baseline on 1 cell.*x \(c0\): clean AUC 0.520"
    ):
        write_baseline(tmp_path / "baseline.json", None, current, 0.02)
    assert not (tmp_path / "baseline.json").exists()
