"""The one Arrow schema of the results store.

Three tables, defined here once and used by the DuckDB store, the Parquet export
and the submission files alike:

- ``runs``: one row per ``bench score`` invocation (command, start, end, status).
- ``models``: the registry metadata of every scored checkpoint, so the leaderboard
  can filter by family, pretraining data, size and license without the YAML files.
- ``measurements``: one row per finished measurement (per layer for per-layer
  measures). Each row carries the full provenance of SPEC section 1 itself, so a
  row taken out of the table (a submission, a Parquet slice) still says how it was
  made.

Views: ``leaderboard`` (latest ok checkpoint-level headline value per model,
measure, weights and protocol) and ``architecture_leaderboard`` (the same for
architecture-level measures, one row per architecture, never repeated per
checkpoint).
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 1

_TS = pa.timestamp("us", tz="UTC")

ARRAY_TYPE = pa.list_(pa.struct([("name", pa.string()), ("values", pa.list_(pa.float64()))]))

RUNS = pa.schema([
    ("run_id", pa.string()),
    ("started_at", _TS),
    ("finished_at", _TS),
    ("status", pa.string()),          # running | finished | interrupted | failed
    ("command", pa.string()),
    ("bench_version", pa.string()),
])

MODELS = pa.schema([
    ("model_id", pa.string()),        # registry id, arch.tag
    ("timm_name", pa.string()),
    ("tag", pa.string()),
    ("family", pa.string()),
    ("hub_id", pa.string()),
    ("license", pa.string()),
    ("paper", pa.string()),
    ("pretraining_data", pa.string()),
    ("num_classes", pa.int64()),
    ("input_size", pa.int64()),       # eval resolution (H = W)
    ("param_count", pa.int64()),
    ("imagenet_top1", pa.float64()),
])

MEASUREMENTS = pa.schema([
    ("measurement_id", pa.string()),
    ("run_id", pa.string()),
    ("created_at", _TS),
    ("scope", pa.string()),           # checkpoint | architecture
    ("model_id", pa.string()),        # registry id; the timm name for architecture rows
    ("timm_name", pa.string()),
    ("tag", pa.string()),
    ("weights", pa.string()),         # pretrained | random | file | init
    ("weights_ref", pa.string()),     # hub id / file name / init scheme
    ("weights_hash", pa.string()),    # sha256 of the weights, or the hub revision
    ("measure", pa.string()),
    ("measure_version", pa.int32()),
    ("layer", pa.string()),           # null for the whole model
    ("layer_depth", pa.float64()),    # relative depth in [0, 1]
    ("status", pa.string()),          # ok | undefined
    ("reason", pa.string()),
    ("value", pa.float64()),
    ("stderr", pa.float64()),
    ("ci_low", pa.float64()),
    ("ci_high", pa.float64()),
    ("n_images", pa.int64()),
    ("draws", pa.int64()),
    ("params", pa.string()),          # canonical JSON of every protocol parameter
    ("params_hash", pa.string()),
    ("request_hash", pa.string()),    # hash of the parameters as requested (skip-if-done key)
    ("extras", pa.string()),          # JSON of secondary scalars
    ("arrays", ARRAY_TYPE),           # named float lists: curves, spectra, maps
    ("seed", pa.int64()),
    ("probe_set_id", pa.string()),
    ("probe_set_hash", pa.string()),
    ("device", pa.string()),
    ("dtype", pa.string()),
    ("allow_tf32", pa.bool_()),
    ("wall_time_s", pa.float64()),
    ("peak_memory_mb", pa.float64()),
    ("torch_version", pa.string()),
    ("timm_version", pa.string()),
    ("bench_version", pa.string()),
])

TABLES: dict[str, pa.Schema] = {"runs": RUNS, "models": MODELS, "measurements": MEASUREMENTS}

PRIMARY_KEYS = {"runs": "run_id", "models": "model_id", "measurements": "measurement_id"}

# The identity of a measurement for "already done?" checks: same model and weights,
# same measure and version, same protocol, probe set and seed.
# The request is hashed rather than the resolved protocol, because it is known before
# the work is done (a measure may resolve a parameter, e.g. gc's exact=None, while running).
IDENTITY_COLUMNS = ("model_id", "weights_hash", "measure", "measure_version", "request_hash",
                    "seed", "probe_set_hash")

_LATEST = """
    SELECT *, row_number() OVER (
        PARTITION BY model_id, weights_hash, measure, measure_version, params_hash
        ORDER BY created_at DESC) AS _rank
    FROM measurements
    WHERE layer IS NULL AND status = 'ok' AND scope = '{scope}'
"""

VIEWS = {
    "leaderboard": f"""
        SELECT m.model_id, m.timm_name, m.tag, m.family, m.pretraining_data, m.param_count,
               m.license, m.imagenet_top1, l.weights, l.measure, l.measure_version,
               l.value, l.stderr, l.ci_low, l.ci_high, l.n_images, l.draws, l.params,
               l.seed, l.probe_set_id, l.run_id, l.created_at
        FROM ({_LATEST.format(scope='checkpoint')}) l JOIN models m USING (model_id)
        WHERE l._rank = 1
    """,
    "architecture_leaderboard": f"""
        SELECT l.timm_name, l.weights_ref AS init, l.measure, l.measure_version,
               l.value, l.stderr, l.ci_low, l.ci_high, l.n_images, l.draws, l.params,
               l.seed, l.run_id, l.created_at
        FROM ({_LATEST.format(scope='architecture')}) l
        WHERE l._rank = 1
    """,
}


def duckdb_type(t: pa.DataType) -> str:
    """The DuckDB column type for an Arrow type of this schema."""
    if pa.types.is_string(t):
        return "VARCHAR"
    if pa.types.is_int32(t):
        return "INTEGER"
    if pa.types.is_int64(t):
        return "BIGINT"
    if pa.types.is_float64(t):
        return "DOUBLE"
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ"
    if pa.types.is_list(t):
        return f"{duckdb_type(t.value_type)}[]"
    if pa.types.is_struct(t):
        return "STRUCT(" + ", ".join(f'"{f.name}" {duckdb_type(f.type)}' for f in t) + ")"
    raise TypeError(f"no DuckDB type for {t}")


def create_table_sql(name: str) -> str:
    schema = TABLES[name]
    cols = ", ".join(f'"{f.name}" {duckdb_type(f.type)}' for f in schema)
    return f'CREATE TABLE IF NOT EXISTS {name} ({cols}, PRIMARY KEY ("{PRIMARY_KEYS[name]}"))'
