"""Shared fixtures, and the plugin that fails a skipped reference test in CI (``_require_references``)."""

import pytest
import torch

pytest_plugins = ["_require_references", "pytester"]


def pytest_configure(config) -> None:
    """Under pytest-xdist each worker runs torch on one thread: two workers share two cores, and the small
    tensors of the tests gain nothing from a second thread (module doc of ``one_thread``)."""
    import os

    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one torch thread is faster, and on a shared 2-core box 2 threads measured 3-5x slower.
    Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``; the old count is restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def attack_weights() -> dict[str, torch.Tensor]:
    """The weights of the attack tests' small detector (``_attack_fixtures.train_model(seed=0)``), trained
    once per session on one thread (as every module that uses it runs), so each module's copy is the model
    it used to train for itself, bit for bit."""
    from _attack_fixtures import train_model

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {k: v.clone() for k, v in train_model(seed=0).state_dict().items()}
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model(attack_weights) -> torch.nn.Module:
    """The attack tests' trained binary detector (tests/_attack_fixtures.py), a fresh copy per module: a test
    that changes it cannot leak into another module."""
    from _attack_fixtures import SmallCNN

    net = SmallCNN()
    net.load_state_dict(attack_weights)
    return net.eval()


@pytest.fixture(autouse=True, scope="session")
def listing_cache_in_a_temporary_folder(tmp_path_factory):
    """``afsl-bench list`` remembers the registries in the user's cache folder; the tests keep theirs apart."""
    import os

    before = os.environ.get("AFSL_BENCH_CACHE")
    os.environ["AFSL_BENCH_CACHE"] = str(tmp_path_factory.mktemp("afsl-bench-cache"))
    yield
    if before is None:
        del os.environ["AFSL_BENCH_CACHE"]
    else:
        os.environ["AFSL_BENCH_CACHE"] = before


@pytest.fixture(autouse=True, scope="session")
def checkpoints_shared_across_tests(tmp_path_factory):
    """Every test's results folder shares one checkpoint folder for the session (``afsl_bench.store.shared``):
    a model the same settings train in several tests is trained once. Under pytest-xdist the workers share
    it too (the session's common temporary folder; a checkpoint is copied in atomically, and every worker
    trains on one thread, so a copy is the model the reader would have trained). A test that must see
    training happen opts out with ``monkeypatch.delenv("AFSL_CHECKPOINT_CACHE")``. Where the variable is set
    before the session, its folder is used instead."""
    import os

    from afsl_bench.store.shared import ENV

    before = os.environ.get(ENV)
    if before:  # the caller's folder: .ci/run shares one between the slow suite and the gate
        yield
        return
    if os.environ.get("PYTEST_XDIST_WORKER"):  # basetemp is <session>/popen-gwN: share <session>'s folder
        folder = tmp_path_factory.getbasetemp().parent / "shared-checkpoints"
        folder.mkdir(exist_ok=True)
    else:
        folder = tmp_path_factory.mktemp("shared-checkpoints")
    os.environ[ENV] = str(folder)
    yield
    if before is None:
        del os.environ[ENV]
    else:
        os.environ[ENV] = before
