"""``bench push``: upload the exported dataset to the Hugging Face Hub as one commit."""

from __future__ import annotations

import click

from bench.cli._common import db_option
from bench.export import push_dataset
from bench.store.db import Store


@click.command("push")
@click.option("--repo", required=True, help="Dataset repo on the Hub, ORG/NAME.")
@click.option("--revision", default=None, help="Branch to commit to [default: main].")
@click.option("--private", is_flag=True, help="Create the repo as private if it does not exist.")
@click.option("--dry-run", is_flag=True, help="List what would be uploaded; no network.")
@db_option
def command(repo: str, revision: str | None, private: bool, dry_run: bool, db_path: str | None) -> None:
    """Export the results and upload them as one commit naming the runs it adds.

    The token is the one of `hf auth login` or HF_TOKEN; it is never printed.
    """
    plan = push_dataset(Store(db_path), repo, revision=revision, private=private, dry_run=dry_run)
    if dry_run:
        click.echo("dry run, nothing uploaded:\n" + plan.describe())
    else:
        click.echo(f"pushed: {plan.commit_message()}" + (f"\n{plan.commit_url}" if plan.commit_url else ""))
