"""The shared training loop: learning, caching, resume, NaN guard, checkpoint format, calibration on val."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch

from afsl_bench.attacks.apgd import APGD
from afsl_bench.attacks.vocabulary import Loss
from afsl_bench.core.metrics import eer_and_threshold
from afsl_bench.core.types import Batch, DataBundle, Split
from afsl_bench.defenses import DEFENSES, Defense, TrainContext, validation
from afsl_bench.defenses.training import (
    NonFiniteLossError,
    SelectOn,
    TrainSettings,
    lr_factor,
    selection_score,
    train,
    wants_robust,
)
from afsl_bench.defenses.validation import margins
from afsl_bench.detectors import DETECTORS

SIZE = 32
# the final robust validation (APGD-CE) on a few samples and steps: the defaults (512 x 20) are for real runs
FAST = TrainSettings(epochs=3, batch_size=32, lr=3e-3, warmup_epochs=0.0, robust_val_samples=16,
                     robust_val_steps=2)


pytestmark = pytest.mark.usefixtures("one_thread")


def easy_split(n: int, seed: int, noise: float = 0.0) -> Split:
    """Smooth random 'faces'; fakes carry a faint checkerboard (a stand-in for upsampling artefacts)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g)
    img = torch.nn.functional.interpolate(low, size=SIZE, mode="bilinear", align_corners=False) * 180 + 40
    y = (torch.arange(n) % 3 == 0).long()  # a third fake: the logit adjustment has work to do
    checker = ((torch.arange(SIZE)[:, None] + torch.arange(SIZE)[None, :]) % 2).float() * 2 - 1
    img = img + y.view(-1, 1, 1, 1) * 24 * checker + noise * torch.randn(img.shape, generator=g)
    ids = [f"{seed}-{i}" for i in range(n)]
    return Split(img.clamp(0, 255).round().to(torch.uint8), y, ids, ids, ["fake" if v else "real" for v in y])


class Untouchable:
    """Stands in for the test split: training must never read it."""

    def __getattr__(self, name):
        raise AssertionError(f"training read the test split ({name})")

    def __len__(self):
        raise AssertionError("training read the test split")


@pytest.fixture(scope="module")
def bundle() -> DataBundle:
    return DataBundle("easy", easy_split(192, 1), easy_split(96, 2, noise=40.0), Untouchable())


def model(defense: Defense = None):
    torch.manual_seed(0)
    head = getattr(defense, "head", None) or "linear"
    return DETECTORS.build("tiny-cnn", width=8, head=head)


def run(bundle, tmp_path, defense=None, settings=FAST, events=None, on_progress=None):
    defense = defense or DEFENSES.build("none")
    on_progress = on_progress or (events.append if events is not None else None)
    return train(model(defense), defense, bundle, settings, seed=0, checkpoint_dir=tmp_path, train_id="t",
                 device="cpu", on_progress=on_progress)


def test_short_run_learns_and_reports_progress(bundle, tmp_path):
    events = []
    result = run(bundle, tmp_path, events=events)
    assert not result.cached and [h["epoch"] for h in result.history] == [1, 2, 3]
    assert result.val_metrics["val_clean_acc"] > 0.85  # chance is 0.5 balanced, 0.67 majority
    steps = [e for e in events if e["phase"] == "train"]
    assert len(steps) == 3 * 6 and {"epoch", "epochs", "step", "steps", "loss", "lr"} <= set(steps[0])
    assert steps[-1]["lr"] < steps[0]["lr"]  # cosine decay
    assert (tmp_path / "t.pt").exists() and not (tmp_path / "t.partial.pt").exists()


def test_second_call_loads_the_cache_without_training(bundle, tmp_path):
    first = run(bundle, tmp_path)
    events = []
    again = run(bundle, tmp_path, events=events)
    assert again.cached and not [e for e in events if e["phase"] == "train"]
    assert again.best_epoch == first.best_epoch and again.history == first.history
    for (k, a), b in zip(first.model.state_dict().items(), again.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_interrupted_run_resumes_where_it_stopped_and_matches_an_uninterrupted_one(bundle, tmp_path):
    def stop_after_first_epoch(event):
        if event["phase"] == "epoch" and event["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(bundle, tmp_path / "a", on_progress=stop_after_first_epoch)
    assert (tmp_path / "a" / "t.partial.pt").exists() and not (tmp_path / "a" / "t.pt").exists()
    events = []
    resumed = run(bundle, tmp_path / "a", events=events)
    assert events[0] == {"phase": "resume", "epoch": 1, "epochs": 3}
    assert {e["epoch"] for e in events if e["phase"] == "train"} == {2, 3}
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    straight = run(bundle, tmp_path / "b")
    for a, b in zip(resumed.model.state_dict().values(), straight.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


def test_checkpoints_load_with_weights_only(bundle, tmp_path):
    def stop(event):
        if event["phase"] == "epoch":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(bundle, tmp_path, on_progress=stop)
    partial = torch.load(tmp_path / "t.partial.pt", weights_only=True)
    assert partial["epoch"] == 1 and {"model", "optimizer", "scheduler", "best_state", "rng"} <= set(partial)
    run(bundle, tmp_path)
    final = torch.load(tmp_path / "t.pt", weights_only=True)
    assert final["meta"]["epochs_run"] == 3 and "threshold" in final["state_dict"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@dataclass(frozen=True)
class ExplodingDefense(Defense):
    at_step: int = 2

    def loss(self, model, batch: Batch, ctx: TrainContext):
        loss = torch.nn.functional.cross_entropy(model(batch.x), batch.y)
        return (loss * float("nan") if ctx.step == self.at_step else loss), {}


def test_non_finite_loss_raises_naming_defense_epoch_and_step(bundle, tmp_path):
    with pytest.raises(NonFiniteLossError, match=r"ExplodingDefense.*epoch 1, step 2"):
        run(bundle, tmp_path, defense=ExplodingDefense())


class _NanGradient(torch.autograd.Function):
    """Identity forward, NaN backward: a finite loss whose gradients are not."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


@dataclass(frozen=True)
class NanGradientDefense(Defense):
    def loss(self, model, batch: Batch, ctx: TrainContext):
        logits = model(batch.x)
        logits = _NanGradient.apply(logits) if ctx.step == 2 else logits
        return torch.nn.functional.cross_entropy(logits, batch.y), {}


def test_non_finite_gradients_of_a_finite_loss_raise_before_the_weights_are_poisoned(bundle, tmp_path):
    with pytest.raises(NonFiniteLossError, match=r"NanGradientDefense.*non-finite gradients at epoch 1, step 2"):
        run(bundle, tmp_path, defense=NanGradientDefense())
    partial_or_none = [p.name for p in tmp_path.iterdir() if p.name.endswith(".pt")]
    assert partial_or_none == []  # nothing was saved from the poisoned step (epoch 1 never finished)


def test_threshold_is_calibrated_on_validation_scores(bundle, tmp_path):
    result = run(bundle, tmp_path, settings=dataclasses.replace(FAST, epochs=1))
    calibrated = result.model.threshold.item()
    result.model.threshold.zero_()
    scores, labels = margins(result.model, bundle.val, 64, "cpu"), bundle.val.labels.numpy()
    eer, t = eer_and_threshold(scores, labels)
    decided = scores > calibrated
    assert np.array_equal(decided, scores >= t)  # the same val decisions as the EER point's rule
    fpr, fnr = decided[labels == 0].mean(), (~decided[labels == 1]).mean()
    assert (fpr + fnr) / 2 == pytest.approx(eer, abs=1e-9)  # the decisions sit at val's EER point
    assert result.val_metrics["threshold"] == pytest.approx(calibrated, rel=1e-6)


def test_robust_selection_keeps_the_epoch_with_best_val_robust_accuracy(bundle, tmp_path):
    defense = DEFENSES.build("at", steps=1)
    settings = dataclasses.replace(FAST, robust_val_samples=48, select_on="robust")
    result = run(bundle, tmp_path, defense=defense, settings=settings)
    scores = [(h["val_robust_acc"], h["val_clean_acc"], h["epoch"]) for h in result.history]
    assert result.best_epoch == max(scores)[2]


class SpyAPGD(APGD):
    """APGD that records how validation built it (class attribute ``made``, reset per test)."""

    made: ClassVar[list[dict]] = []

    def __post_init__(self) -> None:
        super().__post_init__()
        SpyAPGD.made.append({"eps": self.eps, "steps": self.steps, "loss": self.loss})


@pytest.fixture
def apgd_calls(monkeypatch) -> list[dict]:
    monkeypatch.setattr(SpyAPGD, "made", [])
    monkeypatch.setattr(validation, "APGD", SpyAPGD)
    return SpyAPGD.made


def test_training_defaults_keep_the_last_epoch_and_validate_with_apgd_20_on_512_samples():
    settings = TrainSettings()
    assert settings.select_on == SelectOn.LAST == "last"
    assert (settings.robust_val_samples, settings.robust_val_steps) == (512, 20)
    assert settings.robust_val_eps == pytest.approx(8 / 255)
    assert not wants_robust(settings)  # no per-epoch attack unless selecting on it


@pytest.mark.parametrize("bad", [{"robust_val_steps": 0}, {"robust_val_samples": -1}, {"robust_val_eps": 0.0},
                                 {"robust_val_eps": 2.0}, {"select_on": "best"}])
def test_bad_robust_validation_settings_raise(bad):
    with pytest.raises(ValueError):
        TrainSettings(**bad)


def test_selection_scores_do_not_depend_on_the_defense():
    val = {"val_clean_acc": 0.9, "val_robust_acc": 0.4}
    robust = TrainSettings(select_on="robust")
    assert wants_robust(robust) and not wants_robust(dataclasses.replace(robust, robust_val_samples=0))
    assert selection_score(robust, 3, val) == [0.4, 0.9]
    assert selection_score(dataclasses.replace(robust, robust_val_samples=0), 3, val) == [0.9]
    assert selection_score(TrainSettings(select_on="clean"), 3, val) == [0.9]
    assert selection_score(TrainSettings(), 3, val) == [3.0]


def test_the_kept_model_gets_a_validation_robust_accuracy_under_apgd_ce(bundle, tmp_path, apgd_calls):
    settings = dataclasses.replace(FAST, epochs=2, robust_val_steps=3, robust_val_eps=4 / 255)
    result = run(bundle, tmp_path, settings=settings)
    assert result.best_epoch == 2  # select_on=last
    assert 0.0 <= result.val_metrics["val_robust_acc"] <= 1.0
    assert not [h for h in result.history if "val_robust_acc" in h]  # no per-epoch attack under "last"
    assert apgd_calls == [{"eps": pytest.approx(4 / 255), "steps": 3, "loss": Loss.CE}]  # once, at the end
    saved = torch.load(tmp_path / "t.pt", weights_only=True)["meta"]["val_metrics"]
    assert saved["val_robust_acc"] == result.val_metrics["val_robust_acc"]
    assert run(bundle, tmp_path, settings=settings).val_metrics == result.val_metrics  # the cache keeps it


def test_robust_selection_attacks_every_epoch_with_apgd_for_any_defense(bundle, tmp_path, apgd_calls):
    settings = dataclasses.replace(FAST, epochs=2, select_on="robust")
    result = run(bundle, tmp_path, settings=settings)  # defense "none": no attack of its own
    assert all(0.0 <= h["val_robust_acc"] <= 1.0 for h in result.history) and len(result.history) == 2
    assert len(apgd_calls) == 2 + 1 and {c["steps"] for c in apgd_calls} == {2}  # each epoch, then the kept one
    assert all(c["loss"] == Loss.CE for c in apgd_calls)
    assert "val_robust_acc" in result.val_metrics


def test_no_robust_validation_samples_means_no_attack_and_no_robust_accuracy(bundle, tmp_path, apgd_calls):
    settings = dataclasses.replace(FAST, epochs=1, robust_val_samples=0, select_on="robust")
    result = run(bundle, tmp_path, settings=settings)
    assert "val_robust_acc" not in result.val_metrics
    assert not [h for h in result.history if "val_robust_acc" in h]
    assert apgd_calls == []


def test_lr_schedule_warms_up_then_decays_to_zero():
    factors = [lr_factor(s, total=100, warmup=10, cosine=True) for s in range(101)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0) and factors[100] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    assert lr_factor(50, total=100, warmup=0, cosine=False) == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["at", "trades", "afsl"])
def test_adversarial_defenses_learn_the_easy_task(bundle, tmp_path, name):
    # whether the loss trains at all, so the best clean epoch is kept (the default keeps the last one, and
    # the last of 4 short epochs on this noisy validation split can dip: AFSL's cosine head gave 0.78)
    settings = dataclasses.replace(FAST, epochs=4, select_on="clean")
    result = run(bundle, tmp_path, defense=DEFENSES.build(name, steps=2), settings=settings)
    assert result.val_metrics["val_clean_acc"] > 0.8
    assert np.isfinite([h["train_loss"] for h in result.history]).all()


@pytest.mark.parametrize("lr", [float("nan"), float("inf")])
def test_a_learning_rate_that_is_not_finite_is_refused(lr) -> None:
    with pytest.raises(ValueError, match="must be a finite number"):
        TrainSettings(lr=lr)
