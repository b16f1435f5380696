"""``bench export``: write the results as a Hugging Face dataset folder (Parquet + card)."""

from __future__ import annotations

import click

from bench.cli._common import db_option
from bench.export import export_dataset
from bench.store.db import Store


@click.command("export")
@click.option("--out", "out", type=click.Path(file_okay=False), required=True,
              help="Folder to write the dataset into (data/<config>/*.parquet and README.md).")
@click.option("--license", "license_", default="cc-by-4.0", show_default=True,
              help="License of the dataset, written into the dataset card.")
@db_option
def command(out: str, license_: str, db_path: str | None) -> None:
    """Export every table and leaderboard view as Parquet with a dataset card."""
    result = export_dataset(Store(db_path), out, license=license_)
    counts = ", ".join(f"{name} {n}" for name, n in result.row_counts().items())
    click.echo(f"exported data revision {result.revision} to {result.out} ({counts})")
