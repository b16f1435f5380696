"""The DuckDB store: schema, one-transaction writes, locking, read-only queries, views."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from bench.errors import StoreError
from bench.measures import Measurement
from bench.store.db import Store
from bench.store.rows import measurement_row
from bench.store.schema import MEASUREMENTS, TABLES


def _row(store_run: str, model="m.a", measure="gc", value=1.0, layer=None, **prov):
    m = Measurement(measure, 1, value, 0.1, value - 0.2, value + 0.2, n=8,
                    params={"probes": 8}, extras={"estimator": "exact"},
                    arrays={"curve": [1.0, 2.0]}, layer=layer)
    base = dict(run_id=store_run, scope="checkpoint", model_id=model, timm_name=model.split(".")[0],
                weights="random", weights_hash="h", seed=0, request_hash="r", probe_set_hash="p")
    base.update(prov)
    return measurement_row(m, base)


def _model(model_id="m.a"):
    return dict(model_id=model_id, timm_name=model_id.split(".")[0], tag=model_id.split(".")[1],
                family="fam", num_classes=10)


def test_roundtrip_keeps_every_column(db_path):
    store = Store(db_path)
    run = store.start_run("bench score", "0")
    store.insert("measurements", [_row(run)])
    table = store.table("measurements")
    assert table.schema.names == MEASUREMENTS.names
    row = table.to_pylist()[0]
    assert row["arrays"] == [{"name": "curve", "values": [1.0, 2.0]}]
    assert row["params"] == '{"probes":8}'
    assert row["value"] == 1.0 and row["layer"] is None


def test_failed_write_leaves_nothing(db_path):
    store = Store(db_path)
    run = store.start_run("x", "0")
    good = _row(run)
    bad = _row(run)
    bad["measurement_id"] = good["measurement_id"]  # primary key clash mid-batch
    with pytest.raises(StoreError):
        store.insert("measurements", [good, bad])
    assert store.table("measurements").num_rows == 0


def test_identity_lookup(db_path):
    store = Store(db_path)
    assert not store.has_measurement({"model_id": "m.a"})
    run = store.start_run("x", "0")
    row = _row(run)
    store.insert("measurements", [row])
    ident = {k: row[k] for k in ("model_id", "weights_hash", "measure", "measure_version",
                                 "request_hash", "seed", "probe_set_hash")}
    assert store.has_measurement(ident)
    assert not store.has_measurement({**ident, "seed": 1})


def test_leaderboard_view_takes_latest_ok_headline(db_path):
    store = Store(db_path)
    store.upsert_model(_model())
    run = store.start_run("x", "0")
    store.insert("measurements", [_row(run, value=1.0)])
    time.sleep(0.01)
    store.insert("measurements", [_row(run, value=2.0), _row(run, value=9.0, layer="stage:1")])
    board = store.query("SELECT model_id, measure, value FROM leaderboard").to_pylist()
    assert board == [{"model_id": "m.a", "measure": "gc", "value": 2.0}]


def test_architecture_rows_are_not_repeated_per_checkpoint(db_path):
    store = Store(db_path)
    store.upsert_model(_model("arch.a"))
    store.upsert_model(_model("arch.b"))
    run = store.start_run("x", "0")
    store.insert("measurements", [_row(run, model="arch", measure="ag", scope="architecture",
                                       timm_name="arch")])
    assert store.query("SELECT * FROM leaderboard").num_rows == 0
    assert store.query("SELECT * FROM architecture_leaderboard").num_rows == 1


def test_query_is_read_only(db_path):
    store = Store(db_path)
    store.start_run("x", "0")
    with pytest.raises(StoreError, match="query failed"):
        store.query("DELETE FROM runs")
    assert store.table("runs").num_rows == 1


def test_missing_database_for_reading(tmp_path):
    with pytest.raises(StoreError, match="no results database"):
        Store(tmp_path / "absent.duckdb").query("SELECT 1")


def test_unwritable_location(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        Store(tmp_path / "no" / "such" / "dir.duckdb").start_run("x", "0")


def test_not_a_database(tmp_path):
    path = tmp_path / "junk.duckdb"
    path.write_bytes(b"this is not duckdb" * 100)
    with pytest.raises(StoreError):
        Store(path).start_run("x", "0")


def test_second_writer_waits_then_fails_clearly(db_path):
    Store(db_path).start_run("x", "0")
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import duckdb, sys, time
        con = duckdb.connect({str(db_path)!r})
        print("locked", flush=True)
        time.sleep(30)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StoreError, match="in use by another process"):
            Store(db_path, lock_timeout=0.5).start_run("y", "0")
    finally:
        holder.kill()
        holder.wait()
    # once the other process is gone, the file is intact and writable
    store = Store(db_path)
    store.start_run("z", "0")
    assert store.table("runs").num_rows == 2


def test_schema_tables_have_primary_keys():
    for name, schema in TABLES.items():
        assert schema.names[0].endswith("_id")
