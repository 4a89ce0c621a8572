"""Comments, docstrings and docs cite files of this repository by path; every such path exists, so a reader
who follows one lands on the file (a move that forgets a citation fails here)."""

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
#: an import path's folder -> the repository folder it is built from (pyproject's package-dir)
PACKAGE_DIRS = {"afsl_bench/attacks/": "attacks/", "afsl_bench/defenses/": "defenses/",
                "afsl_bench/detectors/": "detectors/", "afsl_bench/": "benchmark/"}  # fmt: skip
TOP = ("benchmark", "attacks", "defenses", "detectors", "docs", "tests", "scripts", "suites", "results",
       "afsl_bench")  # fmt: skip
CITED = re.compile(r"(?<![\w/.-])((?:" + "|".join(TOP) + r")/(?:[\w.-]+/)*[\w.-]+\.(?:py|md|toml|jsonl?|sh))(?![\w])")
#: files the suites' comments tell a user's command to write (``--export``): outputs, not citations
WRITTEN = {"results/paper/records.jsonl", "results/paper-ffpp/records.jsonl"}
#: the results folder's git-ignored runtime output (a command's printed output cites a record there)
RUNTIME = ("results/records/", "results/checkpoints/", "results/cache/", "results/plots/")
SOURCES = ("benchmark", "attacks", "defenses", "detectors", "scripts", "tests", "suites", "docs")


def cited_paths() -> list[tuple[str, str]]:
    found = []
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix in {".py", ".md", ".toml"} and ".venv" not in path.parts:
                for number, line in enumerate(path.read_text().splitlines(), 1):
                    found += [(f"{path.relative_to(ROOT)}:{number}", m) for m in CITED.findall(line)]
    found += [(f"README.md:{n}", m) for n, line in enumerate((ROOT / "README.md").read_text().splitlines(), 1)
              for m in CITED.findall(line)]  # fmt: skip
    return found


def on_disk(cited: str) -> Path:
    for package, folder in PACKAGE_DIRS.items():
        if cited.startswith(package):
            return ROOT / folder / cited.removeprefix(package)
    return ROOT / cited


def test_every_cited_repository_path_exists() -> None:
    cited = cited_paths()
    assert len(cited) > 50, "the pattern finds the citations"
    missing = [
        f"{where}: {path}"
        for where, path in cited
        if not on_disk(path).exists() and path not in WRITTEN and not path.startswith(RUNTIME)
    ]
    assert not missing, "cited paths that do not exist:\n" + "\n".join(missing)
