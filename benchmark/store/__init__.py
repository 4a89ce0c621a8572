"""Where results live: the typed record of one cell (``record``) and the folder that holds records,
per-sample tables, checkpoints and caches (``disk``). Imports only the core: every other engine layer may
read and write results, and results never depend on how they were produced."""
