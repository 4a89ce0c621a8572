"""Fault injection, done as a user would: corrupt, empty, truncated and incomplete records and checkpoints,
unwritable result directories, a device the machine lacks, an oversized sample count. Each case asserts the
message (naming the file or value and the fix), the exit code, and that nothing finished was lost."""

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from afsl_bench.cli import app
from afsl_bench.core.errors import ConfigError
from afsl_bench.store.disk import RecordStore

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = [
    "--set", "data.n_identities=20", "--set", "data.images_per_identity=6", "--set", "data.resolution=32",
    "--set", "train.epochs=1", "--set", "train.robust_val_samples=32", "--no-checks",
]  # fmt: skip


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def run(results, attack: str = "fgsm", *extra: str) -> dict:
    outcome = invoke("run", "--attack", attack, *SMALL, *extra, "--results-dir", str(results), "--json")
    assert outcome.exit_code == 0, outcome.output
    return json.loads(outcome.stdout)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A results directory with one finished cell (its record, table and checkpoint), copied per test."""
    root = tmp_path_factory.mktemp("store")
    record = run(root)
    return root, record


@pytest.fixture
def results(store, tmp_path):
    root, record = store
    shutil.copytree(root, tmp_path / "results")
    return tmp_path / "results", record


CORRUPTIONS = {
    "garbage": lambda text: "not json at all {",
    "empty": lambda text: "",
    "truncated": lambda text: text[: len(text) // 2],
    "missing spec": lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "spec"}),
    "a list": lambda text: "[]",
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_a_corrupt_record_is_named_skipped_by_table_and_recomputed_by_run(results, kind, caplog) -> None:
    root, record = results
    path = root / "records" / f"{record['cell_id']}.json"
    path.write_text(CORRUPTIONS[kind](path.read_text()))
    with caplog.at_level(logging.WARNING):
        table = invoke("table", "--results-dir", str(root))
    assert table.exception is None or isinstance(table.exception, SystemExit), table.exception
    assert str(path) in caplog.text and "ignored" in caplog.text
    again = run(root)  # the same cell: recomputed (from the cached checkpoint), the file rewritten
    assert again["cell_id"] == record["cell_id"] and again["metrics"] == record["metrics"]
    assert json.loads(path.read_text())["metrics"] == record["metrics"]


def test_an_unreadable_table_is_named_with_the_fix_and_force_rebuilds_it(results) -> None:
    root, record = results
    table = root / "records" / f"{record['cell_id']}.parquet"
    table.write_bytes(b"PAR1 broken")
    with pytest.raises(ConfigError, match=f"{table} is unreadable .*: recompute the cell with --force"):
        RecordStore(root).read_samples(record["cell_id"])
    assert run(root, "fgsm", "--force")["metrics"] == record["metrics"]
    assert len(RecordStore(root).read_samples(record["cell_id"])) == record["n_samples"]


@pytest.mark.parametrize("kind", ["empty", "truncated", "foreign"])
def test_a_corrupt_checkpoint_is_set_aside_named_and_retrained(results, kind, caplog) -> None:
    root, record = results
    checkpoint = root / "checkpoints" / f"{record['train_id']}.pt"
    data = checkpoint.read_bytes()
    if kind == "foreign":
        torch.save({"state_dict": {"weight": torch.zeros(3)}, "meta": {}}, checkpoint)
    else:
        checkpoint.write_bytes(b"" if kind == "empty" else data[: len(data) // 3])
    with caplog.at_level(logging.WARNING):
        other = run(root, "pgd")  # another attack on the same model: it needs the checkpoint
    assert str(checkpoint) in caplog.text and "training again" in caplog.text
    assert (root / "checkpoints" / f"{record['train_id']}.pt.corrupt").is_file(), "kept for inspection"
    assert not other["training"]["cached"] and checkpoint.is_file()
    # retrained deterministically: the first cell's numbers come back when it is forced
    forced = run(root, "fgsm", "--force")
    assert forced["metrics"] == record["metrics"]


def test_a_corrupt_partial_checkpoint_restarts_training(tmp_path, caplog, monkeypatch) -> None:
    monkeypatch.delenv("AFSL_CHECKPOINT_CACHE")  # the shared checkpoint would spare the training
    root = tmp_path / "results"
    reference = run(root)
    (root / "checkpoints" / f"{reference['train_id']}.pt").unlink()
    partial = root / "checkpoints" / f"{reference['train_id']}.partial.pt"
    partial.write_bytes(b"\x80\x02 truncated")
    with caplog.at_level(logging.WARNING):
        again = run(root, "fgsm", "--force")
    assert str(partial) in caplog.text and again["metrics"] == reference["metrics"]


def test_corrupt_caches_are_recomputed(results, caplog) -> None:
    root, record = results
    for cache in (root / "cache").rglob("*"):
        if cache.is_file():
            cache.write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        again = run(root, "fgsm", "--force")
    assert again["metrics"] == record["metrics"]


def test_a_results_dir_that_is_a_file_is_refused_before_any_work(tmp_path) -> None:
    blocker = tmp_path / "results"
    blocker.write_text("a file where the results directory should be")
    outcome = invoke("run", "--attack", "fgsm", *SMALL, "--results-dir", str(blocker))
    assert outcome.exit_code == 2
    message = " ".join(outcome.output.split())
    assert f"{blocker}/records" in message.replace(" ", "") or str(blocker) in message
    assert "not writable" in message and "--results-dir" in message
    assert blocker.read_text().startswith("a file"), "nothing was overwritten"


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_a_read_only_results_dir_is_refused_before_any_work(tmp_path, monkeypatch) -> None:
    root = tmp_path / "results"
    (root / "records").mkdir(parents=True)
    (root / "checkpoints").mkdir()
    for folder in (root / "records", root / "checkpoints"):
        folder.chmod(0o555)
    if os.geteuid() == 0:  # root may write anywhere: the check sees what a user's process would
        from afsl_bench.core import io

        real = io.os.access
        readonly = {root / "records", root / "checkpoints"}
        monkeypatch.setattr(io.os, "access", lambda path, mode: Path(path) not in readonly and real(path, mode))
    try:
        outcome = invoke("run", "--attack", "fgsm", *SMALL, "--results-dir", str(root))
    finally:
        for folder in (root / "records", root / "checkpoints"):
            folder.chmod(0o755)
    assert outcome.exit_code == 2 and "not writable" in outcome.output
    assert not list((root / "checkpoints").iterdir()), "refused before training"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has CUDA")
@pytest.mark.parametrize("command", [["sweep", "suites/smoke.toml"], ["gate"]])
def test_a_missing_cuda_device_is_refused_once_up_front(tmp_path, command) -> None:
    outcome = invoke(*command, "--device", "cuda", "--results-dir", str(tmp_path))
    assert outcome.exit_code == 2
    assert "no CUDA GPU" in outcome.output and "--device cpu" in outcome.output
    assert not (tmp_path / "records").exists(), "no cell was run, none recorded as failed"


def test_more_samples_than_the_test_split_holds_is_said(tmp_path, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        record = run(tmp_path / "results", "fgsm", "--set", "eval.samples=100000")
    assert record["data"]["test_samples_requested"] == 100000
    assert record["n_samples"] == record["data"]["test_samples_of"] < 100000
    assert "eval.samples=100000" in caplog.text and f"only {record['n_samples']} test samples" in caplog.text


def _images(folder, n: int, start: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(start + len(folder.name))
    for i in range(start, start + n):
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(folder / f"img{i:03d}.png")


def test_a_changed_folder_is_never_served_from_results_of_its_old_contents(tmp_path) -> None:
    data, results = tmp_path / "faces", tmp_path / "results"
    _images(data / "real", 12)
    _images(data / "fake", 12)
    folder = ["--dataset", "folder", "--set", f"data.root={data}", "--set", "data.resolution=16"]
    small = ["--set", "train.epochs=1", "--set", "train.robust_val_samples=8", "--no-checks"]

    def cell() -> dict:
        outcome = invoke("run", "--attack", "fgsm", *folder, *small, "--results-dir", str(results), "--json")
        assert outcome.exit_code == 0, outcome.output
        return json.loads(outcome.stdout)

    first = cell()
    _images(data / "fake", 4, start=12)  # the user adds images
    grown = cell()
    assert grown["cell_id"] != first["cell_id"] and grown["train_id"] != first["train_id"]
    assert not grown["training"]["cached"] and grown["n_samples"] > first["n_samples"]
    for extra in range(12, 16):
        (data / "fake" / f"img{extra:03d}.png").unlink()  # ... and removes them again
    assert cell()["cell_id"] == first["cell_id"], "the same contents give the same cell again"
    assert len(first["spec"]["train_data"]["params"]["content"]) == 16


def test_a_full_disk_is_said_as_such_and_stops_a_sweep_at_the_first_cell(tmp_path, monkeypatch) -> None:
    """Every write fails with ENOSPC: the sweep says "no space left on device" naming the folder, exits 2,
    and does not go on to train every other cell only to fail it the same way."""
    import errno

    from afsl_bench.core import io
    from afsl_bench.runner import sources

    suite = tmp_path / "s.toml"
    suite.write_text('[sweep]\ndetectors = ["tiny-cnn"]\ndefenses = ["none", "at"]\nattacks = ["fgsm"]\n'
                     'data = ["synthetic"]\n\n[set]\n"data.n_identities" = 20\n"data.images_per_identity" = 6\n'
                     '"data.resolution" = 32\n"train.epochs" = 1\n')  # fmt: skip
    trained = []
    real_train = sources.train

    def counting(*args, **kwargs):
        trained.append(1)
        return real_train(*args, **kwargs)

    def full(path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.delenv("AFSL_CHECKPOINT_CACHE")  # another test's shared checkpoint would spare the training
    monkeypatch.setattr(sources, "train", counting)
    monkeypatch.setattr(io, "_fsync", full)
    outcome = invoke("sweep", str(suite), "--results-dir", str(tmp_path / "results"), "--no-checks")
    message = " ".join(outcome.output.split())
    assert outcome.exit_code == 2, outcome.output
    assert "no space left on device writing in" in message and "--results-dir" in message
    assert len(trained) == 1, "the sweep stopped at the first cell"


@pytest.mark.parametrize("command", [["run", "--attack", "fgsm"], ["sweep", "suites/smoke.toml"], ["gate"],
                                     ["table"], ["predict", "x.png"]])  # fmt: skip
def test_an_empty_results_dir_is_refused_not_read_as_the_current_folder(tmp_path, monkeypatch, command) -> None:
    """``--results-dir "$UNSET"``: Path('') is '.', which would scatter records and checkpoints into the
    folder the user stands in."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(Path(__file__).parents[1] / "suites", tmp_path / "suites")
    outcome = invoke(*command, "--results-dir", "")
    assert outcome.exit_code == 2 and "--results-dir" in outcome.output and "is empty" in outcome.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["suites"], "nothing written"


def test_a_diverging_training_is_one_line_naming_the_learning_rate(tmp_path) -> None:
    """A learning rate of 1e6: the loss may stay finite while the weights blow up; the validation scores
    overflow and the one-line error names train.lr instead of a traceback from scikit-learn."""
    outcome = invoke("run", "--attack", "fgsm", *SMALL, "--set", "train.lr=1e6", "--results-dir", str(tmp_path))
    assert outcome.exit_code == 2, outcome.output
    assert "training diverged" in outcome.output and "--set train.lr=" in outcome.output
    assert "Traceback" not in outcome.output
    assert not list((tmp_path / "records").glob("*.json")), "no record of a diverged model"


def test_a_missing_evaluation_folder_is_named_by_its_own_key(tmp_path) -> None:
    outcome = invoke("run", "--attack", "fgsm", *SMALL, "--eval-dataset", "folder", "--results-dir", str(tmp_path))
    assert outcome.exit_code == 2
    assert "eval.root '' is not a folder" in outcome.output and "--set eval.root=PATH" in outcome.output
    assert not (tmp_path / "checkpoints").exists() or not list((tmp_path / "checkpoints").iterdir()), (
        "found before training"
    )


@pytest.mark.parametrize("width", [20, 30, 39])
def test_a_narrow_terminal_wraps_the_labels_and_never_cuts_a_number(results, width) -> None:
    """``COLUMNS`` below 40: every number of the result and the pivot tables is printed whole (the labels
    wrap at spaces; a table still too wide is drawn at its own width for the terminal to wrap)."""
    import io
    import re

    import pandas as pd
    from rich.console import Console

    from afsl_bench.cli import render
    from afsl_bench.store.record import Record

    record = Record.from_json(results[1])
    sink = io.StringIO()
    console = Console(file=sink, width=width, force_terminal=False)
    render.run_result(console, record, cached=True, path=Path("r.json"))
    frame = pd.DataFrame({"fgsm 8/255": ["50.0 ± 1.2 (n=3)"], "pgd 8/255 (steps=3000)": ["100.0"]}, index=["afsl"])
    render.print_table(console, render.pivot_table("robust_acc (%)", "defense", frame))
    text = sink.getvalue()
    words = set(re.findall(r"[^\s│┃]+", text))
    for key in ("clean_acc", "robust_acc", "clean_auc", "robust_eer"):
        assert f"{100 * record.metrics[key]:.1f}" in words, (key, text)
    assert {"50.0", "1.2", "(n=3)", "100.0", "attacked", "accuracy"} <= words, text
    assert "…" not in text, text


# --- bad input as a user meets it: one line naming the problem and the fix, exit 2, nothing written -------

SWEEP_HEAD = '[sweep]\ndetectors = ["tiny-cnn"]\ndefenses = ["none"]\nattacks = ["fgsm"]\ndata = ["synthetic"]\n'


def faces(root: Path, counts: dict[str, tuple[int, int]] | tuple[int, int]) -> str:
    """A folder data set: ``(reals, fakes)`` flat, or per given split; flat colours (no image is needed whole)."""
    splits = counts if isinstance(counts, dict) else {"": counts}
    for split, (reals, fakes) in splits.items():
        for label, n, base in (("real", reals, 20), ("fake", fakes, 200)):
            (root / split / label).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(np.full((32, 32, 3), base + i, np.uint8)).save(root / split / label / f"{i}.png")
    return str(root)


def suite(root: Path, body: str, data: str = "synthetic") -> str:
    (root / "suite.toml").write_text(SWEEP_HEAD.replace("synthetic", data) + body)
    return str(root / "suite.toml")


#: (case, the command line from a temporary folder, what the one-line message says)
BAD_INPUT = {
    "one image per class": (
        lambda t: ["run", "--dataset", "folder", "--set", f"data.root={faces(t / 'd', (1, 1))}"],
        ["too few images", "1 real and 1 fake", "add images"],
    ),
    "a test split without fakes": (
        lambda t: ["run", "--dataset", "folder",
                   "--set", f"data.root={faces(t / 'd', {'train': (4, 4), 'val': (4, 4), 'test': (4, 0)})}"],
        ["the test split", "4 real and 0 fake", "add images of the missing class"],
    ),  # fmt: skip
    "val_fraction=0 with training": (
        lambda t: ["run", "--dataset", "folder", "--set", f"data.root={faces(t / 'd', (10, 10))}",
                   "--set", "data.val_fraction=0"],
        ["data.val_fraction=0", "no validation split", "--set data.val_fraction=0.2"],
    ),  # fmt: skip
    "an --eval-dataset folder without its root": (
        lambda t: ["run", "--eval-dataset", "folder"],
        ["eval.root '' is not a folder", "--set eval.root=PATH"],
    ),
    "train.lr=nan": (lambda t: ["run", "--set", "train.lr=nan"], ["lr=nan", "finite number"]),
    "train.lr=inf": (lambda t: ["run", "--set", "train.lr=inf"], ["lr=inf", "finite number"]),
    "eval.samples=0": (lambda t: ["run", "--set", "eval.samples=0"], ["eval.samples=0", "positive number"]),
    "attack.eps=abc": (lambda t: ["run", "--set", "attack.eps=abc"], ["'abc' is not a number", "8/255"]),
    'seeds = ["zero"]': (
        lambda t: ["sweep", suite(t, 'seeds = ["zero"]\n')], ["line 6", "seeds must be whole numbers"]
    ),
    "seeds = [1.5, 1.9]": (
        lambda t: ["sweep", suite(t, "seeds = [1.5, 1.9]\n")], ["seeds must be whole numbers", "[1.5, 1.9]"]
    ),
    "an unquoted dotted key under [set]": (
        lambda t: ["sweep", suite(t, "[set]\ntrain.epochs = 1\n")], ["line 7", 'quote the dotted key, "train.epochs"']
    ),
    "a typo in data.root, --dry-run": (
        lambda t: ["sweep", suite(t, '[set]\n"data.root" = "/no/such/fces"\n', data="folder"), "--dry-run"],
        ["these cells would fail", "data.root=/no/such/fces"],
    ),  # fmt: skip
    "gate --tolerance nan": (lambda t: ["gate", "--tolerance", "nan"], ["--tolerance", "finite number >= 0"]),
    "gate --tolerance -1": (lambda t: ["gate", "--tolerance", "-1"], ["--tolerance", "finite number >= 0"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_line_with_the_fix_exit_2_and_nothing_written(tmp_path, monkeypatch, case) -> None:
    command, words = BAD_INPUT[case]
    monkeypatch.chdir(tmp_path)
    args = command(tmp_path)
    if args[0] == "run":  # small and quick, like SMALL; the synthetic set's size only where it is the data
        args = [*args, "--attack", "fgsm", *(SMALL if "folder" not in args else SMALL[-5:])]
    outcome = invoke(*args, "--results-dir", str(tmp_path / "results"))
    text = " ".join(outcome.output.split())
    assert outcome.exit_code == 2, outcome.output
    assert all(word in text for word in words), text
    assert "Traceback" not in outcome.output and outcome.output.count("error:") == 1, outcome.output
    assert not list((tmp_path / "results").rglob("*.json")), "no record and no checkpoint index"
    assert not list((tmp_path / "results").rglob("*.pt")), "nothing trained"
