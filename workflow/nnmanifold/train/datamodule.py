"""The Lightning data module of one-model training: a Dataset's splits, shuffled by seed."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Sampler, TensorDataset

from nnmanifold.zoo.data import Dataset, data_order_seed


class EpochShuffleSampler(Sampler[int]):
    """Shuffles by (seed, epoch) only, so a resumed run replays the same order."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(data_order_seed(self.seed, self.epoch))
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


class ArrayDataModule(pl.LightningDataModule):
    """Serves a Dataset's train split (seeded shuffling) and test split to the Trainer."""

    def __init__(self, dataset: Dataset, batch_size: int, seed: int) -> None:
        super().__init__()
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed

    def train_dataloader(self) -> DataLoader:
        ds = TensorDataset(
            torch.from_numpy(self.dataset.x_train), torch.from_numpy(self.dataset.y_train)
        )
        return DataLoader(ds, self.batch_size, sampler=EpochShuffleSampler(len(ds), self.seed))

    def test_dataloader(self) -> DataLoader:
        ds = TensorDataset(
            torch.from_numpy(self.dataset.x_test), torch.from_numpy(self.dataset.y_test)
        )
        return DataLoader(ds, batch_size=1024)
