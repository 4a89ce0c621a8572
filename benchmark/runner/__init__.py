"""Producing results: names and overrides become specs (``plan``), one cell runs through the one pipeline
(``cell``) that scores a model clean and under attack (``evaluation``) and probes it for gradient masking
(``probes``); suites expand into cells (``sweep``) that run here or on Ray (``executors``)."""
