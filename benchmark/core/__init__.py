"""The kernel of afsl-bench: what every layer may import, and what imports nothing else of the project.

``registry`` (the generic Registry), ``errors`` (ConfigError), ``types`` (Batch, Split, DataBundle),
``spec`` (content-addressed components and cell ids), ``metrics``, ``params`` (typing of ``--set`` values and
the one ``--set`` parser) and ``io`` (the one atomic writer). ``tests/test_layering.py`` holds the rule.
"""
