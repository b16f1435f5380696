"""``bench leaderboard build``: render the static leaderboard site."""

from __future__ import annotations

import click

from bench.cli._common import db_option
from bench.site import build_site
from bench.store.db import Store


@click.group("leaderboard")
def command() -> None:
    """The static leaderboard site."""


@command.command("build")
@click.option("--out", type=click.Path(file_okay=False), default="leaderboard/site", show_default=True,
              help="Folder to write the site into; open its index.html in a browser.")
@db_option
def build(out: str, db_path: str | None) -> None:
    """Render the leaderboard from the database: no server and no network needed to view it."""
    result = build_site(Store(db_path), out)
    click.echo(f"built {result.pages} page(s) of data revision {result.revision} into {result.out}; "
               f"open {result.out / 'index.html'}")
