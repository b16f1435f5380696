"""``bench query``: read-only SQL against the results database."""

from __future__ import annotations

import click

from bench.cli._common import db_option
from bench.cli._output import echo_rows, format_option
from bench.store.db import Store


@click.command("query")
@click.argument("sql")
@format_option
@db_option
def command(sql, fmt, db_path):
    """Run SQL read-only (the file is opened read-only, so nothing can change).

    Tables: runs, models, measurements; views: leaderboard, architecture_leaderboard.

    \b
    Example:
      bench query "SELECT model_id, value FROM leaderboard WHERE measure = 'gc'"
    """
    echo_rows(Store(db_path).query(sql).to_pylist(), fmt)
