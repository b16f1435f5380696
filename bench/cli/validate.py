"""``bench validate``: check registry files and submission files, listing every problem."""

from __future__ import annotations

import os
from pathlib import Path

import click

import bench
from bench.errors import BenchError


def default_submissions_dir() -> Path:
    """``$BENCH_SUBMISSIONS``, else the ``submissions/`` folder at the top of the repository."""
    env = os.environ.get("BENCH_SUBMISSIONS")
    return Path(env) if env else Path(bench.__file__).resolve().parents[1] / "submissions"


def _split(paths: tuple[str, ...]) -> tuple[list[Path], list[Path]]:
    """Registry YAML files and submission JSON files among the paths (folders are searched)."""
    registry, submissions = [], []
    for p in map(Path, paths):
        files = sorted(p.iterdir()) if p.is_dir() else [p]
        registry += [f for f in files if f.suffix in (".yaml", ".yml")]
        submissions += [f for f in files if f.suffix == ".json"]
        if not p.is_dir() and p.suffix not in (".yaml", ".yml", ".json"):
            raise BenchError(f"{p}: neither a registry .yaml nor a submission .json file",
                             "pass registry/*.yaml, submissions/*.json or their folders")
    return registry, submissions


@click.command("validate")
@click.option("--registry-only", is_flag=True, help="Check only registry files.")
@click.option("--submissions-only", is_flag=True, help="Check only submission files.")
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
def command(registry_only: bool, submissions_only: bool, paths: tuple[str, ...]) -> None:
    """Check the registry and the submissions [default: registry/ and submissions/].

    Submissions are checked for schema and types, SPEC provenance, known measure
    versions, finite values, models in the registry, size and HTML-free text.
    """
    from bench.measures import measure_specs
    from bench.registry import default_registry_dir, load_registry, registry_files, validate_files
    from bench.submissions import check_submission

    if registry_only and submissions_only:
        raise BenchError("--registry-only and --submissions-only exclude each other", "give one")
    if paths:
        registry, submissions = _split(paths)
    else:
        registry = [] if submissions_only else registry_files(default_registry_dir())
        folder = default_submissions_dir()
        submissions = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if submissions_only:
        registry = []
    if registry_only:
        submissions = []

    problems = validate_files(registry) if registry else []
    if submissions:  # the registry and measures are loaded once for all files
        known_models, known_measures = load_registry(), measure_specs()
        for path in submissions:
            problems += check_submission(path, registry=known_models, specs=known_measures)[1]
    for problem in problems:
        click.echo(f"problem: {problem}", err=True)
    if problems:
        raise BenchError(f"{len(problems)} problem(s) in {len(registry)} registry and "
                         f"{len(submissions)} submission file(s)", "fix the files listed above")
    click.echo(f"ok: {len(registry)} registry file(s) and {len(submissions)} submission file(s) valid")
