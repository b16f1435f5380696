"""Reading and checking submission files: every problem names the file and the field.

A submission is checked completely before anything of it may enter a database:

- size (at most :data:`MAX_BYTES`), standard JSON, the header (format, versions);
- schema: exactly the Arrow columns, each value of its column's type, numbers finite;
- provenance: the fields of SPEC section 1 present (:data:`REQUIRED`);
- measures known to this code, at the version it implements, in the right scope;
  ``params_hash`` matching ``params``; ok rows with a value (and, for headline rows,
  an interval), undefined rows with a reason and no value;
- every model in the registry (checkpoint rows by id, architecture rows by timm name);
- no HTML: a ``<`` or ``>`` in any text (including params, extras and array names)
  is rejected. The site escapes everything anyway; refusing markup at the door keeps
  hostile text out of the data set itself.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import pyarrow as pa

from bench.store.rows import canonical_json, params_hash
from bench.store.schema import PRIMARY_KEYS, SCHEMA_VERSION, TABLES
from bench.submissions.format import FORMAT, FORMAT_VERSION, HEADER_KEYS, JSON_COLUMNS, decode_float_in_array

MAX_BYTES = 20 * 1024 * 1024

# SPEC section 1 "what a row records", plus the keys that tie rows together
REQUIRED: dict[str, tuple[str, ...]] = {
    "runs": ("run_id", "started_at", "status", "command", "bench_version"),
    "models": ("model_id", "timm_name", "family", "license", "pretraining_data", "num_classes",
               "param_count"),
    "measurements": ("measurement_id", "run_id", "created_at", "scope", "model_id", "timm_name",
                     "weights", "weights_hash", "measure", "measure_version", "status", "n_images",
                     "draws", "params", "params_hash", "seed", "device", "dtype", "allow_tf32",
                     "wall_time_s", "torch_version", "timm_version", "bench_version"),
}
CHECKPOINT_REQUIRED = ("tag", "probe_set_id", "probe_set_hash")
HEADLINE_REQUIRED = ("value", "stderr", "ci_low", "ci_high")
CHOICES = {
    ("runs", "status"): {"finished", "interrupted", "failed"},
    ("measurements", "scope"): {"checkpoint", "architecture"},
    ("measurements", "status"): {"ok", "undefined"},
    ("measurements", "weights"): {"pretrained", "random", "file", "init"},
}
_INT_RANGE = {32: 2**31, 64: 2**63}


@dataclass(frozen=True)
class Problem:
    file: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.message}"


@dataclass
class Submission:
    """A checked submission: its rows decoded to the Python values of the Arrow schema."""

    path: Path
    rows: dict[str, list[dict[str, Any]]] = dc_field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return self.rows["runs"][0]["run_id"]

    def tables(self) -> dict[str, pa.Table]:
        return {name: pa.Table.from_pylist(self.rows[name], schema=TABLES[name]) for name in TABLES}


class _NonFinite:
    """What a bare ``NaN`` / ``Infinity`` token in the file parses to, so the field can be named."""

    def __init__(self, token: str):
        self.token = token


class _Bad(ValueError):
    pass


def _text_ok(value: str) -> None:
    if "<" in value or ">" in value:
        raise _Bad("contains '<' or '>' (HTML or script markup is not allowed in submissions)")


def _check_json_value(value: Any) -> None:
    """Nested params / extras: finite numbers, text without markup."""
    if isinstance(value, _NonFinite):
        raise _Bad(f"{value.token} is not a finite number")
    if isinstance(value, str):
        _text_ok(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            _text_ok(k)
            _check_json_value(v)
    elif isinstance(value, list):
        for v in value:
            _check_json_value(v)


def _decode(table: str, f: pa.Field, value: Any) -> Any:
    """The Python value of one cell, or :class:`_Bad` saying why it is not of the column's type."""
    if value is None:
        return None
    if isinstance(value, _NonFinite):
        raise _Bad(f"{value.token} is not a finite number")
    t = f.type
    if f.name in JSON_COLUMNS and table == "measurements":
        if not isinstance(value, dict):
            raise _Bad(f"expected a JSON object, got {type(value).__name__}")
        _check_json_value(value)
        return canonical_json(value)
    if pa.types.is_string(t):
        if not isinstance(value, str):
            raise _Bad(f"expected text, got {type(value).__name__}")
        _text_ok(value)
        return value
    if pa.types.is_boolean(t):
        if not isinstance(value, bool):
            raise _Bad(f"expected true or false, got {type(value).__name__}")
        return value
    if pa.types.is_integer(t):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Bad(f"expected an integer, got {type(value).__name__}")
        if not -_INT_RANGE[t.bit_width] <= value < _INT_RANGE[t.bit_width]:
            raise _Bad(f"{value} is out of range for {t}")
        return value
    if pa.types.is_floating(t):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Bad(f"expected a number, got {type(value).__name__}")
        if not math.isfinite(value):
            raise _Bad(f"{value} is not a finite number")
        return float(value)
    if pa.types.is_timestamp(t):
        if not isinstance(value, str):
            raise _Bad(f"expected an ISO 8601 time, got {type(value).__name__}")
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise _Bad(f"{value!r} is not an ISO 8601 time") from None
        if moment.tzinfo is None:
            raise _Bad(f"{value!r} has no time zone (write UTC, +00:00)")
        return moment.astimezone(timezone.utc)
    if f.name == "arrays":
        return _decode_arrays(value)
    raise _Bad(f"no decoder for column type {t}")  # a schema change this module must learn


def _decode_arrays(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise _Bad(f"expected a list of {{name, values}}, got {type(value).__name__}")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or set(item) != {"name", "values"}:
            raise _Bad(f"[{i}] must be an object with exactly 'name' and 'values'")
        name, values = item["name"], item["values"]
        if not isinstance(name, str) or not name:
            raise _Bad(f"[{i}].name must be non-empty text")
        _text_ok(name)
        if values is not None and not isinstance(values, list):
            raise _Bad(f"[{i}].values must be a list of numbers")
        decoded = None if values is None else [decode_float_in_array(v) for v in values]
        if decoded is not None:
            if any(v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)))
                   for v in decoded):
                raise _Bad(f"[{i}].values must hold numbers, null, 'NaN', 'Infinity' or '-Infinity'")
            decoded = [None if v is None else float(v) for v in decoded]
        out.append({"name": name, "values": decoded})
    return out


class _Checker:
    """Collects the problems of one file."""

    def __init__(self, path: Path, registry: Mapping[str, Any], specs: Mapping[str, Any]):
        self.path = path
        self.registry = registry
        self.specs = specs
        self.architectures = {getattr(e, "timm_name", None) for e in registry.values()}
        self.problems: list[Problem] = []
        self.listed_models: set[Any] = set()

    def bad(self, where: str, message: str) -> None:
        self.problems.append(Problem(str(self.path), where, message))

    # -- structure -----------------------------------------------------------------------
    def rows(self, table: str, raw: Any, where: str) -> list[dict[str, Any]]:
        if not isinstance(raw, list):
            self.bad(where, f"expected a list of rows, got {type(raw).__name__}")
            return []
        if table == "models":  # listed even when a row is bad, so its problem is reported once
            self.listed_models = {r.get("model_id") for r in raw if isinstance(r, dict)}
        return [row for i, item in enumerate(raw)
                if (row := self.row(table, item, f"{where}[{i}]")) is not None]

    def row(self, table: str, raw: Any, where: str) -> dict[str, Any] | None:
        if not isinstance(raw, dict):
            self.bad(where, f"expected an object, got {type(raw).__name__}")
            return None
        schema = TABLES[table]
        ok = True
        for key in raw:
            if key not in schema.names:
                self.bad(f"{where}.{key}", f"unknown column of {table}")
                ok = False
        row: dict[str, Any] = {}
        for f in schema:
            if f.name not in raw:
                self.bad(f"{where}.{f.name}", "missing (write null for no value)")
                ok = False
                continue
            try:
                row[f.name] = _decode(table, f, raw[f.name])
            except _Bad as exc:
                self.bad(f"{where}.{f.name}", str(exc))
                ok = False
        if ok:
            self.semantics(table, row, where)
        return row if ok else None

    # -- meaning -------------------------------------------------------------------------
    def semantics(self, table: str, row: dict[str, Any], where: str) -> None:
        for name in REQUIRED[table]:
            if row[name] is None:
                self.bad(f"{where}.{name}", "required (SPEC section 1 provenance), got null")
        for (t, name), allowed in CHOICES.items():
            if t == table and row[name] is not None and row[name] not in allowed:
                self.bad(f"{where}.{name}", f"{row[name]!r} is not one of {sorted(allowed)}")
        if table == "models" and row["model_id"] not in self.registry:
            self.bad(f"{where}.model_id", f"{row['model_id']!r} is not in the registry")
        if table == "measurements":
            self.measurement(row, where)

    def measurement(self, row: dict[str, Any], where: str) -> None:
        spec = self.specs.get(row["measure"])
        if spec is None:
            self.bad(f"{where}.measure", f"unknown measure {row['measure']!r} "
                                         f"(known: {', '.join(sorted(self.specs)) or 'none'})")
        else:
            if row["measure_version"] != spec.version:
                self.bad(f"{where}.measure_version", f"{row['measure']} version {row['measure_version']} "
                                                     f"is not the known version {spec.version}")
            if row["scope"] is not None and row["scope"] != spec.scope:
                self.bad(f"{where}.scope", f"{row['measure']} is {spec.scope}-level, not {row['scope']}")
        if row["scope"] == "checkpoint":
            if row["model_id"] not in self.registry:
                self.bad(f"{where}.model_id", f"{row['model_id']!r} is not in the registry")
            for name in CHECKPOINT_REQUIRED:
                if row[name] is None:
                    self.bad(f"{where}.{name}", "required for checkpoint rows, got null")
        elif row["scope"] == "architecture" and row["timm_name"] not in self.architectures:
            self.bad(f"{where}.timm_name", f"architecture {row['timm_name']!r} is not in the registry")
        if row["params"] is not None and row["params_hash"] != params_hash(json.loads(row["params"])):
            self.bad(f"{where}.params_hash", "does not match params")
        if row["status"] == "ok":
            required = HEADLINE_REQUIRED if row["layer"] is None else ("value",)
            for name in required:
                if row[name] is None:
                    self.bad(f"{where}.{name}", "required for an ok row, got null")
        elif row["status"] == "undefined":
            if row["value"] is not None:
                self.bad(f"{where}.value", "an undefined row has no value")
            if not row["reason"]:
                self.bad(f"{where}.reason", "an undefined row needs its reason")
        if row["ci_low"] is not None and row["ci_high"] is not None and row["ci_low"] > row["ci_high"]:
            self.bad(f"{where}.ci_low", "is above ci_high")
        if row["layer_depth"] is not None and not 0.0 <= row["layer_depth"] <= 1.0:
            self.bad(f"{where}.layer_depth", "must lie in [0, 1]")
        if (row["layer"] is None) != (row["layer_depth"] is None):
            self.bad(f"{where}.layer_depth", "layer and layer_depth are both set or both null")
        for name in ("n_images", "draws"):
            if row[name] is not None and row[name] < 0:
                self.bad(f"{where}.{name}", "must not be negative")

    def consistency(self, run: dict[str, Any] | None, models: list[dict], measurements: list[dict]) -> None:
        """Rows of one file belong together: one run, unique ids, a models row per checkpoint."""
        for table, rows in (("models", models), ("measurements", measurements)):
            key, seen = PRIMARY_KEYS[table], set()
            for i, row in enumerate(rows):
                if row[key] in seen:
                    self.bad(f"{table}[{i}].{key}", f"duplicate {row[key]!r}")
                seen.add(row[key])
        if run is None:
            return
        listed = self.listed_models
        for i, row in enumerate(measurements):
            if row["run_id"] != run["run_id"]:
                self.bad(f"measurements[{i}].run_id", f"{row['run_id']!r} is not this file's run "
                                                      f"{run['run_id']!r}")
            if row["scope"] == "checkpoint" and row["model_id"] not in listed:
                self.bad(f"measurements[{i}].model_id", f"{row['model_id']!r} has no row in models")
        if not measurements:
            self.bad("measurements", "a submission needs at least one measurement")


def _parse(path: Path, checker: _Checker, max_bytes: int) -> Any:
    try:
        size = path.stat().st_size
    except OSError as exc:
        checker.bad("file", f"cannot read: {exc.strerror or exc}")
        return None
    if size > max_bytes:
        checker.bad("file", f"{size:,} bytes is over the limit of {max_bytes:,} bytes "
                            "(split the run into several submissions)")
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"), parse_constant=_NonFinite)
    except UnicodeDecodeError:
        checker.bad("file", "not UTF-8 text")
    except json.JSONDecodeError as exc:
        checker.bad("file", f"not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}")
    return None


def check_submission(path: str | Path, *, registry: Mapping[str, Any] | None = None,
                     specs: Mapping[str, Any] | None = None,
                     max_bytes: int = MAX_BYTES) -> tuple[Submission | None, list[Problem]]:
    """Read and check one file: the decoded submission (None if any problem) and every problem.

    ``registry`` (id -> entry with ``timm_name``) and ``specs`` (measure -> spec with
    ``version`` and ``scope``) default to the project's registry and ``measure_specs()``.
    """
    if registry is None:
        from bench.registry import load_registry

        registry = load_registry()
    if specs is None:
        from bench.measures import measure_specs

        specs = measure_specs()
    path = Path(path)
    checker = _Checker(path, registry, specs)
    doc = _parse(path, checker, max_bytes)
    if doc is None:
        return None, checker.problems
    if not isinstance(doc, dict):
        checker.bad("file", f"expected a JSON object, got {type(doc).__name__}")
        return None, checker.problems
    for key in doc:
        if key not in HEADER_KEYS:
            checker.bad(key, "unknown top-level key")
    for key, expected in (("format", FORMAT), ("format_version", FORMAT_VERSION),
                          ("schema_version", SCHEMA_VERSION)):
        if doc.get(key) != expected:
            checker.bad(key, f"expected {expected!r}, got {doc.get(key)!r}")
    run = checker.row("runs", doc.get("run"), "run")
    models = checker.rows("models", doc.get("models"), "models")
    measurements = checker.rows("measurements", doc.get("measurements"), "measurements")
    checker.consistency(run, models, measurements)
    if checker.problems:
        return None, checker.problems
    return Submission(path, {"runs": [run], "models": models, "measurements": measurements}), []


def submission_files(paths: list[str | Path]) -> list[Path]:
    """The ``*.json`` files named or inside the folders named, sorted."""
    found: list[Path] = []
    for p in map(Path, paths):
        found += sorted(p.glob("*.json")) if p.is_dir() else [p]
    return found
