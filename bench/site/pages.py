"""The content of one model page: layer profiles, curves, maps, deformations, every stored row."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

from markupsafe import Markup

from bench.site import images
from bench.site.data import label
from bench.site.svg import Series, fmt, line_chart

ImageWriter = Callable[[str, bytes], str]  # (file name, PNG bytes) -> src relative to the page

_DEFAULT_CUTOFF, _DEFAULT_DELTA = 3.0, 1.0


@dataclass
class Figure:
    title: str
    svg: Markup | None = None
    images: list[tuple[str, str]] = field(default_factory=list)  # (caption, src)
    caption: str = ""


def _latest(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The newest row per (measure, weights)."""
    best: dict[tuple, dict] = {}
    for r in sorted(rows, key=lambda r: r["created_at"]):
        best[(r["measure"], r["weights"])] = r
    return list(best.values())


def _arrays(row: dict[str, Any]) -> dict[str, list[float]]:
    return {a["name"]: a["values"] or [] for a in row["arrays"] or []}


def _numeric_extras(row: dict[str, Any]) -> dict[str, float]:
    extras = json.loads(row["extras"]) if row["extras"] else {}
    return {k: float(v) for k, v in extras.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


# Secondary per-layer quantities worth a profile of their own (diagnostics such as
# solver residuals or feature counts stay in the table of stored values).
PROFILE_EXTRAS = {"mftma": ("radius", "dimension", "center_corr"), "rf": ("d_f", "g_f")}


def layer_profiles(rows: list[dict[str, Any]]) -> list[Figure]:
    """Per measure, value over relative depth (one line per weights), and its PROFILE_EXTRAS."""
    per_layer = [r for r in rows if r["layer"] is not None and r["status"] == "ok" and r["value"] is not None]
    runs: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in per_layer:
        runs[(r["measure"], r["weights"])][r["run_id"] + r["params_hash"]].append(r)
    newest: dict[str, dict[str, list[dict]]] = defaultdict(dict)
    for (measure, weights), groups in sorted(runs.items()):
        group = max(groups.values(), key=lambda g: max(r["created_at"] for r in g))
        newest[measure][weights] = sorted(group, key=lambda r: r["layer_depth"])
    figures = []
    for measure, by_weights in newest.items():
        series = [Series(w, [r["layer_depth"] for r in g], [r["value"] for r in g],
                         [r["ci_low"] for r in g], [r["ci_high"] for r in g]) for w, g in by_weights.items()]
        layers = ", ".join(r["layer"] for r in next(iter(by_weights.values())))
        figures.append(Figure(f"{label(measure)} by layer", line_chart(
            series, x_label="relative depth", y_label=label(measure), title=f"{measure} per layer"),
            caption=f"Layers: {layers}."))
        stored = {k for g in by_weights.values() for r in g for k in _numeric_extras(r)}
        for key in (k for k in PROFILE_EXTRAS.get(measure, ()) if k in stored):
            def extra(r, suffix=""):
                return _numeric_extras(r).get(key + suffix)
            series = [Series(w, [r["layer_depth"] for r in g], [extra(r) for r in g],
                             [extra(r, "_ci_low") for r in g], [extra(r, "_ci_high") for r in g])
                      for w, g in by_weights.items()]
            figures.append(Figure(f"{label(measure)}: {key} by layer", line_chart(
                series, x_label="relative depth", y_label=key, title=f"{measure} {key} per layer")))
    return figures


def curves(rows: list[dict[str, Any]]) -> list[Figure]:
    """Curves and spectra stored with headline rows: rf over delta, plane accuracy over phi, spectra."""
    figures = []
    for r in _latest([r for r in rows if r["layer"] is None and r["status"] == "ok"]):
        arrays, m = _arrays(r), r["measure"]
        if "delta" in arrays and m in arrays:
            figures.append(Figure(f"{label(m)} over the deformation size", line_chart(
                [Series(r["weights"], arrays["delta"], arrays[m])], x_label="delta (px)", y_label=label(m),
                title=f"{m} sweep")))
        if "phi" in arrays and "acc_mean" in arrays:
            mean, std = arrays["acc_mean"], arrays.get("acc_std") or [None] * len(arrays["acc_mean"])
            figures.append(Figure("Test accuracy over the plane's rotation", line_chart(
                [Series("accuracy", arrays["phi"], mean,
                        [a - s if s is not None else None for a, s in zip(mean, std)],
                        [a + s if s is not None else None for a, s in zip(mean, std)])],
                x_label="phi (degrees)", y_label="test accuracy", title="plane rotation", log_y=False),
                caption="Mean ± spread over seeds."))
        if arrays.get("spectrum"):
            spectrum = arrays["spectrum"]
            figures.append(Figure(f"{label(m)}: normalized spectrum", line_chart(
                [Series(r["weights"], list(range(1, len(spectrum) + 1)), spectrum)], x_label="eigenvalue index",
                y_label="lambda / lambda_1", title=f"{m} spectrum", log_y=True)))
    return figures


def volume_maps(rows: list[dict[str, Any]], slug: str, write: ImageWriter) -> list[Figure]:
    """Log volume element and predictive entropy maps of the stored planes, boundaries in white."""
    figures = []
    for r in _latest([r for r in rows if r["measure"] == "volume" and r["layer"] is None
                      and r["status"] == "ok"]):
        arrays = _arrays(r)
        k = 0
        while f"plane{k}_logvol" in arrays:
            logvol = images.square(arrays[f"plane{k}_logvol"])
            pred = images.square(arrays.get(f"plane{k}_pred", []))
            entropy = images.square(arrays.get(f"plane{k}_entropy", []))
            if logvol is not None:
                pictures = [("log volume element", write(f"{slug}-{r['weights']}-plane{k}-logvol.png",
                                                         images.map_png(logvol, pred)))]
                if entropy is not None:
                    pictures.append(("predictive entropy", write(f"{slug}-{r['weights']}-plane{k}-entropy.png",
                                                                 images.map_png(entropy, pred))))
                figures.append(Figure(f"Plane {k} ({r['weights']} weights)", images=pictures,
                                      caption=f"{logvol.shape[0]}×{logvol.shape[1]} grid; white: decision "
                                              "boundaries (a neighbour has another predicted class); "
                                              "colour: low (purple) to high (yellow)."))
            k += 1
    return figures


def diffeo_figure(rows: list[dict[str, Any]], input_size: int | None, write: ImageWriter) -> Figure | None:
    """The photograph deformed as the rf protocol of this model deforms its probe images."""
    rf = [r for r in rows if r["measure"] == "rf" and r["layer"] is None]
    params = json.loads(rf[-1]["params"]) if rf else {}
    cutoff = float(params.get("cutoff", _DEFAULT_CUTOFF))
    delta = float(params.get("delta", _DEFAULT_DELTA))
    n = int(input_size or 224)
    try:
        from bench.measures.diffeo import t_max
    except ImportError:
        return None
    # the largest delta without fold-over: T(delta) = 4 delta^2 / (pi n^2 ln c) = T_max
    largest = n * math.sqrt(t_max(cutoff) * math.pi * math.log(cutoff) / 4)
    deltas = [delta] + [d for d in (4 * delta, 16 * delta) if d <= largest]
    if len(deltas) < 3 and 0.9 * largest > deltas[-1]:
        deltas.append(round(0.9 * largest, 1))
    key = f"diffeo-n{n}-c{fmt(cutoff)}-" + "-".join(fmt(d) for d in deltas)
    examples = images.diffeo_examples(n, cutoff, tuple(deltas))
    if examples is None:
        return None
    pictures = [("original" if d == 0 else f"δ = {fmt(d)} px" + (" (protocol)" if d == delta else ""),
                 write(f"{key}-{i}.png", png)) for i, (d, png) in enumerate(examples)]
    return Figure("Diffeomorphism examples", images=pictures,
                  caption=f"Random maximum-entropy diffeomorphisms (cutoff c = {fmt(cutoff)}) at the model's "
                          f"input resolution {n} px, applied to a CC0 photograph; the protocol uses "
                          f"δ = {fmt(delta)} px; larger δ (up to the largest without fold-over) make the "
                          "deformation visible.")


def stored_rows(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Every row as display strings, with its full protocol."""
    out = []
    for r in sorted(rows, key=lambda r: (r["scope"], r["measure"], r["weights"],
                                        -1 if r["layer_depth"] is None else r["layer_depth"], r["created_at"])):
        arrays = ", ".join(f"{a['name']}[{len(a['values'] or [])}]" for a in r["arrays"] or [])
        out.append({
            "scope": r["scope"], "measure": r["measure"], "version": str(r["measure_version"]),
            "layer": r["layer"] or "", "depth": "" if r["layer_depth"] is None else fmt(r["layer_depth"]),
            "status": r["status"] + (f": {r['reason']}" if r["reason"] else ""),
            "value": "" if r["value"] is None else fmt(r["value"]),
            "stderr": "" if r["stderr"] is None else fmt(r["stderr"]),
            "ci": "" if r["ci_low"] is None else f"[{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]",
            "n": str(r["n_images"]), "draws": str(r["draws"]), "weights": r["weights"],
            "seed": str(r["seed"]), "probes": r["probe_set_id"] or "", "params": r["params"] or "",
            "extras": r["extras"] if r["extras"] not in (None, "{}") else "", "arrays": arrays,
            "run": r["run_id"], "created": r["created_at"].strftime("%Y-%m-%d %H:%M:%S"),
            "device": f"{r['device']} {r['dtype']}" + (" tf32" if r["allow_tf32"] else ""),
            "software": f"torch {r['torch_version']}, timm {r['timm_version']}, bench {r['bench_version']}",
            "time": "" if r["wall_time_s"] is None else f"{r['wall_time_s']:.1f} s",
        })
    return out
