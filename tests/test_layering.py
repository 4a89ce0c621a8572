"""The package's shape: one import package, and layers whose imports only point down.

Layers (``docs/design.md``): the core (``afsl_bench.core``) imports nothing else of the project; the
components (detectors, data sets and their preparation, attacks, defenses) import the core and the
components below them, never the engine; the engine (planning, running, records, the store, reports, the
CLI, the API) may import anything. Lazy imports inside functions count too.
"""

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
#: repository folder -> import name (pyproject's [tool.setuptools.package-dir])
FOLDERS = {
    "benchmark": "afsl_bench",
    "attacks": "afsl_bench.attacks",
    "defenses": "afsl_bench.defenses",
    "detectors": "afsl_bench.detectors",
}
#: layer -> the layers it may import (itself included), from the bottom up: the core; the components;
#: the engine's storage (records and the store), running (plan, the cell pipeline, sweeps) and reporting
#: (tables, plots, leaderboard, gate); the front (the API and the CLI) on top
COMPONENTS = {"detectors", "data", "attacks", "defenses"}
ALLOWED = {
    "core": {"core"},
    "detectors": {"core", "detectors"},
    "data": {"core", "data"},
    "attacks": {"core", "attacks"},
    "defenses": {"core", "attacks", "detectors", "defenses"},
    "store": {"core", "store"},
    "runner": {"core", *COMPONENTS, "store", "runner"},
    "report": {"core", *COMPONENTS, "store", "runner", "report"},
    "front": {"core", *COMPONENTS, "store", "runner", "report", "front"},
}
LAYER_OF_PACKAGE = {
    "afsl_bench.core": "core",
    "afsl_bench.detectors": "detectors",
    "afsl_bench.data": "data",
    "afsl_bench.prepare": "data",
    "afsl_bench.attacks": "attacks",
    "afsl_bench.defenses": "defenses",
    "afsl_bench.store": "store",
    "afsl_bench.runner": "runner",
    "afsl_bench.report": "report",
}


def layer(module: str) -> str:
    return next(
        (lay for pkg, lay in LAYER_OF_PACKAGE.items() if module == pkg or module.startswith(pkg + ".")),
        "front",
    )


def modules() -> dict[str, Path]:
    found = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            name = ".".join((package, *parts)).removesuffix(".__init__")
            if package == "afsl_bench" and parts[0] in {"attacks", "defenses", "detectors"}:
                continue  # not a folder of benchmark/
            found[name] = path
    return found


def imports(path: Path, module: str, runtime_only: bool = False) -> set[str]:
    """Every afsl_bench module ``path`` imports, at the top or inside a function; with ``runtime_only``,
    not those under ``if TYPE_CHECKING:`` (annotations only: never executed)."""
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text())
    annotation_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
        for inner in ast.walk(node)
    }
    out = set()
    for node in ast.walk(tree):
        if runtime_only and id(node) in annotation_only:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES}
    return {name for name in out if name.split(".")[0] == "afsl_bench" and name != "afsl_bench"}


MODULES = modules()


def test_the_repository_folders_are_the_packages_of_pyproject() -> None:
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert {v: k for k, v in config["package-dir"].items()} == FOLDERS
    assert set(config["packages"]) == {m for m, p in MODULES.items() if p.name == "__init__.py"}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_the_layers(module: str) -> None:
    mine = layer(module)
    wrong = sorted(name for name in imports(MODULES[module], module) if layer(name) not in ALLOWED[mine])
    assert not wrong, f"{module} ({mine}) imports {wrong}: allowed layers {sorted(ALLOWED[mine])}"


def test_the_layering_check_catches_an_arrow_going_up(tmp_path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from afsl_bench.runner.cell import run_cell\n")
    assert layer(next(iter(imports(bad, "afsl_bench.attacks.bad")))) == "runner"
    assert "runner" not in ALLOWED["attacks"]
    assert "report" not in ALLOWED["runner"] and "runner" not in ALLOWED["store"]


def import_cycles() -> list[list[str]]:
    """The strongly connected components of more than one module in the import graph (lazy imports inside
    functions count: a cycle broken by a lazy import is still a cycle a reader has to untangle; imports for
    annotations only, under ``if TYPE_CHECKING:``, do not)."""
    graph = {m: sorted(imports(p, m, runtime_only=True) & set(MODULES)) for m, p in MODULES.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while (top := stack.pop()) != node:
                component.append(top)
            if component:
                cycles.append(sorted([node, *component]))

    for module in graph:
        if module not in index:
            visit(module)
    return cycles


def test_no_import_cycles() -> None:
    """A package's ``__init__`` importing its own modules (the registries' lazy loading) is not a cycle;
    any other loop between modules is."""
    cycles = [
        c for c in import_cycles()
        if not all(m == c[0] or m.startswith(c[0] + ".") for m in c[1:]) or MODULES[c[0]].name != "__init__.py"
    ]  # fmt: skip
    assert not cycles, f"import cycles: {cycles}"


def test_the_layers_summary(capsys) -> None:
    """Every module belongs to one layer; the summary (modules per layer) is what docs/design.md shows."""
    counts: dict[str, int] = {}
    for module in MODULES:
        counts[layer(module)] = counts.get(layer(module), 0) + 1
    assert set(counts) == set(ALLOWED)
    with capsys.disabled():
        print("\nmodules per layer:", ", ".join(f"{k} {counts[k]}" for k in ALLOWED))


def test_an_install_adds_one_top_level_package(tmp_path) -> None:
    """``pip install`` of the built wheel puts ``afsl_bench`` (and its dist-info) in site-packages, nothing
    with a generic name such as ``benchmark``, ``attacks`` or ``results``."""
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = tmp_path.glob("afsl_bench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"afsl_bench"}
    for expected in ("afsl_bench/core/registry.py", "afsl_bench/attacks/apgd.py", "afsl_bench/cli/__init__.py",
                     "afsl_bench/prepare/splits/ffpp/test.json", "afsl_bench/store/disk.py",
                     "afsl_bench/cli/listing.py"):  # fmt: skip
        assert expected in names
    assert not [n for n in names if n.startswith("afsl_bench/results")]
