"""Submissions: DB -> file -> fresh DB without loss, idempotent ingest, hostile files rejected whole."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pytest
from _synthetic import HOSTILE, MODELS, build_synthetic_store
from click.testing import CliRunner

from bench.cli import cli
from bench.export import read_tables
from bench.store.db import Store
from bench.store.schema import PRIMARY_KEYS, TABLES
from bench.submissions import MAX_BYTES, SubmissionError, check_submission, ingest, latest_run_id, submit_run

REGISTRY = {m["model_id"]: SimpleNamespace(timm_name=m["timm_name"]) for m in MODELS}
SPECS = {name: SimpleNamespace(version=1, scope=scope) for name, scope in
         [("gc", "checkpoint"), ("rf", "checkpoint"), ("mftma", "checkpoint"), ("volume", "checkpoint"),
          ("ag", "architecture"), ("plane", "architecture")]}
KNOWN = dict(registry=REGISTRY, specs=SPECS)


@pytest.fixture(scope="module")
def _submitted(tmp_path_factory):
    """The synthetic store and one submission per run, made once; tests get copies of the files."""
    root = tmp_path_factory.mktemp("submitted")
    store = build_synthetic_store(root / "source.duckdb")
    run_ids = store.query("SELECT run_id FROM runs ORDER BY run_id").column("run_id").to_pylist()
    return store, [submit_run(store, r, root / "submissions", **KNOWN) for r in run_ids]


@pytest.fixture
def source(_submitted):
    return _submitted[0]


@pytest.fixture
def files(_submitted, tmp_path):
    folder = tmp_path / "submissions"
    folder.mkdir()
    copies = [folder / f.name for f in _submitted[1]]
    for original, copy in zip(_submitted[1], copies):
        shutil.copy(original, copy)
    return copies


def _rows(store: Store) -> dict[str, list[dict]]:
    return {name: sorted(store.table(name).to_pylist(), key=lambda r: r[PRIMARY_KEYS[name]])
            for name in TABLES}


def _count(store: Store) -> dict[str, int]:
    if not store.path.exists():
        return {name: 0 for name in TABLES}
    return {name: store.query(f"SELECT count(*) AS n FROM {name}")["n"][0].as_py() for name in TABLES}


def test_round_trip_is_lossless(source, files, tmp_path):
    fresh = Store(tmp_path / "fresh.duckdb")
    report = ingest([tmp_path / "submissions"], fresh, **KNOWN)
    assert report.files == 2
    assert report.added == _count(source)
    assert _rows(fresh) == _rows(source)
    # the exported view of both is identical too: same types, same values, same order
    original, copied = read_tables(source), read_tables(fresh)
    for name in TABLES:
        assert copied[name].equals(original[name]), name


def test_ingest_is_idempotent(source, files, tmp_path):
    fresh = Store(tmp_path / "fresh.duckdb")
    ingest(files, fresh, **KNOWN)
    before = _rows(fresh)
    again = ingest(files, fresh, **KNOWN)
    assert again.added == {name: 0 for name in TABLES}
    assert _rows(fresh) == before
    assert ingest(files, source, **KNOWN).added == {name: 0 for name in TABLES}


def test_file_is_standard_json_and_reviewable(files):
    text = files[0].read_text()

    def no_constants(token):
        raise AssertionError(f"non-standard JSON token {token}")

    doc = json.loads(text, parse_constant=no_constants)
    assert doc["format"] == "geometry-bench-submission" and doc["format_version"] == 1
    assert set(doc) == {"format", "format_version", "schema_version", "run", "models", "measurements"}
    # one key per line for rows; a whole curve or map on one line
    assert '\n      "measure": ' in text
    long_lines = [line for line in text.splitlines() if '"values": [' in line]
    assert long_lines and all(line.rstrip().endswith(("]", "],")) for line in long_lines)


def test_non_finite_array_elements_round_trip(tmp_path):
    from bench.measures._types import Measurement
    from bench.store import rows

    store = build_synthetic_store(tmp_path / "s.duckdb")
    run_id = latest_run_id(store)
    m = Measurement("volume", 1, 0.3, 0.01, 0.28, 0.32, n=4, arrays={"plane0_logvol": [1.5, float("-inf"),
                                                                                      float("nan"), 0.0]})
    base = store.query("SELECT * FROM measurements WHERE measure = 'volume' AND status = 'ok' LIMIT 1")
    prov = {k: v for k, v in base.to_pylist()[0].items() if k in TABLES["measurements"].names}
    row = rows.measurement_row(m, prov)
    row["request_hash"] = prov["request_hash"]
    row["run_id"] = run_id
    store.insert("measurements", [row])
    path = submit_run(store, run_id, tmp_path / "sub", **KNOWN)
    assert '"-Infinity"' in path.read_text()
    fresh = Store(tmp_path / "fresh.duckdb")
    ingest([path], fresh, **KNOWN)
    got = fresh.query("SELECT arrays FROM measurements WHERE measurement_id = ?", [row["measurement_id"]])
    values = got.to_pylist()[0]["arrays"][0]["values"]
    assert values[0] == 1.5 and values[1] == float("-inf") and values[2] != values[2] and values[3] == 0.0


def _edit(path, fn):
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc, indent=1))


def _ckpt(doc, measure="gc"):
    return next(i for i, r in enumerate(doc["measurements"])
                if r["measure"] == measure and r["layer"] is None and r["status"] == "ok")


HOSTILE_EDITS = {
    "wrong type": (lambda d: d["measurements"][_ckpt(d)].update(value="1520"), ".value", "expected a number"),
    "wrong int": (lambda d: d["measurements"][_ckpt(d)].update(n_images=2.5), ".n_images", "integer"),
    "unknown measure": (lambda d: d["measurements"][_ckpt(d)].update(measure="hype"), ".measure",
                        "unknown measure 'hype'"),
    "unknown version": (lambda d: d["measurements"][_ckpt(d)].update(measure_version=7), ".measure_version",
                        "version 7"),
    "unknown model": (lambda d: [r.update(model_id="evilnet.x") for r in d["models"] + d["measurements"]
                                 if r.get("scope", "checkpoint") == "checkpoint"],
                      ".model_id", "'evilnet.x' is not in the registry"),
    "html in text": (lambda d: d["models"][0].update(family=HOSTILE), "models[0].family", "HTML"),
    "html in reason": (lambda d: d["run"].update(command="bench score <script>x</script>"), "run.command",
                       "HTML"),
    "html in params": (lambda d: d["measurements"][_ckpt(d)]["params"].update(note="<b>x</b>"), ".params",
                       "HTML"),
    "html in array name": (lambda d: d["measurements"][_ckpt(d, "rf")]["arrays"][0].update(name="<i>"),
                           ".arrays", "HTML"),
    "missing provenance": (lambda d: d["measurements"][_ckpt(d)].update(device=None), ".device", "required"),
    "dropped column": (lambda d: d["measurements"][_ckpt(d)].pop("seed"), ".seed", "missing"),
    "unknown column": (lambda d: d["measurements"][_ckpt(d)].update(score=1), ".score", "unknown column"),
    "tampered params": (lambda d: d["measurements"][_ckpt(d)]["params"].update(images=5), ".params_hash",
                        "does not match"),
    "undefined with value": (lambda d: next(r for r in d["measurements"] if r["status"] == "undefined")
                             .update(value=1.0), ".value", "undefined row has no value"),
    "bad time": (lambda d: d["run"].update(started_at="yesterday"), "run.started_at", "ISO 8601"),
    "format version": (lambda d: d.update(format_version=9), "format_version", "expected 1"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_EDITS))
def test_hostile_submission_is_rejected_naming_file_and_field(files, tmp_path, case):
    edit, field, message = HOSTILE_EDITS[case]
    bad = files[0]
    _edit(bad, edit)
    target = Store(tmp_path / "target.duckdb")
    with pytest.raises(SubmissionError) as info:
        ingest([tmp_path / "submissions"], target, **KNOWN)  # the good file is in the folder too
    problems = [str(p) for p in info.value.problems]
    assert any(p.startswith(f"{bad}: ") and field in p and message in p for p in problems), problems
    assert str(bad) in info.value.one_line()
    assert _count(target) == {name: 0 for name in TABLES}


def test_nan_token_is_rejected_naming_the_field(files, tmp_path):
    text = files[0].read_text()
    field = '"stderr": '
    start = text.index(field) + len(field)
    end = text.index(",", start)
    files[0].write_text(text[:start] + "NaN" + text[end:])
    _, problems = check_submission(files[0], **KNOWN)
    assert [str(p) for p in problems] == [f"{files[0]}: measurements[0].stderr: NaN is not a finite number"]


def test_absurdly_large_file_is_rejected_unread(files, tmp_path):
    big = tmp_path / "big.json"
    with open(big, "w") as f:
        f.write('{"format": "geometry-bench-submission", "pad": "')
        f.write("x" * (MAX_BYTES + 1))
        f.write('"}')
    target = Store(tmp_path / "target.duckdb")
    with pytest.raises(SubmissionError, match=r"big\.json: file: .* over the limit"):
        ingest([files[0], big], target, **KNOWN)
    assert _count(target) == {name: 0 for name in TABLES}


def test_not_json_and_wrong_shape(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": ')
    assert "not valid JSON at line 1" in str(check_submission(broken, **KNOWN)[1][0])
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    assert "expected a JSON object" in str(check_submission(listed, **KNOWN)[1][0])


def test_submit_refuses_a_running_run(tmp_path):
    store = build_synthetic_store(tmp_path / "s.duckdb")
    running = store.start_run("bench score --model x", "0.1.0")
    with pytest.raises(Exception, match="still running"):
        submit_run(store, running, tmp_path / "sub", **KNOWN)


@pytest.fixture
def known_everywhere(monkeypatch):
    """The CLI loads the project's registry and measures; point both at the synthetic ones."""
    import bench.measures
    import bench.registry

    monkeypatch.setattr(bench.registry, "load_registry", lambda *a, **k: REGISTRY)
    monkeypatch.setattr(bench.measures, "measure_specs", lambda: SPECS)


def test_cli_submit_ingest_validate(source, tmp_path, known_everywhere):
    runner = CliRunner()
    out = tmp_path / "subs"
    res = runner.invoke(cli, ["submit", "--latest", "--out", str(out), "--db", str(source.path)])
    assert res.exit_code == 0, res.output
    (path,) = out.glob("*.json")
    assert path.stem == latest_run_id(source)
    res = runner.invoke(cli, ["validate", "--submissions-only", str(out)])
    assert res.exit_code == 0, res.output
    assert "1 submission file(s) valid" in res.output
    target = tmp_path / "target.duckdb"
    res = runner.invoke(cli, ["ingest", str(out), "--db", str(target)])
    assert res.exit_code == 0, res.output
    assert "ingested 1 file(s)" in res.output
    res = runner.invoke(cli, ["ingest", str(out), "--db", str(target)])
    assert "added runs 0, models 0, measurements 0" in res.output


def test_cli_validate_names_file_and_field(files, tmp_path, known_everywhere, capsys):
    from bench.cli import main

    _edit(files[0], lambda d: d["models"][0].update(family=HOSTILE))
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", "--submissions-only", str(tmp_path / "submissions")])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert f"problem: {files[0]}: models[0].family: contains '<' or '>'" in err
    assert err.strip().splitlines()[-1].startswith("error: 1 problem(s)"), err


def test_cli_submit_needs_one_of_run_and_latest(source):
    res = CliRunner().invoke(cli, ["submit", "--db", str(source.path)])
    assert res.exit_code != 0


def test_cli_validate_checks_registry_files_with_the_registry_validator(tmp_path, capsys):
    from bench.cli import main

    bad = tmp_path / "notamodel.x.yaml"
    bad.write_text("id: [unclosed\n")
    with pytest.raises(SystemExit):
        main(["validate", "--registry-only", str(bad)])
    err = capsys.readouterr().err
    assert f"problem: {bad}: not valid YAML" in err


def test_cli_validate_rejects_other_files(tmp_path, capsys):
    from bench.cli import main

    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(SystemExit):
        main(["validate", str(other)])
    assert "neither a registry .yaml nor a submission .json" in capsys.readouterr().err


def test_ingest_of_an_empty_folder_creates_an_empty_database(tmp_path):
    (tmp_path / "subs").mkdir()
    (tmp_path / "subs" / "README.md").write_text("no results yet")
    store = Store(tmp_path / "site.duckdb")
    report = ingest([tmp_path / "subs"], store, **KNOWN)
    assert report.files == 0 and _count(store) == {name: 0 for name in TABLES}
