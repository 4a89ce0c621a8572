"""The leaderboard as a static site (``afsl-bench leaderboard --html OUT/``), after RobustBench's tables.

One self-contained ``index.html`` (styles, script and every record inlined: the page makes no network
request, and opens from disk) and the plots copied beside it (``plots/*.png``). It holds:

- a sortable, filterable table of every cell (one row per record): detector, defense, attack, budget,
  training and evaluation data, seed, clean and robust accuracy, robust AUC, SSIM of the perturbations,
  raised flags; click a column header to sort (again to reverse), pick values in the filters (or type in
  the search box) to hide the other rows;
- for a clicked row, the cell's settings (its spec) and its record (metrics, perturbation, flags, timings,
  environment) below the table;
- the plots of the leaderboard.

Rows carry their values in ``data-`` attributes, so sorting compares numbers as numbers; cells without a
value (a record written before a column existed) sort last.
"""

from __future__ import annotations

import html
import json
import math
import shutil
from pathlib import Path
from typing import Any

from afsl_bench.core.io import atomic_write_text
from afsl_bench.report.tables import tidy
from afsl_bench.store.record import Record, not_learned

#: the table's columns: (header, key of the row dict, numeric?)
COLUMNS = (
    ("detector", "detector", False),
    ("defense", "defense", False),
    ("attack", "attack", False),
    ("eps", "eps", False),
    ("train data", "train_data", False),
    ("eval data", "eval_data", False),
    ("seed", "seed", True),
    ("clean acc (%)", "clean_acc", True),
    ("robust acc (%)", "robust_acc", True),
    ("robust AUC (%)", "robust_auc", True),
    ("SSIM (median)", "ssim", True),
    ("flags", "flags", False),
)
#: the columns with a filter (a select of their values)
FILTERS = ("detector", "defense", "attack", "eps", "train_data", "eval_data")


def rows(records: list[Record]) -> list[dict[str, Any]]:
    """One row per record: the labels the markdown tables use, numbers in % (None where absent)."""
    frame = tidy(records).set_index("cell_id")
    out = []
    for record in records:
        cell = frame.loc[record.cell_id]
        metrics = record.metrics or {}
        flags = record.flags or {}
        raised = list(flags.get("raised", [])) + list(flags.get("store", []))
        if not_learned(record):
            raised.insert(0, "not learned")
        out.append(
            {
                "cell_id": record.cell_id,
                "detector": cell["detector"],
                "defense": cell["defense"],
                "attack": cell["attack_name"],
                "eps": cell["attack"].removeprefix(cell["attack_name"]).strip() or "-",
                "train_data": cell["train_data"],
                "eval_data": cell["eval_data"],
                "seed": int(cell["seed"]),
                "clean_acc": percent(metrics.get("clean_acc")),
                "robust_acc": percent(metrics.get("robust_acc")),
                "robust_auc": percent(metrics.get("robust_auc")),
                "ssim": rounded((record.perturbation or {}).get("ssim_median"), 4),
                "flags": ", ".join(raised) or "-",
            }
        )
    return sorted(out, key=lambda r: (r["detector"], r["defense"], r["attack"], r["eps"], r["seed"]))


def percent(value: float | None) -> float | None:
    return rounded(None if value is None else 100 * value, 1)


def rounded(value: float | None, digits: int) -> float | None:
    if value is None or math.isnan(value):  # absent or NaN
        return None
    return round(float(value), digits)


def write_site(
    records: list[Record], out_dir: Path, plots_dir: Path, title: str, note: str = ""
) -> Path:
    """Write ``out_dir/index.html`` and copy the plots; returns the page's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    shipped = out_dir / "plots"
    if shipped.exists():
        shutil.rmtree(shipped)
    plots = sorted(plots_dir.glob("*.png")) if plots_dir.is_dir() else []
    if plots:
        shipped.mkdir()
        for plot in plots:
            shutil.copy2(plot, shipped / plot.name)
    page = out_dir / "index.html"
    atomic_write_text(page, render_page(records, [p.name for p in plots], title, note))
    page.chmod(0o644)  # a page to serve: readable by a web server's user, whatever the umask
    return page


def render_page(records: list[Record], plots: list[str], title: str, note: str) -> str:
    table_rows = rows(records)
    details = {r.cell_id: r.to_json() for r in records}
    header = "".join(
        f'<th data-key="{key}" data-numeric="{str(numeric).lower()}" tabindex="0">{html.escape(name)}</th>'
        for name, key, numeric in COLUMNS
    )
    body = "\n".join(row_html(row) for row in table_rows)
    filters = "".join(filter_html(key, table_rows) for key in FILTERS)
    figures = "".join(
        f'<figure><img src="plots/{html.escape(name)}" alt="{html.escape(name)}">'
        f"<figcaption>{html.escape(name.removesuffix('.png'))}</figcaption></figure>"
        for name in plots
    )
    data = json.dumps(details, sort_keys=True).replace("</", "<\\/")  # no "</script>" inside the script
    return PAGE.format(
        title=html.escape(title),
        note=f'<p class="note">{html.escape(note)}</p>' if note else "",
        count=len(table_rows),
        filters=filters,
        header=header,
        body=body,
        figures=figures or "<p>No plots.</p>",
        data=data,
        style=STYLE,
        script=SCRIPT,
    )


def row_html(row: dict[str, Any]) -> str:
    cells = []
    for _, key, numeric in COLUMNS:
        value = row[key]
        shown = "-" if value is None else (f"{value:g}" if numeric else str(value))
        sort = "" if value is None else html.escape(str(value), quote=True)
        cells.append(f'<td data-value="{sort}">{html.escape(shown)}</td>')
    attrs = " ".join(
        f'data-{key.replace("_", "-")}="{html.escape(str(row[key]), quote=True)}"' for key in FILTERS
    )
    return f'<tr data-cell="{row["cell_id"]}" {attrs}>{"".join(cells)}</tr>'


def filter_html(key: str, table_rows: list[dict[str, Any]]) -> str:
    values = sorted({str(r[key]) for r in table_rows})
    label = next(name for name, k, _ in COLUMNS if k == key)
    options = "".join(
        f'<option value="{html.escape(v, quote=True)}">{html.escape(v)}</option>' for v in values
    )
    return (
        f'<label>{html.escape(label)} <select data-filter="{key.replace("_", "-")}">'
        f'<option value="">all</option>{options}</select></label>'
    )


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
h1 { font-size: 1.4rem; } .note { background: #fff4d6; padding: .5rem; border-left: 4px solid #e0a800; }
#filters label { margin-right: 1rem; white-space: nowrap; } #filters { margin: .75rem 0; }
table { border-collapse: collapse; font-size: .85rem; } th, td { padding: .25rem .5rem; border-bottom: 1px solid #ddd; }
th { cursor: pointer; background: #f3f3f3; position: sticky; top: 0; user-select: none; }
th[aria-sort="ascending"]::after { content: " \\25B2"; } th[aria-sort="descending"]::after { content: " \\25BC"; }
tbody tr:hover { background: #eef5ff; cursor: pointer; } tr.selected { background: #dbe9ff; }
td:nth-child(n+7) { text-align: right; } #detail pre { background: #f7f7f7; padding: .5rem; overflow: auto; max-height: 30rem; }
figure { display: inline-block; margin: .5rem; } figure img { max-width: 32rem; }
"""

SCRIPT = """
const records = JSON.parse(document.getElementById('records').textContent);
const tbody = document.querySelector('#cells tbody');
const allRows = Array.from(tbody.rows);
function applyFilters() {
  const wanted = Array.from(document.querySelectorAll('select[data-filter]'))
    .filter(s => s.value !== '').map(s => [s.dataset.filter, s.value]);
  const text = document.getElementById('search').value.trim().toLowerCase();
  let shown = 0;
  for (const row of allRows) {
    const keep = wanted.every(([key, value]) => row.getAttribute('data-' + key) === value)
      && (text === '' || row.textContent.toLowerCase().includes(text));
    row.hidden = !keep;
    if (keep) shown += 1;
  }
  document.getElementById('shown').textContent = shown;
}
function sortBy(th) {
  const index = Array.from(th.parentNode.children).indexOf(th);
  const numeric = th.dataset.numeric === 'true';
  const ascending = th.getAttribute('aria-sort') !== 'ascending';
  for (const other of th.parentNode.children) other.removeAttribute('aria-sort');
  th.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
  const value = row => row.cells[index].dataset.value;
  const sorted = allRows.slice().sort((a, b) => {
    const x = value(a), y = value(b);
    if (x === '' || y === '') return (x === '') - (y === '');  // no value: last, either way
    const order = numeric ? Number(x) - Number(y) : x.localeCompare(y);
    return ascending ? order : -order;
  });
  for (const row of sorted) tbody.appendChild(row);
}
function show(row) {
  for (const other of allRows) other.classList.remove('selected');
  row.classList.add('selected');
  const record = records[row.dataset.cell];
  const detail = document.getElementById('detail');
  detail.querySelector('h2').textContent = 'Cell ' + row.dataset.cell;
  detail.querySelector('#spec').textContent = JSON.stringify(record.spec, null, 2);
  const rest = Object.assign({}, record); delete rest.spec;
  detail.querySelector('#record').textContent = JSON.stringify(rest, null, 2);
  detail.hidden = false;
}
document.querySelectorAll('#cells th').forEach(th => {
  th.addEventListener('click', () => sortBy(th));
  th.addEventListener('keydown', e => { if (e.key === 'Enter') sortBy(th); });
});
document.querySelectorAll('select[data-filter]').forEach(s => s.addEventListener('change', applyFilters));
document.getElementById('search').addEventListener('input', applyFilters);
tbody.addEventListener('click', e => { const row = e.target.closest('tr'); if (row) show(row); });
applyFilters();
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<h1>{title}</h1>
{note}
<div id="filters">{filters}<label>search <input id="search" type="search" placeholder="any text"></label></div>
<p><span id="shown">{count}</span> of {count} cells shown. Click a header to sort, a row for its settings and record.</p>
<table id="cells"><thead><tr>{header}</tr></thead>
<tbody>
{body}
</tbody></table>
<section id="detail" hidden><h2></h2><h3>Settings</h3><pre id="spec"></pre><h3>Record</h3><pre id="record"></pre></section>
<h2>Plots</h2>
<div id="plots">{figures}</div>
<script type="application/json" id="records">{data}</script>
<script>{script}</script>
</body>
</html>
"""
