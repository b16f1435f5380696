"""The store's tables and views as Arrow tables of the one schema, in a stable order.

Everything that leaves the DuckDB file (Parquet export, site downloads) goes through
:func:`read_tables`, so the exported types are exactly those of
:mod:`bench.store.schema` (DuckDB's own time zone names and list child names are
cast away) and the row order does not depend on insertion order. The data revision
is a hash of that content, so the same data always gets the same revision.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa

from bench.store.db import Store
from bench.store.schema import MEASUREMENTS, MODELS, TABLES, VIEWS

# view column -> the table column it comes from, where the view renames it
_VIEW_ALIASES = {"init": "weights_ref"}

SORT_KEYS: dict[str, list[str]] = {
    "runs": ["started_at", "run_id"],
    "models": ["model_id"],
    "measurements": ["model_id", "measure", "layer_depth", "layer", "created_at", "measurement_id"],
    "leaderboard": ["model_id", "measure", "weights", "measure_version", "params", "created_at", "run_id"],
    "architecture_leaderboard": ["timm_name", "init", "measure", "measure_version", "params", "created_at",
                                 "run_id"],
}

CONFIGS = tuple(TABLES) + tuple(VIEWS)


def _column_type(name: str) -> pa.DataType:
    source = _VIEW_ALIASES.get(name, name)
    for schema in (MEASUREMENTS, MODELS):
        if source in schema.names:
            return schema.field(source).type
    raise KeyError(f"view column {name!r} has no type in the schema")


def view_schema(table: pa.Table) -> pa.Schema:
    """The schema a view result should have: each column typed as in the table it comes from."""
    return pa.schema([(name, _column_type(name)) for name in table.column_names])


def normalize(name: str, table: pa.Table) -> pa.Table:
    """Cast to the schema's types and sort by :data:`SORT_KEYS`."""
    schema = TABLES.get(name) or view_schema(table)
    table = table.select(schema.names).cast(schema)
    keys = [(k, "ascending") for k in SORT_KEYS[name]]
    return table.sort_by(keys) if table.num_rows else table


def read_tables(store: Store) -> dict[str, pa.Table]:
    """Every table and view of the store, normalized (see :func:`normalize`)."""
    return {name: normalize(name, store.table(name)) for name in CONFIGS}


def data_revision(tables: dict[str, pa.Table]) -> str:
    """A short content hash of the data: same rows, same revision."""
    digest = hashlib.sha256()
    for name in sorted(tables):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, tables[name].schema) as writer:
            writer.write_table(tables[name])
        digest.update(name.encode())
        digest.update(sink.getvalue().to_pybytes())
    return digest.hexdigest()[:12]
