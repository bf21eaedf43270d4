"""Plain PyTorch, no nnmanifold: train a handful of small networks of our own design on
scikit-learn's digits and save their checkpoints, as any training code would.

    python digits_nets.py --out checkpoints --epochs 20

writes checkpoints/<arch>_<seed>.pt (state dicts). ``config.yaml`` beside this file maps them
beside a trained zoo; its ``place`` section places the networks saved under ``to_place/``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn


def small_cnn(channels: int = 8) -> nn.Module:
    """Two 3x3 convolutions with BatchNorm, global average pooling, a linear read-out."""
    return nn.Sequential(
        nn.Conv2d(1, channels, 3, padding=1),
        nn.BatchNorm2d(channels),
        nn.ReLU(),
        nn.Conv2d(channels, 2 * channels, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * channels, 10),
    )


def wide_mlp(width: int = 32) -> nn.Module:
    """One hidden tanh layer, with dropout (an extra module that shifts the indices after it)."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, width), nn.Tanh(), nn.Dropout(0.1), nn.Linear(width, 10)
    )


ARCHITECTURES = {"cnn": small_cnn, "mlp": wide_mlp}


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """The digits training split as (N, 1, 8, 8) inputs in [0, 1] and labels."""
    data = load_digits()
    x_train, _, y_train, _ = train_test_split(
        data.data / 16.0, data.target, test_size=0.3, random_state=0, stratify=data.target
    )
    return torch.tensor(x_train, dtype=torch.float32).reshape(-1, 1, 8, 8), torch.tensor(y_train)


def train(arch: str, seed: int, epochs: int, x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    """Adam on mini-batches of 64 for ``epochs`` epochs."""
    torch.manual_seed(seed)
    net = ARCHITECTURES[arch]()
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    net.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(x)).split(64):
            optimiser.zero_grad()
            nn.functional.cross_entropy(net(x[batch]), y[batch]).backward()
            optimiser.step()
    return net.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("checkpoints"))
    parser.add_argument("--place-out", type=Path, default=Path("to_place"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3, help="networks per architecture")
    args = parser.parse_args()
    x, y = digits()
    for folder, seeds in ((args.out, range(args.seeds)), (args.place_out, [100])):
        folder.mkdir(parents=True, exist_ok=True)
        for arch in ARCHITECTURES:
            for seed in seeds:
                net = train(arch, seed, args.epochs, x, y)
                torch.save(net.state_dict(), folder / f"{arch}_{seed}.pt")
                print(f"saved {folder / f'{arch}_{seed}.pt'}")


if __name__ == "__main__":
    main()
