"""The submission file: one run's rows as reviewable, lossless JSON.

A submission is a JSON object::

    {
      "format": "geometry-bench-submission",
      "format_version": 1,
      "schema_version": 1,                 # bench.store.schema.SCHEMA_VERSION
      "run": {...one runs row...},
      "models": [{...models row...}, ...], # every checkpoint the measurements refer to
      "measurements": [{...}, ...]
    }

Each row has exactly the columns of the Arrow schema. Why this encoding:

- **Lossless.** Floats are written with Python's shortest round-trip repr;
  timestamps as ISO 8601 in UTC with microseconds (the store's precision); nulls as
  ``null``. ``params`` and ``extras`` (JSON strings in the store) are written as
  JSON objects so a reviewer can read them; reading re-serializes them canonically,
  which gives back the stored string (the store only holds canonical JSON, and
  :func:`encode_row` refuses anything else). Inside ``arrays`` a non-finite float is
  written as the string ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``, since the
  element type is known to be float; everywhere else non-finite numbers are not
  allowed (SPEC section 1: values are finite or the row is undefined).
- **Reviewable.** Objects are indented one key per line; long number lists (curves,
  spectra, maps) stay on one line each, so a diff shows rows, not thousands of lines.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

from bench.store.rows import canonical_json
from bench.store.schema import TABLES

FORMAT = "geometry-bench-submission"
FORMAT_VERSION = 1
JSON_COLUMNS = ("params", "extras")
HEADER_KEYS = ("format", "format_version", "schema_version", "run", "models", "measurements")

_NONFINITE_NAMES = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class EncodeError(ValueError):
    """A stored value that a submission cannot carry (non-canonical or non-finite JSON)."""


def _encode_float_in_array(x: float | None) -> float | str | None:
    if x is None or math.isfinite(x):
        return x
    return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")


def decode_float_in_array(x: Any) -> Any:
    """The float a submission's array element stands for (strings name non-finite values)."""
    return _NONFINITE_NAMES.get(x, x) if isinstance(x, str) else x


def _encode_timestamp(t: datetime | None) -> str | None:
    if t is None:
        return None
    return t.astimezone(timezone.utc).isoformat(timespec="microseconds")


def encode_row(table: str, row: dict[str, Any]) -> dict[str, Any]:
    """One store row (as pyarrow's ``to_pylist`` gives it) as JSON-ready data."""
    out: dict[str, Any] = {}
    for field in TABLES[table]:
        value = row.get(field.name)
        if value is None:
            out[field.name] = None
        elif pa.types.is_timestamp(field.type):
            out[field.name] = _encode_timestamp(value)
        elif field.name in JSON_COLUMNS and table == "measurements":
            try:
                parsed = json.loads(value, parse_constant=_reject_constant)
            except (ValueError, EncodeError) as exc:
                raise EncodeError(f"{field.name}: {exc}") from exc
            if canonical_json(parsed) != value:
                raise EncodeError(f"{field.name}: not canonical JSON")
            out[field.name] = parsed
        elif field.name == "arrays":
            out[field.name] = [{"name": a["name"], "values": None if a["values"] is None else
                                [_encode_float_in_array(v) for v in a["values"]]} for a in value]
        elif isinstance(value, float) and not math.isfinite(value):
            raise EncodeError(f"{field.name}: {value} is not finite")
        else:
            out[field.name] = value
    return out


def _reject_constant(name: str) -> Any:
    raise EncodeError(f"{name} is not finite")


def dumps(document: Any) -> str:
    """The reviewable JSON text of a submission (see the module docstring)."""
    return _dump(document, 0) + "\n"


def _dump(value: Any, level: int) -> str:
    pad, inner = "  " * level, "  " * (level + 1)
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(k)}: {_dump(v, level + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and value and any(isinstance(v, (dict, list)) for v in value):
        return "[\n" + ",\n".join(inner + _dump(v, level + 1) for v in value) + f"\n{pad}]"
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def document(run: dict[str, Any], models: list[dict[str, Any]],
             measurements: list[dict[str, Any]]) -> dict[str, Any]:
    """The submission object for one run's store rows."""
    from bench.store.schema import SCHEMA_VERSION

    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "schema_version": SCHEMA_VERSION,
        "run": encode_row("runs", run),
        "models": [encode_row("models", r) for r in models],
        "measurements": [encode_row("measurements", r) for r in measurements],
    }
