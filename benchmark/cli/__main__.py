"""``python -m afsl_bench.cli``: the same as the ``afsl-bench`` console script."""

from afsl_bench.cli import app

app(prog_name="afsl-bench")
