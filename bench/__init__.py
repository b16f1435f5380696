"""Geometry Bench: input-space geometry measurements for image classifiers.

The measures of ``SPEC.md`` live in :mod:`bench.measures` as pure functions; the
``bench`` command (:mod:`bench.cli`) scores registry entries with them and keeps
the results in a DuckDB store (:mod:`bench.store`).
"""

__version__ = "0.1.0"
