"""Turning measurements and provenance into rows of the Arrow schema."""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from datetime import datetime, timezone
from typing import Any, Iterable

import pyarrow as pa

from bench.measures._types import Measurement
from bench.store.schema import TABLES


def canonical_json(obj: Any) -> str:
    """Stable JSON (sorted keys, no spaces) so equal protocols hash equally."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_jsonable)


def _jsonable(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, (set, tuple)):
        return list(x)
    return str(x)


def params_hash(params: dict[str, Any]) -> str:
    return hashlib.sha1(canonical_json(params).encode()).hexdigest()[:16]


def now() -> datetime:
    return datetime.now(timezone.utc)


def new_id() -> str:
    return uuid.uuid4().hex


def measurement_row(m: Measurement, provenance: dict[str, Any]) -> dict[str, Any]:
    """One ``measurements`` row: the measurement's own fields plus the run's provenance.

    ``provenance`` holds the columns that describe how the row was made (model
    identity, weights, probe set, device, versions, seed, wall time, ...).
    """
    row = dict(provenance)
    row.update(
        measurement_id=new_id(),
        created_at=now(),
        measure=m.measure,
        measure_version=m.version,
        layer=m.layer,
        layer_depth=m.depth,
        status=m.status,
        reason=m.reason,
        value=m.value,
        stderr=m.stderr,
        ci_low=m.ci_low,
        ci_high=m.ci_high,
        n_images=m.n,
        draws=m.draws,
        params=canonical_json(m.params),
        params_hash=params_hash(m.params),
        extras=canonical_json(m.extras),
        arrays=[{"name": k, "values": [float(v) for v in vals]} for k, vals in m.arrays.items()],
    )
    for k in ("value", "stderr", "ci_low", "ci_high"):
        if row[k] is not None and not math.isfinite(row[k]):
            row[k] = None
    return row


def to_table(name: str, rows: Iterable[dict[str, Any]]) -> pa.Table:
    """Rows as an Arrow table of ``TABLES[name]``; unknown columns are an error, missing ones null."""
    schema = TABLES[name]
    rows = list(rows)
    extra = {k for r in rows for k in r} - set(schema.names)
    if extra:
        raise ValueError(f"unknown {name} columns: {sorted(extra)}")
    return pa.Table.from_pylist([{f: r.get(f) for f in schema.names} for r in rows], schema=schema)
