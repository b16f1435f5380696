"""Words that describe the data: one line per column, a short definition per measure.

The dataset card and the leaderboard both read these, so a column is described in
one place. ``tests/test_export.py`` checks that every column of the schema has a
description, so a new column cannot ship undocumented.
"""

from __future__ import annotations

from typing import Mapping

PROTOCOL_VERSION = 1  # "Measurement protocol, version 1" of SPEC.md

COLUMN_DOCS: dict[str, str] = {
    # runs
    "run_id": "Id of the `bench score` invocation that produced the row.",
    "started_at": "When the run started (UTC).",
    "finished_at": "When the run ended (UTC); null while running.",
    "command": "The command line of the run.",
    # models
    "model_id": "Registry id of the checkpoint (`arch.tag`); the timm name for architecture-level rows.",
    "timm_name": "timm architecture name.",
    "tag": "timm pretrained tag of the checkpoint.",
    "family": "Architecture family (resnet, vit, convnext, ...).",
    "hub_id": "Hugging Face Hub id the weights come from.",
    "license": "License of the checkpoint's weights.",
    "paper": "Paper that introduced the checkpoint or architecture.",
    "pretraining_data": "Data the checkpoint was (pre)trained on.",
    "num_classes": "Number of output classes.",
    "input_size": "Eval resolution in pixels (H = W).",
    "param_count": "Number of parameters.",
    "imagenet_top1": "ImageNet-1k top-1 accuracy (%) reported for the checkpoint, where known.",
    # measurements
    "measurement_id": "Unique id of the measurement row.",
    "created_at": "When the row was written (UTC).",
    "scope": "`checkpoint` (a trained model) or `architecture` (a bare architecture at init or trained from scratch).",
    "weights": "Which weights were measured: pretrained, random, file or init.",
    "weights_ref": "Hub id, file name or init scheme of the weights.",
    "init": "Init scheme of the architecture-level row (the measurement's weights_ref).",
    "weights_hash": "sha256 of the weights, or the Hub revision.",
    "measure": "Measure id (see the measure definitions).",
    "measure_version": "Protocol version of the measure; rows of different versions never mix in a ranking.",
    "layer": "Layer name for per-layer rows; null for the whole model.",
    "layer_depth": "Relative depth of the layer in [0, 1]; null for the whole model.",
    "status": "Run status (running, finished, interrupted, failed) or row status (ok, undefined).",
    "reason": "Why the value is undefined, for undefined rows.",
    "value": "The measured value; null when undefined.",
    "stderr": "Standard error of the value (bootstrap over images and draws).",
    "ci_low": "Lower end of the 95% interval.",
    "ci_high": "Upper end of the 95% interval.",
    "n_images": "Number of probe images (or samples) the value is averaged over.",
    "draws": "Random draws per image (probes, diffeomorphisms, initializations).",
    "params": "Canonical JSON of every protocol parameter.",
    "params_hash": "Short hash of `params`.",
    "request_hash": "Hash of the parameters as requested (the key that skips work already done).",
    "extras": "JSON of secondary scalars (D_f, G_f, radius, dimension, ...).",
    "arrays": "Named float lists: curves, spectra and flattened grid maps.",
    "seed": "The one seed that drove every random draw of the run.",
    "probe_set_id": "Name and version of the probe image set.",
    "probe_set_hash": "Content hash of the probe image set.",
    "device": "Device the measurement ran on.",
    "dtype": "Floating point type used while measuring.",
    "allow_tf32": "Whether TF32 / reduced-precision matmul was allowed.",
    "wall_time_s": "Wall time of the measurement in seconds.",
    "peak_memory_mb": "Peak accelerator memory in MB (null on CPU).",
    "torch_version": "torch version.",
    "timm_version": "timm version.",
    "bench_version": "geometry-bench version.",
}

MEASURE_DOCS: dict[str, str] = {
    "gc": "Geometric complexity: mean over probe images of the squared Frobenius norm of the Jacobian of "
          "the logits with respect to the [0, 1] pixel input (exact for at most 100 classes, Hutchinson "
          "with 8 Rademacher probes otherwise). Dherin et al. 2022.",
    "gc_embedding": "Geometric complexity of the penultimate features instead of the logits.",
    "rf": "Relative stability to diffeomorphisms R_f = D_f / G_f: the logits' sensitivity to a random "
          "maximum-entropy diffeomorphism (cutoff 3, typical displacement 1 px) over their sensitivity to "
          "Gaussian noise of the same norm, both relative to the spread between images. Petrini et al. 2021.",
    "ag": "Average geometry rank (architecture-level): effective rank / d of G = E_theta E_x[grad s grad s^T] "
          "of the bare architecture at initialization, 3x32x32 inputs near the origin. Movahedi et al. 2025.",
    "ag_trained": "Effective rank of the data-averaged geometry E_x[J^T J] of a trained checkpoint, from "
                  "the Gram matrix of the kept vector-Jacobian products (capped by their number).",
    "plane": "Plane-rotation invariance (architecture-level): (acc(90) - 0.5) / (acc(0) - 0.5), clipped to "
             "[0, 1], for a two-class problem on a plane rotated away from the architecture's favoured "
             "directions; 1 means invariant. Movahedi et al. 2025.",
    "mftma": "Mean-field manifold capacity per layer (class or exemplar manifolds), with radius, dimension "
             "and centre correlation. Chung et al. 2018, Cohen et al. 2020, Stephenson et al. 2021.",
    "volume": "Magnification: Spearman correlation between the log volume element of the pulled-back "
              "metric of the penultimate features and the predictive entropy on planes through probe "
              "images. Zavatone-Veth et al. 2023.",
}


def measure_versions(data_versions: Mapping[str, set[int]] | None = None) -> dict[str, int | None]:
    """The current version of every known measure (``measure_specs()``), plus measures seen in data.

    A measure present in the data but unknown to this code (its module is not
    installed) maps to ``None``: the card and the site then say "unknown".
    """
    from bench.measures import measure_specs

    versions: dict[str, int | None] = {name: spec.version for name, spec in measure_specs().items()}
    for name in data_versions or {}:
        versions.setdefault(name, None)
    return dict(sorted(versions.items()))
