"""Cost of one initialization sample of ``ag``, as a ratio to the architecture's own forward+backward.

For each architecture, in one run: one plain forward+backward (input gradients of a
batch of ``--inputs`` images at 32 px, parameters frozen), one fresh construction,
one in-place re-initialization, and the time per initialization of
``average_geometry_matrix`` (draw + gradients + Gram accumulation, averaged over
``--inits``, less the one-off check of the re-initialization recipe). The ideal ratio is (draw + F + B + Gram) / (F + B) with the draw as
cheap as possible; "construct" vs "reinit" says which draw the measure uses and why.

    python benchmarks/bench_ag.py --arch cifar_resnet20 --arch gih_mlp --arch resnet18
"""

from __future__ import annotations

import argparse
import time

import torch

import bench.models  # noqa: F401  registers cifar_resnet*, gih_mlp
from bench.measures.ag import average_geometry_matrix, mean_logit_gradients
from bench.models.architecture import initializer, reinitialize, resolve_architecture
from _timing import timed  # benchmarks/_timing.py, beside this script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", action="append", help="registry id or timm name (repeatable)")
    parser.add_argument("--inits", type=int, default=32)
    parser.add_argument("--inputs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"device={device} threads={torch.get_num_threads()} inputs/init={args.inputs} 32 px")
    print(f"{'arch':24s} {'fwd+bwd':>9s} {'construct':>10s} {'reinit':>9s} {'per init':>9s} "
          f"{'ratio':>7s}  draw")
    for name in args.arch or ["cifar_resnet20", "gih_mlp", "resnet18"]:
        arch = resolve_architecture(name, 32)
        start = time.perf_counter()
        draws = initializer(arch, device)
        check = time.perf_counter() - start  # one-off, part of the measure below: subtracted
        model = draws.draw(torch.Generator().manual_seed(0))
        x = 1e-3 * torch.randn(args.inputs, 3, 32, 32, device=device)
        gen = torch.Generator().manual_seed(1)
        times = timed({"fwd_bwd": lambda: mean_logit_gradients(model, x), "construct": arch.factory,
                       "reinit": lambda: reinitialize(model, gen)}, device, args.repeats)
        fwd_bwd, construct, reinit = (times[k].median for k in ("fwd_bwd", "construct", "reinit"))
        start = time.perf_counter()
        average_geometry_matrix(arch.factory, 32, args.inits, args.inputs, seed=0, device=device)
        per_init = (time.perf_counter() - start - check) / args.inits
        print(f"{name:24s} {fwd_bwd * 1e3:8.1f}ms {construct * 1e3:9.1f}ms {reinit * 1e3:8.1f}ms "
              f"{per_init * 1e3:8.1f}ms {per_init / fwd_bwd:6.1f}x  {draws.method}")


if __name__ == "__main__":
    main()
