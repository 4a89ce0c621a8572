"""The leaderboard: ``leaderboard.md``'s generated block, its plots and RobustBench-style entries, rendered
from the records of one suite (``suites/leaderboard.toml``).

``afsl-bench leaderboard`` reads the finished records of the suite's cells from the store, writes a compact
copy of them (``export``: ``results/leaderboard/records.jsonl``, committed, so the block can be checked and
re-rendered without re-running anything), renders the markdown block (``page``, from ``settings``,
``sections`` and ``reproduction``) and the plots from that copy, and replaces only the text between the
markers in ``leaderboard.md``. A test re-renders the block from the committed copy and fails when it is
stale, or when the suite plans cells the copy does not hold. ``model_info`` writes the RobustBench entries.

The names below are the package's interface (the CLI and the tests use them).
"""

from afsl_bench.report.leaderboard.certified import certified_section
from afsl_bench.report.leaderboard.export import (
    CERTIFIED,
    EXPORT,
    MODEL_INFO,
    PENDING,
    PLOTS,
    SUITE,
    collect,
    collect_certified,
    compact,
    incomplete,
    missing_cells,
    pending_note,
    read_certified,
    read_export,
    write_certified,
    write_export,
)
from afsl_bench.report.leaderboard.model_info import model_info, write_model_info
from afsl_bench.report.leaderboard.page import (
    BEGIN,
    END,
    current_block,
    figures,
    plot_links,
    render,
    replace_block,
)
from afsl_bench.report.leaderboard.reproduction import paper_reproduction, pgd10_label, ranked
from afsl_bench.report.leaderboard.sections import RANKING, flags, ranking
from afsl_bench.report.leaderboard.settings import settings

__all__ = [
    "BEGIN", "CERTIFIED", "END", "EXPORT", "MODEL_INFO", "PENDING", "PLOTS", "RANKING", "SUITE", "certified_section", "collect", "collect_certified", "compact",
    "current_block", "figures", "flags", "incomplete", "missing_cells", "model_info", "paper_reproduction",
    "pending_note", "pgd10_label", "plot_links", "ranked", "ranking", "read_certified", "read_export", "render", "replace_block",
    "settings", "write_certified", "write_export", "write_model_info",
]  # fmt: skip
