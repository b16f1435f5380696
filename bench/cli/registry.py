"""``bench registry``: list, validate and extend the model registry."""

from __future__ import annotations

from pathlib import Path

import click

from bench.cli._output import echo_rows, format_option
from bench.errors import RegistryError

_dir_option = click.option(
    "--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Registry folder [default: $BENCH_REGISTRY, else the repository's registry/].")


@click.group("registry")
def command() -> None:
    """Inspect, validate and extend the model registry (one YAML file per checkpoint)."""


@command.command("list")
@click.option("--family", default=None, help="Only this family (e.g. resnet, vit).")
@format_option
@_dir_option
def list_entries(family: str | None, fmt: str, directory: Path | None) -> None:
    """List the registered checkpoints."""
    from bench.registry import load_registry

    entries = [e for e in load_registry(directory).values() if family in (None, e.family)]
    if fmt == "table":
        rows = [{"id": e.id, "family": e.family, "params (M)": round(e.param_count / 1e6, 2),
                 "input": e.input_size, "classes": e.num_classes, "data": e.pretraining_data,
                 "top1": e.imagenet_top1, "license": e.license} for e in entries]
    else:
        rows = [e.model_row() | {"scope": e.scope, "notes": e.notes} for e in entries]
    echo_rows(rows, fmt)


@command.command("validate")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@_dir_option
def validate(files: tuple[Path, ...], directory: Path | None) -> None:
    """Check registry files (default: the whole registry); one line per problem."""
    from bench.registry import default_registry_dir, registry_files, validate_files

    paths = list(files) or registry_files(directory or default_registry_dir())
    problems = validate_files(paths)
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        raise RegistryError(f"{len(problems)} problem(s) in {len(paths)} registry file(s)",
                            "fix the fields named above")
    click.echo(f"{len(paths)} registry file(s) valid")


@command.command("add")
@click.option("--from-timm", "timm_name", required=True, metavar="NAME",
              help="timm pretrained name, arch.tag (or an arch for its default tag).")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@_dir_option
def add(timm_name: str, force: bool, directory: Path | None) -> None:
    """Write a registry entry from timm's own pretrained config (works offline).

    Check the result by hand: license, paper, pretraining data, and add
    imagenet_top1 only from a source you can cite.
    """
    from bench.registry import default_registry_dir
    from bench.registry.from_timm import entry_from_timm, write_entry

    path = write_entry(entry_from_timm(timm_name), directory or default_registry_dir(), force)
    click.echo(f"wrote {path}")
