"""Datasets read from their real published on-disk formats."""
from torch.utils.data import Dataset

from .core import Registry

DATASETS = Registry(
    "datasets",
    contract=(
        "factory(root, split, **options) -> torch Dataset with a `.metadata` "
        "(flexcore.data.DatasetMetadata); `factory.describe(**options)` gives the metadata "
        "without reading files"
    ),
    base_type=Dataset,
    builtins=["flexcore.data"],
)
