"""Options shared by several subcommands."""

from __future__ import annotations

import click

db_option = click.option(
    "--db", "db_path", type=click.Path(dir_okay=False), envvar="BENCH_DB", default=None,
    help="DuckDB results file [default: $BENCH_DB, else ./bench.duckdb].")
