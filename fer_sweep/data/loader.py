"""A DataLoader-backed stand-in for :class:`DeviceBatches`, for data that does not fit in memory.

`DeviceBatches` holds a whole split on the training device. `StreamingBatches` keeps the images where they
are (a uint8 array, or a memory-mapped ``.npy`` file opened with ``np.load(mmap_mode="r")``) and reads one
batch at a time in torch DataLoader workers, then moves it to the device. It has the same interface
(``device``, ``labels``, ``__len__``, ``num_batches``, ``batches``) and draws the same permutation from the
same generator at the same moment, so for one seed it yields exactly the batches `DeviceBatches` yields,
and `fit`/`evaluate` accept either.

Labels are small (8 bytes per image) and are kept on the device, as `evaluate` compares against them.

    write_npy(data, "cache/fer2013")                # once: images.npy (uint8 N x 48 x 48), labels.npy
    train = StreamingBatches.from_npy("cache/fer2013", device="cuda", num_workers=4)
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, List, Optional, Tuple, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from fer_sweep.data.arrays import IMAGE_SIZE, FERArrays
from fer_sweep.data.batches import Batches

ArrayOrPath = Union[np.ndarray, str, os.PathLike]
IMAGES_FILE, LABELS_FILE = "images.npy", "labels.npy"


def write_npy(data: FERArrays, folder: str | os.PathLike) -> Tuple[Path, Path]:
    """Write data's images (uint8 N x 48 x 48) and labels (int64 N) as .npy files for memory-mapping."""
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / IMAGES_FILE, folder / LABELS_FILE
    for path, array in zip(paths, (np.ascontiguousarray(data.images, dtype=np.uint8),
                                   np.ascontiguousarray(data.labels, dtype=np.int64))):
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, array)
        os.replace(tmp, path)
    return paths


class _IndexBatchDataset(Dataset):
    """dataset[index_array] -> uint8 images (B, 1, 48, 48) as a tensor; one call per batch, not per image.

    A path is opened lazily, in whichever process reads, so workers map the file themselves (a pickled
    np.memmap would be copied into every worker in full).
    """

    def __init__(self, images: ArrayOrPath):
        self._path = None if isinstance(images, np.ndarray) else str(Path(images).expanduser())
        self._images = images if isinstance(images, np.ndarray) else None

    @property
    def images(self) -> np.ndarray:
        if self._images is None:
            self._images = np.load(self._path, mmap_mode="r")
        return self._images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: np.ndarray) -> torch.Tensor:
        index = np.asarray(index)
        if isinstance(self.images, np.memmap) and len(index) > 1:
            # Read a memory-mapped file in ascending order (sequential pages), then restore the batch order.
            order = np.argsort(index, kind="stable")
            batch = np.empty((len(index), *self.images.shape[1:]), dtype=self.images.dtype)
            batch[order] = self.images[index[order]]
        else:
            batch = self.images[index]
        return torch.from_numpy(np.ascontiguousarray(batch)).unsqueeze(1)

    def __getstate__(self):
        state = dict(self.__dict__)
        if self._path is not None:
            state["_images"] = None  # workers re-open the memory map
        return state


def _as_tensor(batch: torch.Tensor) -> torch.Tensor:
    """collate_fn: the dataset already returns a whole batch as a tensor."""
    return batch


class StreamingBatches(Batches):
    """Images and labels of one split, streamed batch by batch from host memory or disk to `device`.

    images: a uint8 (N, 48, 48) array, a memory-mapped one, or the path of such a ``.npy`` file.
    labels: int (N,) array or the path of a ``.npy`` file (loaded into memory: it is small).
    num_workers / prefetch_factor / pin_memory: as for torch's DataLoader (pin_memory defaults to True on CUDA).
    """

    def __init__(self, images: ArrayOrPath, labels: ArrayOrPath, device: torch.device | str = "cpu",
                 num_workers: int = 0, prefetch_factor: Optional[int] = None, pin_memory: Optional[bool] = None):
        self.device = torch.device(device)
        self.dataset = _IndexBatchDataset(images)
        shape, dtype = self.dataset.images.shape, self.dataset.images.dtype
        if dtype != np.uint8 or tuple(shape[1:]) != (IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"images must be uint8 (N, 48, 48), got {dtype} {tuple(shape)}")
        if not isinstance(labels, np.ndarray):
            labels = np.load(Path(labels).expanduser())
        if len(labels) != shape[0]:
            raise ValueError(f"{len(labels)} labels for {shape[0]} images")
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64).copy()).to(self.device)
        self.num_workers = int(num_workers)
        self.prefetch_factor = prefetch_factor if self.num_workers > 0 else None
        self.pin_memory = self.device.type == "cuda" if pin_memory is None else bool(pin_memory)

    @classmethod
    def from_arrays(cls, data: FERArrays, device: torch.device | str = "cpu", **loader_options) -> "StreamingBatches":
        return cls(data.images, data.labels, device, **loader_options)

    @classmethod
    def from_npy(cls, folder: str | os.PathLike, device: torch.device | str = "cpu",
                 **loader_options) -> "StreamingBatches":
        """Memory-map folder/images.npy and load folder/labels.npy (as written by :func:`write_npy`)."""
        folder = Path(folder).expanduser()
        return cls(folder / IMAGES_FILE, folder / LABELS_FILE, device, **loader_options)

    def _index_batches(self, order: Optional[torch.Tensor], batch_size: int, drop_last: bool) -> List[np.ndarray]:
        n = len(self)
        index = np.arange(n) if order is None else order.cpu().numpy()
        return [index[k * batch_size:min((k + 1) * batch_size, n)]
                for k in range(self.num_batches(batch_size, drop_last))]

    def batches(self, batch_size: int, shuffle: bool = False, generator: Optional[torch.Generator] = None,
                drop_last: bool = False) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        """Yield (uint8 images (B,1,48,48), int64 labels (B,)) on the device, as DeviceBatches.batches does."""
        # Same draw, same moment (the first next()), as DeviceBatches, so the generator's later draws
        # (augmentation) match too.
        order = torch.randperm(len(self), generator=generator) if shuffle else None
        index_batches = self._index_batches(order, batch_size, drop_last)
        loader = DataLoader(self.dataset, batch_size=None, sampler=index_batches, num_workers=self.num_workers,
                            collate_fn=_as_tensor, pin_memory=self.pin_memory, prefetch_factor=self.prefetch_factor,
                            generator=torch.Generator().manual_seed(0))  # never touch the global RNG
        for index, images in zip(index_batches, loader):
            idx = torch.from_numpy(index).to(self.device)
            yield images.to(self.device, non_blocking=True), self.labels[idx]
