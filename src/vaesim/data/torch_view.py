"""A torch ``Dataset`` view of a :class:`GroundTruthDataset` (DataLoader-friendly)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


class TorchGroundTruth(Dataset):
    """item -> (float32 tensor (C, 64, 64) in [0, 1], int64 tensor (F,)).

    ``__getitems__`` (used by ``DataLoader`` with automatic batching since
    torch 2.2) fetches a whole batch with one vectorised call instead of B
    single-item calls.
    """

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, factors = self.dataset[int(index)]
        return torch.from_numpy(image), torch.from_numpy(factors)

    def __getitems__(self, indices):
        idx = np.asarray(indices, dtype=np.int64)
        images = torch.from_numpy(self.dataset.images(idx))
        factors = torch.from_numpy(self.dataset.factors(idx))
        return [(images[i], factors[i]) for i in range(len(idx))]
