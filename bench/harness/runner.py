"""The scoring loop behind ``bench score``.

For each model and each requested measure: skip it when the store already holds
the same (model, weights, measure, version, request, seed, probe set), otherwise
run it and commit its rows at once, so a crash or Ctrl-C keeps every finished
measurement. The model and its probe set are loaded only when some checkpoint
measure of that model still has work to do; architecture-level measures (SPEC 4,
5) are keyed by the timm architecture, so one result serves all its checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable

import torch
from tqdm.auto import tqdm

from bench import __version__
from bench.errors import BenchError, UndefinedMeasure
from bench.harness import provenance
from bench.harness.device import device_label, track_usage
from bench.measures import Measurement, MeasureSpec, ScoreContext, measure_specs
from bench.store.db import Store
from bench.store.rows import measurement_row, params_hash


@dataclass
class ScoreOptions:
    """What the user asked for; every field is part of the run's provenance."""

    weights: str = "pretrained"
    probes: str = "default"
    images: int | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    seed: int = 0
    force: bool = False
    batch_size: int | None = None
    allow_tf32: bool = False
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # measure -> overrides
    show_progress: bool = True


@dataclass
class Outcome:
    """One measurement the loop produced or skipped, for the summary table."""

    model: str
    measure: str
    status: str  # ok | undefined | skipped
    row: dict[str, Any] | None = None


def select_specs(names: Iterable[str]) -> list[MeasureSpec]:
    """The specs for the measure names, in the order given; unknown names are an error."""
    specs = measure_specs()
    chosen = []
    for name in names:
        if name not in specs:
            raise BenchError(f"unknown measure {name!r}",
                             f"choose from {', '.join(sorted(specs))}")
        chosen.append(specs[name])
    return chosen


def resolved_params(spec: MeasureSpec, overrides: dict[str, Any]) -> dict[str, Any]:
    """The spec's defaults updated with the user's overrides; unknown keys are an error."""
    unknown = set(overrides) - set(spec.defaults)
    if unknown:
        raise BenchError(f"measure {spec.name} has no parameter {', '.join(sorted(unknown))}",
                         f"its parameters are {', '.join(sorted(spec.defaults)) or 'none'}")
    return {**spec.defaults, **overrides}


def _progress_factory(enabled: bool) -> Callable[..., Any]:
    def make(total: int | None = None, desc: str | None = None, **kwargs: Any):
        return tqdm(total=total, desc=desc, leave=False, disable=not enabled, dynamic_ncols=True,
                    **kwargs)
    return make


class Runner:
    """Scores registry entries on measures and writes each result to the store at once."""

    def __init__(self, store: Store, options: ScoreOptions, command: str):
        self.store = store
        self.options = options
        self.command = command
        self.device_name = device_label(options.device)
        self.progress = _progress_factory(options.show_progress)

    def run(self, entries: list, specs: list[MeasureSpec]) -> list[Outcome]:
        run_id = self.store.start_run(self.command, __version__)
        outcomes: list[Outcome] = []
        status = "failed"
        try:
            for entry in tqdm(entries, desc="models", disable=not self.options.show_progress,
                              dynamic_ncols=True):
                outcomes += self._score_entry(run_id, entry, specs)
            status = "finished"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            self.store.finish_run(run_id, status)
        return outcomes

    # -- one model -------------------------------------------------------------------
    def _score_entry(self, run_id: str, entry, specs: list[MeasureSpec]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        arch_specs = [s for s in specs if s.scope == "architecture"]
        ckpt_specs = [s for s in specs if s.scope == "checkpoint"]
        requested = tuple(s.name for s in specs)

        if arch_specs:
            prov = provenance.architecture_provenance(
                run_id=run_id, entry=entry, seed=self.options.seed,
                device_name=self.device_name, allow_tf32=self.options.allow_tf32)
            ctx = self._context(entry, model=None, probe_set=None, requested=requested)
            outcomes += self._run_specs(arch_specs, ctx, prov, label=entry.timm_name)

        if ckpt_specs:
            loaded, probe_set, model = self._load(entry, ckpt_specs)
            self.store.upsert_model(entry.model_row())
            prov = provenance.checkpoint_provenance(
                run_id=run_id, entry=entry, loaded=loaded, probe_set=probe_set,
                seed=self.options.seed, device_name=self.device_name,
                allow_tf32=self.options.allow_tf32)
            ctx = self._context(entry, model=model, probe_set=probe_set, requested=requested)
            outcomes += self._run_specs(ckpt_specs, ctx, prov, label=entry.id)
        return outcomes

    def _load(self, entry, specs: list[MeasureSpec]):
        from bench.models.loading import load_model, scored_model
        from bench.probes import load_probe_set

        loaded = load_model(entry, self.options.weights, seed=self.options.seed)
        model = scored_model(entry, loaded).to(self.options.device)
        probe_set = load_probe_set(self.options.probes, entry.data_config.model_dump(),
                                   limit=self.options.images)
        if any(s.needs_labels for s in specs) and probe_set.labels is None:
            raise BenchError(f"probe set {probe_set.id} has no labels, which "
                             f"{', '.join(s.name for s in specs if s.needs_labels)} needs",
                             "use a labelled probe set (folder:<path> with class folders, or hf:<id>)")
        return loaded, probe_set, model

    def _context(self, entry, *, model, probe_set, requested) -> ScoreContext:
        return ScoreContext(
            entry=entry, device=self.options.device, seed=self.options.seed, params={},
            model=model,
            images=probe_set.images if probe_set is not None else None,
            labels=probe_set.labels if probe_set is not None else None,
            batch_size=self.options.batch_size, requested=requested, progress=self.progress)

    def _run_specs(self, specs: list[MeasureSpec], ctx: ScoreContext, prov: dict[str, Any],
                   label: str) -> list[Outcome]:
        outcomes = []
        for spec in specs:
            params = resolved_params(spec, self.options.params.get(spec.name, {}))
            request = {"params": params, "images": self.options.images,
                       "probes": self.options.probes if spec.scope == "checkpoint" else None}
            identity = {**prov, "measure": spec.name, "measure_version": spec.version,
                        "request_hash": params_hash(request)}
            if not self.options.force and self.store.has_measurement(identity):
                outcomes.append(Outcome(label, spec.name, "skipped"))
                continue
            ctx.params = params
            with track_usage(ctx.device) as usage:
                try:
                    results = spec.run(ctx)
                except UndefinedMeasure as exc:
                    results = [Measurement.undefined(spec.name, spec.version, str(exc))]
            rows = [self._row(m, prov, identity["request_hash"], params, usage) for m in results]
            self.store.insert("measurements", rows)
            headline = next((r for r in rows if r["layer"] is None), rows[0] if rows else None)
            outcomes.append(Outcome(label, spec.name,
                                    headline["status"] if headline else "undefined", headline))
        return outcomes

    @staticmethod
    def _row(m: Measurement, prov: dict[str, Any], request_hash: str, params: dict[str, Any],
             usage) -> dict[str, Any]:
        # The stored protocol is what was asked for, completed by what the measure resolved.
        row = measurement_row(replace(m, params={**params, **m.params}), prov)
        row.update(request_hash=request_hash, wall_time_s=usage.wall_time_s,
                   peak_memory_mb=usage.peak_memory_mb)
        return row


def summary_rows(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    """Rows of the table ``bench score`` prints at the end."""
    table = []
    for o in outcomes:
        r = o.row or {}
        table.append({
            "model": o.model, "measure": o.measure, "status": o.status,
            "value": r.get("value"), "stderr": r.get("stderr"),
            "95% CI": (f"[{r['ci_low']:.4g}, {r['ci_high']:.4g}]"
                       if r.get("ci_low") is not None and r.get("ci_high") is not None else ""),
            "n": r.get("n_images"), "time (s)": r.get("wall_time_s"),
            "reason": r.get("reason") or "",
        })
    return table
