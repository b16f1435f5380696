"""``bench show``: print the leaderboard view of the results database."""

from __future__ import annotations

import click

from bench.cli._common import db_option
from bench.cli._output import echo_rows, format_option
from bench.store.db import Store

_COLUMNS = ("model_id", "family", "weights", "measure", "value", "stderr", "ci_low", "ci_high",
            "n_images")
_ARCH_COLUMNS = ("timm_name", "measure", "value", "stderr", "ci_low", "ci_high", "n_images")


@click.command("show")
@click.option("--measure", "measures", multiple=True, help="Only these measures; repeatable.")
@click.option("--architecture", "architecture", is_flag=True,
              help="Show architecture-level results (ag, plane) instead of checkpoints.")
@format_option
@db_option
def command(measures, architecture, fmt, db_path):
    """Print the leaderboard: the latest value of each measure per model."""
    view, columns, order = (("architecture_leaderboard", _ARCH_COLUMNS, "timm_name")
                            if architecture else ("leaderboard", _COLUMNS, "model_id"))
    where = ""
    args: list = []
    if measures:
        where = f"WHERE measure IN ({', '.join('?' for _ in measures)})"
        args = list(measures)
    sql = (f"SELECT {', '.join(columns)} FROM {view} {where} "
           f"ORDER BY measure, {order}, value")
    echo_rows(Store(db_path).query(sql, args).to_pylist(), fmt)
