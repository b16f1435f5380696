"""Cost of one ``plane`` training run against a plain training loop of the same model and data.

The plain loop is the reference's shape: a ``DataLoader`` over a ``TensorDataset``
(shuffled batches of 128), SGD with momentum, cross-entropy, no schedule and no
clipping. The measure's loop adds the linear learning-rate schedule and the
gradient-norm clip and indexes device tensors directly. Same model, data, epochs.

    python benchmarks/bench_plane.py --arch cifar_resnet20 --n-train 2000 --epochs 1
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import bench.models  # noqa: F401  registers cifar_resnet*, gih_mlp
from bench.measures.plane import (
    BATCH,
    LR,
    MOMENTUM,
    NOISE_STD,
    draw_plane_data,
    embed_plane,
    train_and_test,
)
from bench.models.architecture import build_architecture


def plain_loop(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True)
    model.train()
    for _ in range(epochs):
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", action="append")
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    d = 3 * 32 * 32
    basis = torch.linalg.qr(torch.randn(d, 2))[0].T.to(device)
    gen = torch.Generator(device=device).manual_seed(0)
    train, test = draw_plane_data(args.n_train, d, gen, device), draw_plane_data(256, d, gen, device)
    x, xt = (embed_plane(t, basis[0], basis[1], NOISE_STD).reshape(-1, 3, 32, 32) for t in (train, test))
    print(f"device={device} threads={torch.get_num_threads()} n_train={args.n_train} epochs={args.epochs}")
    for name in args.arch or ["gih_mlp", "cifar_resnet20"]:
        times = {}
        for label in ("plain", "measure", "plain", "measure"):  # interleaved, the second pair counts
            model = build_architecture(name, 32, num_classes=2, seed=0).to(device)
            start = time.perf_counter()
            if label == "plain":
                plain_loop(model, x, train.labels, args.epochs)
            else:
                train_and_test(model, x, train.labels, xt, test.labels, args.epochs,
                               torch.Generator().manual_seed(0))
            times[label] = time.perf_counter() - start
        print(f"{name:20s} plain {times['plain']:7.2f}s  measure run {times['measure']:7.2f}s  "
              f"ratio {times['measure'] / times['plain']:5.2f}x")


if __name__ == "__main__":
    main()
