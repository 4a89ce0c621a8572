"""Clean scores are computed once per trained model and evaluation set: a second attack on the same model
and set reuses them exactly (no clean forward pass), another evaluation set gets its own."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import afsl_bench.runner.evaluation
from afsl_bench.runner.cell import RunOptions, _related, run_cell, trained_model
from afsl_bench.runner.plan import build_attack, plan_cell
from afsl_bench.store.disk import RecordStore

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = ["data.n_identities=12", "data.images_per_identity=4", "data.resolution=32", "train.epochs=1"]
BATCH = 8


@pytest.fixture
def margins(monkeypatch) -> list[int]:
    """Counts ``margin`` calls in evaluate: one per batch for the clean pass, one for the adversarial one."""
    calls: list[int] = []
    real = afsl_bench.runner.evaluation.margin

    def counted(logits: torch.Tensor) -> torch.Tensor:
        calls.append(len(logits))
        return real(logits)

    monkeypatch.setattr(afsl_bench.runner.evaluation, "margin", counted)
    return calls


def _run(tmp_path, attack: str, margins: list[int], extra: tuple[str, ...] = ()):
    spec = plan_cell("tiny-cnn", "none", attack, "synthetic", overrides=[*SMALL, *extra])
    margins.clear()
    options = RunOptions(results_dir=tmp_path, device="cpu", batch_size=BATCH, checks=False)
    outcome = run_cell(spec, options)
    assert not outcome.cached
    return spec, outcome.samples, list(margins)


def test_a_second_attack_reuses_the_clean_scores_and_another_eval_set_does_not(tmp_path, margins) -> None:
    first, fgsm, first_calls = _run(tmp_path, "fgsm", margins)
    n = len(fgsm)
    batches = -(-n // BATCH)
    assert n > BATCH, "several batches: the cached scores are sliced per batch"
    # every cell also scores its model's validation reals once: the deployment thresholds (core/operating.py)
    val = RecordStore(tmp_path).read(first.cell_id).operating_points["fpr1"]["val_reals"]
    val_batches = -(-val // BATCH)
    assert sum(first_calls) == 2 * n + val and len(first_calls) == 2 * batches + val_batches, "clean + adversarial"

    second, pgd, second_calls = _run(tmp_path, "pgd", margins)
    assert second.training.train_id == first.training.train_id and second.cell_id != first.cell_id
    assert sum(second_calls) == n + val and len(second_calls) == batches + val_batches, "no clean test pass"
    np.testing.assert_array_equal(pgd["clean_score"].to_numpy(), fgsm["clean_score"].to_numpy())
    assert pgd["clean_score"].dtype == np.float32
    assert not np.array_equal(pgd["adv_score"].to_numpy(), fgsm["adv_score"].to_numpy())

    # the same samples (ids) compressed: another evaluation set, so its clean scores are computed
    third, jpeg, third_calls = _run(tmp_path, "fgsm", margins, ("eval.jpeg_quality=30",))
    assert third.training.train_id == first.training.train_id
    assert list(jpeg["sample_id"]) == list(fgsm["sample_id"])
    assert sum(third_calls) == 2 * n + val
    assert not np.array_equal(jpeg["clean_score"].to_numpy(), fgsm["clean_score"].to_numpy())
    assert len(list((tmp_path / "cache" / "clean").glob("*.pt"))) == 2

    # the cross-record flags compare a cell with the other records of its model and set, found by the index
    store = RecordStore(tmp_path)
    assert [r.cell_id for r in _related(store, second)] == [first.cell_id]
    assert sorted(r.cell_id for r in _related(store, first)) == [second.cell_id]
    assert [r.cell_id for r in _related(store, third)] == []


def test_evaluate_with_given_clean_scores_gives_the_table_it_computes(tmp_path) -> None:
    spec = plan_cell("tiny-cnn", "none", "fgsm", "synthetic", overrides=SMALL)
    model, bundle = trained_model(spec.training, RunOptions(results_dir=tmp_path, device="cpu"))
    kwargs = {"batch_size": BATCH, "device": torch.device("cpu"), "seed": 0}
    split = bundle.test  # the evaluation set is the training set's test split here
    computed = afsl_bench.runner.evaluation.score_split(model, build_attack(spec.attack), split, **kwargs)
    given = torch.tensor(computed["clean_score"].to_numpy())
    reused = afsl_bench.runner.evaluation.score_split(
        model, build_attack(spec.attack), split, clean_scores=given, **kwargs
    )
    assert computed.equals(reused)
    with pytest.raises(ValueError, match="clean_scores has 3 scores"):
        afsl_bench.runner.evaluation.score_split(model, build_attack(spec.attack), split, clean_scores=given[:3], **kwargs)
