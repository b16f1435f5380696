"""``bench submit``: write one run of the local database as a submission file."""

from __future__ import annotations

import click

from bench.cli._common import db_option
from bench.errors import BenchError
from bench.store.db import Store
from bench.submissions import latest_run_id, submit_run


@click.command("submit")
@click.option("--run", "run_id", default=None, help="Run id to submit.")
@click.option("--latest", is_flag=True, help="Submit the most recent run with measurements.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="submissions",
              show_default=True, help="Folder to write <run_id>.json into.")
@db_option
def command(run_id: str | None, latest: bool, out_dir: str, db_path: str | None) -> None:
    """Write a run's rows as a reviewable JSON file for a pull request."""
    if (run_id is None) == (not latest):
        raise BenchError("give exactly one of --run RUN_ID and --latest",
                         "`bench query 'SELECT run_id, started_at, command FROM runs'` lists runs")
    store = Store(db_path)
    path = submit_run(store, run_id or latest_run_id(store), out_dir)
    click.echo(f"wrote {path}; open a pull request that adds it (see CONTRIBUTING.md)")
