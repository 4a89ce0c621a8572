"""Reading results: tidy tables (``tables``), plots (``plots``), the leaderboard (``leaderboard``) and its
site (``site``), the paper-reproduction section (``paper``), the regression gate (``gate``) and the
validation-only loss-weight tuning (``tuning``). Reads records; runs cells only through ``afsl_bench.runner``."""
