"""A small, realistic results database for the export, site and submission tests.

Rows are made the way ``bench score`` makes them: ``Measurement`` objects turned
into rows by ``bench.store.rows.measurement_row`` with a provenance dict. It holds
checkpoint-level headline rows (with overlapping and separated intervals), per-layer
rows (rf, mftma), arrays (rf curve, volume maps, ag spectrum, plane curve), an
undefined row, a random-weights row and architecture-level rows.
"""

from __future__ import annotations

import hashlib
import math
from datetime import timedelta

import numpy as np

from bench.measures._types import Measurement
from bench.store import rows
from bench.store.db import Store
from bench.store.rows import params_hash

HOSTILE = '</script><script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'

MODELS = [
    dict(model_id="resnet18.a1_in1k", timm_name="resnet18", tag="a1_in1k", family="resnet",
         hub_id="timm/resnet18.a1_in1k", license="apache-2.0", paper="https://arxiv.org/abs/2110.00476",
         pretraining_data="imagenet-1k", num_classes=1000, input_size=224, param_count=11_689_512,
         imagenet_top1=71.49),
    dict(model_id="resnet50.a1_in1k", timm_name="resnet50", tag="a1_in1k", family="resnet",
         hub_id="timm/resnet50.a1_in1k", license="apache-2.0", paper="https://arxiv.org/abs/2110.00476",
         pretraining_data="imagenet-1k", num_classes=1000, input_size=224, param_count=25_557_032,
         imagenet_top1=80.10),
    dict(model_id="vit_tiny_patch16_224.augreg_in21k_ft_in1k", timm_name="vit_tiny_patch16_224",
         tag="augreg_in21k_ft_in1k", family="vit", hub_id="timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k",
         license="apache-2.0", paper="https://arxiv.org/abs/2106.10270", pretraining_data="imagenet-21k",
         num_classes=1000, input_size=224, param_count=5_717_416, imagenet_top1=75.45),
    dict(model_id="convnext_atto.d2_in1k", timm_name="convnext_atto", tag="d2_in1k", family="convnext",
         hub_id="timm/convnext_atto.d2_in1k", license="apache-2.0", paper="https://arxiv.org/abs/2201.03545",
         pretraining_data="imagenet-1k", num_classes=1000, input_size=224, param_count=3_708_400,
         imagenet_top1=None),
]

# headline (value, stderr) per model: resnet18/resnet50 gc intervals overlap, the others do not
GC = {"resnet18.a1_in1k": (1520.0, 40.0), "resnet50.a1_in1k": (1580.0, 45.0),
      "vit_tiny_patch16_224.augreg_in21k_ft_in1k": (310.0, 12.0), "convnext_atto.d2_in1k": (820.0, 30.0)}
RF = {"resnet18.a1_in1k": (0.021, 0.002), "resnet50.a1_in1k": (0.012, 0.001),
      "vit_tiny_patch16_224.augreg_in21k_ft_in1k": (0.035, 0.004), "convnext_atto.d2_in1k": (0.018, 0.002)}
MAGNIFICATION = {"resnet18.a1_in1k": (0.41, 0.03), "vit_tiny_patch16_224.augreg_in21k_ft_in1k": (0.22, 0.04)}
LAYERS = [("stem", 0.0), ("stages.0", 0.25), ("stages.1", 0.5), ("stages.2", 0.75), ("pre_logits", 1.0)]
GRID = 12


def _m(measure: str, value: float, stderr: float, **kw) -> Measurement:
    return Measurement(measure=measure, version=1, value=value, stderr=stderr,
                       ci_low=value - 1.96 * stderr, ci_high=value + 1.96 * stderr, **kw)


def _provenance(run_id: str, model: dict, *, scope: str = "checkpoint", weights: str = "pretrained",
                seed: int = 0) -> dict:
    return dict(
        run_id=run_id, scope=scope, model_id=model["model_id"], timm_name=model["timm_name"],
        tag=model.get("tag"), weights=weights,
        weights_ref=model.get("hub_id") if weights == "pretrained" else "timm-default-init",
        weights_hash=hashlib.sha256(f"{model['model_id']}/{weights}".encode()).hexdigest(),
        seed=seed, probe_set_id=None if scope == "architecture" else "imagenet-val-mini@1",
        probe_set_hash=None if scope == "architecture" else "9f2c1e77ab00d3e1",
        device="cpu", dtype="float32", allow_tf32=False, wall_time_s=12.5, peak_memory_mb=None,
        torch_version="2.14.1", timm_version="1.0.31", bench_version="0.1.0")


def _volume_maps(rng: np.random.Generator) -> dict[str, list[float]]:
    """A G x G plane with three predicted regions and high log volume near their boundaries."""
    u, v = np.meshgrid(np.linspace(-1, 1, GRID), np.linspace(-1, 1, GRID))
    angle = np.arctan2(v, u)
    pred = np.digitize(angle, [-1.0, 1.2]).astype(float)
    boundary_distance = np.min(np.abs(np.stack([angle + 1.0, angle - 1.2])), axis=0)
    logvol = -2.0 - boundary_distance + 0.05 * rng.standard_normal((GRID, GRID))
    entropy = np.exp(-3 * boundary_distance)
    return {"plane0_logvol": logvol.ravel().tolist(), "plane0_entropy": entropy.ravel().tolist(),
            "plane0_pred": pred.ravel().tolist()}


def checkpoint_measurements(model: dict, rng: np.random.Generator) -> list[Measurement]:
    mid = model["model_id"]
    out = [_m("gc", *GC[mid], n=500, params={"images": 500, "probes": 8, "estimator": "hutchinson"},
              extras={"exact": False})]
    rf_value, rf_err = RF[mid]
    out.append(_m("rf", rf_value, rf_err, n=500, draws=2,
                  params={"cutoff": 3, "delta": 1.0, "draws": 2, "images": 500},
                  extras={"d_f": rf_value * 0.3, "g_f": 0.3, "rf_median": rf_value * 0.7},
                  arrays={"delta": [0.5, 1.0, 2.0, 4.0],
                          "rf": [rf_value * f for f in (0.6, 1.0, 1.5, 2.1)]}))
    for layer, depth in LAYERS:
        out.append(_m("rf", 1.0 / (1 + 3 * depth) * (1 + 0.1 * rng.standard_normal()), 0.02, n=500,
                      draws=2, layer=layer, depth=depth, params={"cutoff": 3, "delta": 1.0, "draws": 2,
                                                                 "images": 500, "per_layer": True}))
        capacity = 0.04 + 0.3 * depth ** 2
        out.append(Measurement(measure="mftma", version=1, value=capacity, n=2500, layer=layer, depth=depth,
                               params={"P": 50, "M": 50, "kappa": 0.0, "n_t": 200},
                               extras={"radius": 1.5 - depth, "dimension": 36.0 - 20 * depth,
                                       "center_corr": 0.01 + 0.2 * depth}))
    if mid in MAGNIFICATION:
        out.append(_m("volume", *MAGNIFICATION[mid], n=8 * GRID * GRID,
                      params={"planes": 8, "grid": GRID}, extras={"boundary_ratio": 1.3, "mean_logvol": -2.4},
                      arrays=_volume_maps(rng)))
    else:
        out.append(Measurement.undefined("volume", 1, "penultimate features are constant on the plane",
                                         params={"planes": 8, "grid": GRID}))
    return out


def architecture_measurements(timm_name: str, rank: float) -> list[Measurement]:
    spectrum = [math.exp(-k / (40 * rank)) for k in range(64)]
    ag = _m("ag", rank, rank * 0.02, n=4096, draws=16, params={"resolution": 32, "n_inits": 16},
            extras={"erank": rank * 3072, "k90": int(rank * 2000)}, arrays={"spectrum": spectrum})
    acc = [0.98, 0.97 - (1 - rank) * 0.3, 0.96 - (1 - rank) * 0.4, 0.95 - (1 - rank) * 0.45]
    plane_value = (acc[3] - 0.5) / (acc[0] - 0.5)
    plane = _m("plane", plane_value, 0.03, n=2000, draws=3, params={"preset": "quick", "seeds": 3},
               arrays={"phi": [0.0, 30.0, 60.0, 90.0], "acc_mean": acc, "acc_std": [0.01] * 4})
    return [ag, plane]


def _row(m: Measurement, provenance: dict) -> dict:
    """A row as the harness writes it: the measurement, its provenance and the request hash."""
    row = rows.measurement_row(m, provenance)
    row["request_hash"] = params_hash({"params": m.params})
    return row


def build_synthetic_store(path, *, hostile: bool = False) -> Store:
    """A store with two finished runs over the models above (``hostile`` puts HTML into text)."""
    rng = np.random.default_rng(0)
    store = Store(path)
    models = [dict(m) for m in MODELS]
    if hostile:
        models[0]["family"] = HOSTILE
        models[0]["pretraining_data"] = "<b>bold</b> & co"
    run_a = store.start_run("bench score --model resnet18.a1_in1k --model resnet50.a1_in1k", "0.1.0")
    run_b = store.start_run("bench score --all", "0.1.0")
    for model in models:
        store.upsert_model(model)
    measurement_rows = []
    for model in models:
        run = run_a if model["timm_name"].startswith("resnet") else run_b
        for m in checkpoint_measurements(model, rng):
            measurement_rows.append(_row(m, _provenance(run, model)))
    # a random-weights control row, which the ranking of pretrained checkpoints must not mix in
    measurement_rows.append(_row(_m("gc", 5.0, 0.5, n=4, params={"images": 4}),
                                 _provenance(run_b, models[0], weights="random")))
    for timm_name, rank in (("resnet18", 0.21), ("vit_tiny_patch16_224", 0.93)):
        arch = {"model_id": timm_name, "timm_name": timm_name, "tag": None}
        for m in architecture_measurements(timm_name, rank):
            measurement_rows.append(_row(m, _provenance(run_b, arch, scope="architecture", weights="init")))
    # distinct, increasing creation times, as a real run writes them
    base = measurement_rows[0]["created_at"]
    for i, row in enumerate(measurement_rows):
        row["created_at"] = base + timedelta(milliseconds=i)
    store.insert("measurements", measurement_rows)
    store.finish_run(run_a, "finished")
    store.finish_run(run_b, "finished")
    return store
