"""``bench score``: measure registry models and store the results."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any

import click
import yaml

from bench.cli._common import db_option
from bench.cli._output import echo_rows, format_option
from bench.errors import BenchError


def _parse_params(items: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``measure.key=value`` pairs (values parsed as YAML scalars) into per-measure dicts."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        measure, dot, name = key.partition(".")
        if not sep or not dot or not measure or not name:
            raise BenchError(f"--param {item!r} is not of the form measure.key=value",
                             "for example --param rf.delta=2")
        out.setdefault(measure, {})[name] = yaml.safe_load(raw)
    return out


def _command_line(argv: list[str]) -> str:
    """The command as run, with local paths cut to their last part.

    It is stored with every run and travels in submissions and the public dataset,
    where a path of the user's machine has no business.
    """
    def scrub(arg: str) -> str:
        prefix, sep, value = arg.rpartition("=") if arg.startswith("-") else ("", "", arg)
        kind, colon, rest = value.partition(":")
        if colon and kind in ("folder", "hf"):
            is_path = kind == "folder" or Path(rest).exists()  # hf: also takes Hub ids, org/name
            value = f"{kind}:{Path(rest).name}" if is_path and os.path.sep in rest else value
        elif os.path.sep in value:
            value = Path(value).name
        return f"{prefix}{sep}{value}"

    return "bench " + " ".join(shlex.quote(scrub(a)) for a in argv)


def _batch_size(value: str) -> int | None:
    if value == "auto":
        return None
    if not value.isdigit() or int(value) < 1:
        raise BenchError(f"--batch-size {value!r} is not a positive integer", "use a number or auto")
    return int(value)


@click.command("score")
@click.option("--model", "-m", "models", multiple=True, required=True,
              help="Registry id (arch.tag) or architecture name; repeat for several.")
@click.option("--measure", "measures", multiple=True, default=("gc",), show_default=True,
              help="Measure to run (gc, gc_embedding, rf, ag, ag_trained, plane, mftma, volume); repeatable.")
@click.option("--weights", default="pretrained", show_default=True,
              help="pretrained (the Hub through timm), random (timm init, seeded) or a local "
                   ".safetensors / torch checkpoint PATH.")
@click.option("--probes", default="default", show_default=True,
              help="Probe set: default, folder:<path> or hf:<dataset id>[:split].")
@click.option("--images", type=click.IntRange(min=1), default=None,
              help="Use only the first N probe images [default: all].")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every random draw.")
@click.option("--batch-size", default="auto", show_default=True,
              help="Images per batch, or auto (halved on out-of-memory).")
@click.option("--param", "-p", "param_items", multiple=True, metavar="MEASURE.KEY=VALUE",
              help="Override a protocol parameter, e.g. -p gc.probes=16; repeatable.")
@click.option("--sweep", is_flag=True, help="Also store curves over the measure's sweep (rf: delta).")
@click.option("--layers", is_flag=True, help="Also store per-layer rows where supported (rf).")
@click.option("--preset", type=click.Choice(["full", "quick"]), default=None,
              help="Preset of measures that have one (plane); quick rows are flagged.")
@click.option("--allow-tf32", is_flag=True, help="Allow TF32 matmuls on GPU (the rows say so).")
@click.option("--force", is_flag=True, help="Measure again even if the same result is stored.")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
@click.option("--lock-timeout", type=float, default=60.0, show_default=True,
              help="Seconds to wait while another process writes the database.")
@format_option
@db_option
@click.pass_obj
def command(obj,models, measures, weights, probes, images, device, seed, batch_size, param_items,
            sweep, layers, preset, allow_tf32, force, no_progress, lock_timeout, fmt, db_path):
    """Score models on geometry measures and store the results.

    \b
    Examples:
      bench score --model resnet18
      bench score --model resnet18 --weights random --measure gc --measure rf --images 32
      bench score --model tf_efficientnet_lite0.in1k --weights ./lite0.safetensors
    """
    # Light checks first: a request that cannot succeed fails before torch is imported.
    from bench.hub import require_cached_when_offline
    from bench.measures import ARCHITECTURE_MEASURES
    from bench.registry import load_registry

    registry = load_registry()
    if weights == "pretrained" and set(measures) - set(ARCHITECTURE_MEASURES):
        wanted = [e for e in registry.values() if e.id in models or e.timm_name in models]
        require_cached_when_offline(sorted({e.id for e in wanted}), [e.hub_id for e in wanted])

    from bench.harness.device import resolve_device
    from bench.harness.runner import Runner, ScoreOptions, select_specs, summary_rows
    from bench.registry import resolve
    from bench.store.db import Store

    if weights not in ("pretrained", "random") and len(models) > 1:
        raise BenchError("--weights PATH names one checkpoint but several models were given",
                         "score one model per weights file")
    specs = select_specs(dict.fromkeys(measures))
    params = _parse_params(param_items)
    unknown = set(params) - {s.name for s in specs}
    if unknown:
        raise BenchError(f"--param names measure(s) not being run: {', '.join(sorted(unknown))}",
                         "add them with --measure, or fix the name")
    # Convenience flags set a parameter of every selected measure that has it.
    flags = {"sweep": sweep, "layers": layers, "preset": preset}
    for spec in specs:
        for key, value in flags.items():
            if value and key in spec.defaults:
                params.setdefault(spec.name, {}).setdefault(key, value)
    entries = [resolve(name, registry) for name in dict.fromkeys(models)]
    options = ScoreOptions(
        weights=weights, probes=probes, images=images, device=resolve_device(device), seed=seed,
        force=force, batch_size=_batch_size(batch_size), allow_tf32=allow_tf32, params=params,
        show_progress=not no_progress and sys.stderr.isatty())
    store = Store(db_path, lock_timeout=lock_timeout)
    # the arguments main() was given (sys.argv is someone else's when called from Python)
    argv = (obj or {}).get("argv", sys.argv[1:])
    outcomes = Runner(store, options, _command_line(argv)).run(entries, specs)
    echo_rows(summary_rows(outcomes), fmt)
    if fmt == "table":
        click.echo(f"\nstored in {store.path}", err=True)
