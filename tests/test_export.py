"""``bench export``: Parquet per config plus a dataset card that `datasets` and DuckDB read back exactly."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest
import yaml
from _synthetic import build_synthetic_store
from click.testing import CliRunner

from bench.cli import cli
from bench.export import CONFIGS, data_file, export_dataset, read_tables
from bench.export.docs import COLUMN_DOCS, MEASURE_DOCS
from bench.store.schema import TABLES


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    store = build_synthetic_store(root / "bench.duckdb")
    result = export_dataset(store, root / "dataset")
    return store, result


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_every_config_has_one_parquet_file_listed_in_the_card(exported):
    _, result = exported
    meta = _front_matter((result.out / "README.md").read_text())
    listed = {c["config_name"]: c["data_files"][0]["path"] for c in meta["configs"]}
    assert listed == {c: data_file(c) for c in CONFIGS}
    assert all((result.out / path).is_file() for path in listed.values())
    assert [c["config_name"] for c in meta["configs"] if c.get("default")] == ["leaderboard"]
    assert meta["license"] and meta["pretty_name"] and meta["tags"]


@pytest.mark.parametrize("config", CONFIGS)
def test_duckdb_reads_back_the_store_exactly(exported, config):
    store, result = exported
    expected = read_tables(store)[config]
    assert expected.num_rows > 0
    path = result.out / data_file(config)
    got = duckdb.sql(f"SELECT * FROM read_parquet('{path}')").to_arrow_table()
    got = got.cast(expected.schema)  # duckdb names its own time zone and list children
    assert got.equals(expected)
    # and against the DuckDB store itself, row by row, including lists, structs and nulls
    direct = store.table(config).to_pylist()
    key = {"runs": "run_id", "models": "model_id", "measurements": "measurement_id"}.get(config)
    if key:
        by_key = {r[key]: r for r in got.to_pylist()}
        assert by_key == {r[key]: r for r in direct}


@pytest.mark.parametrize("config", CONFIGS)
def test_datasets_load_dataset_reads_back_identical_values(exported, config, tmp_path):
    datasets = pytest.importorskip("datasets")
    store, result = exported
    ds = datasets.load_dataset(str(result.out), config, split="train", cache_dir=str(tmp_path))
    expected = read_tables(store)[config]
    assert ds.data.table.schema.equals(expected.schema)
    assert ds.to_list() == expected.to_pylist()


def test_list_struct_and_null_columns_survive(exported):
    _, result = exported
    table = pa.parquet.read_table(result.out / data_file("measurements"))
    rows = table.to_pylist()
    volume = next(r for r in rows if r["measure"] == "volume" and r["status"] == "ok")
    names = [a["name"] for a in volume["arrays"]]
    assert names == ["plane0_logvol", "plane0_entropy", "plane0_pred"]
    assert len(volume["arrays"][0]["values"]) == 12 * 12
    undefined = next(r for r in rows if r["status"] == "undefined")
    assert undefined["value"] is None and undefined["reason"]
    assert any(r["layer"] is not None and r["layer_depth"] is not None for r in rows)
    assert all(r["peak_memory_mb"] is None for r in rows)


def test_the_card_documents_every_column_and_measure(exported):
    _, result = exported
    card = (result.out / "README.md").read_text()
    for schema in TABLES.values():
        for name in schema.names:
            assert name in COLUMN_DOCS, f"column {name} has no description"
            assert f"| `{name}` |" in card
    for measure in ("gc", "rf", "mftma", "volume", "ag", "plane"):
        assert f"| `{measure}` |" in card
        assert MEASURE_DOCS[measure][:40] in card
    assert f"Data revision: `{result.revision}`" in card


def test_revision_depends_on_content_only(exported, tmp_path):
    store, result = exported
    again = export_dataset(store, tmp_path / "again")
    assert again.revision == result.revision
    other = build_synthetic_store(tmp_path / "other.duckdb")  # new ids and times: new content
    assert export_dataset(other, tmp_path / "other").revision != result.revision


def test_export_leaves_other_files_in_the_folder_alone(exported, tmp_path):
    store, _ = exported
    (tmp_path / ".gitattributes").write_text("*.parquet filter=lfs\n")
    (tmp_path / "data" / "stale").mkdir(parents=True)
    (tmp_path / "data" / "stale" / "old.parquet").write_text("old")
    export_dataset(store, tmp_path)
    assert (tmp_path / ".gitattributes").read_text() == "*.parquet filter=lfs\n"
    assert not (tmp_path / "data" / "stale").exists()


def test_cli_export(exported, tmp_path):
    store, result = exported
    out = tmp_path / "cli"
    res = CliRunner().invoke(cli, ["export", "--out", str(out), "--db", str(store.path)])
    assert res.exit_code == 0, res.output
    assert f"data revision {result.revision}" in res.output
    assert (out / data_file("measurements")).is_file()


def test_cli_export_without_a_database_is_a_one_line_error(tmp_path, capsys):
    from bench.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--out", str(tmp_path / "o"), "--db", str(tmp_path / "missing.duckdb")])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no results database") and "\n" not in err
