"""``bench ingest``: load submission files into a database (checked first, all or nothing)."""

from __future__ import annotations

import click

from bench.cli._common import db_option
from bench.store.db import Store
from bench.submissions import SubmissionError, ingest


@click.command("ingest")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@db_option
def command(paths: tuple[str, ...], db_path: str | None) -> None:
    """Check submission files (or folders of them) and add their new rows to the database."""
    try:
        report = ingest(list(paths), Store(db_path))
    except SubmissionError as exc:
        for problem in exc.problems:
            click.echo(f"problem: {problem}", err=True)
        raise
    added = ", ".join(f"{name} {n}" for name, n in report.added.items())
    click.echo(f"ingested {report.files} file(s): added {added}")
