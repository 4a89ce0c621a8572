"""What an evaluation set takes from the training set's ``--set data.*`` overrides, and a surrogate's head."""

from __future__ import annotations

from afsl_bench.runner.plan import plan_cell, surrogate_spec


def test_another_eval_set_keeps_its_own_location_but_shares_settings():
    cell = plan_cell("tiny-cnn", "none", "pgd", "ff++", "faceshifter",
                     overrides=["data.prepared=/data/ff", "data.clip_frames=4"])
    assert cell.training.train_data.params["prepared"] == "/data/ff"
    assert cell.eval_data.params["prepared"] == ""  # faceshifter's own default store, not ff++'s
    assert cell.eval_data.params["clip_frames"] == 4  # a shared setting is inherited


def test_the_training_set_itself_inherits_everything():
    cell = plan_cell("tiny-cnn", "none", "pgd", "ff++", overrides=["data.prepared=/data/ff"])
    assert cell.eval_data.params["prepared"] == "/data/ff"


def test_an_eval_location_can_be_given_explicitly():
    cell = plan_cell("tiny-cnn", "none", "pgd", "ff++", "faceshifter",
                     overrides=["data.prepared=/data/ff", "eval.prepared=/data/fs"])
    assert cell.eval_data.params["prepared"] == "/data/fs"


def test_a_surrogate_takes_its_targets_head():
    for head in ("linear", "cosine", "cosine-pair"):
        target = plan_cell("tiny-cnn", "at", "pgd", "synthetic", overrides=[f"detector.head={head}"]).training
        surrogate = surrogate_spec(target, "meso4", "none", 0, None)
        assert surrogate.detector.params["head"] == head
        # the target's own model as surrogate is the same checkpoint
        assert surrogate_spec(target, "tiny-cnn", "at", target.seed, None).train_id == target.train_id
