"""``tridense.data`` exports the dataset classes, importing none of them (nor h5py / SciPy) until asked."""

from __future__ import annotations

import subprocess
import sys

import tridense.data as data
from tridense.data.base import DenseDataset


def test_dataset_classes_are_exported():
    for name in ("SyntheticScenes", "NYUv2Labeled", "NYUv2MultiTask", "NYUv2Preprocessed", "NYUv2Raw",
                 "NYUv2Folder", "SUNRGBD", "KITTIDepth", "Stanford2D3DS", "FolderDataset"):  # fmt: skip
        cls = getattr(data, name)
        assert issubclass(cls, DenseDataset) and cls.__name__ == name
    assert set(data.__all__) <= set(dir(data))
    from tridense.data.nyu.labeled import NYUv2Labeled

    assert data.NYUv2Labeled is NYUv2Labeled  # the same class by either path


def test_import_has_no_heavy_side_effects():
    code = (
        "import sys, tridense.data, tridense.data.sample, tridense.tasks\n"
        "heavy = [m for m in ('h5py', 'scipy', 'tridense.data.nyu', 'tridense.data.synthetic') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "from tridense.data import SyntheticScenes\n"
        "assert 'tridense.data.synthetic' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
