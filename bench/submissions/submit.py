"""``bench submit``: one run of the local database as a submission file."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from bench.errors import BenchError
from bench.store.db import Store
from bench.submissions.format import EncodeError, document, dumps
from bench.submissions.ingest import SubmissionError
from bench.submissions.validate import check_submission


def latest_run_id(store: Store) -> str:
    """The most recently started run that stored at least one measurement."""
    rows = store.query("SELECT run_id FROM runs WHERE run_id IN (SELECT run_id FROM measurements) "
                       "ORDER BY started_at DESC LIMIT 1").column("run_id").to_pylist()
    if not rows:
        raise BenchError(f"no run with measurements in {store.path}", "run `bench score` first")
    return rows[0]


def submit_run(store: Store, run_id: str, out_dir: str | Path, *,
               registry: Mapping[str, Any] | None = None,
               specs: Mapping[str, Any] | None = None) -> Path:
    """Write ``<out_dir>/<run_id>.json`` for one run and check it like a reviewer's CI would."""
    runs = store.query("SELECT * FROM runs WHERE run_id = ?", [run_id]).to_pylist()
    if not runs:
        raise BenchError(f"no run {run_id!r} in {store.path}", "list runs with `bench query "
                         "'SELECT run_id, started_at, command FROM runs'`, or use --latest")
    if runs[0]["status"] == "running":
        raise BenchError(f"run {run_id} is still running", "wait for it to finish, then submit")
    measurements = store.query("SELECT * FROM measurements WHERE run_id = ? ORDER BY measurement_id",
                               [run_id]).to_pylist()
    if not measurements:
        raise BenchError(f"run {run_id} stored no measurements", "choose another run")
    models = store.query("SELECT * FROM models WHERE model_id IN (SELECT DISTINCT model_id FROM "
                         "measurements WHERE run_id = ? AND scope = 'checkpoint') ORDER BY model_id",
                         [run_id]).to_pylist()
    try:
        text = dumps(document(runs[0], models, measurements))
    except EncodeError as exc:
        raise BenchError(f"run {run_id} cannot be submitted: {exc}",
                         "the row was not written by `bench score`; re-score it") from exc
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{run_id}.json"
    path.write_text(text, encoding="utf-8")
    _, problems = check_submission(path, registry=registry, specs=specs)
    if problems:
        path.unlink()
        raise SubmissionError(problems)
    return path
