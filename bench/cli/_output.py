"""Printing tables as text, CSV or JSON, shared by the commands that print data."""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Sequence

import click
from tabulate import tabulate

FORMATS = ("table", "csv", "json")

format_option = click.option("--format", "fmt", type=click.Choice(FORMATS), default="table",
                             show_default=True, help="Output format.")


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, dict)):
        text = json.dumps(value, default=str)
        return text if len(text) <= 60 else text[:57] + "..."
    return value


def render(rows: Sequence[dict[str, Any]], fmt: str) -> str:
    """Rows (dicts with the same keys) in the chosen format."""
    rows = list(rows)
    if fmt == "json":
        return json.dumps(rows, indent=2, default=str)
    if not rows:
        return "(no rows)" if fmt == "table" else ""
    columns = list(rows[0])
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
        return buf.getvalue().rstrip("\n")
    return tabulate([[_cell(r[c]) for c in columns] for r in rows], headers=columns,
                    tablefmt="simple", missingval="")


def echo_rows(rows: Sequence[dict[str, Any]], fmt: str) -> None:
    click.echo(render(rows, fmt))
