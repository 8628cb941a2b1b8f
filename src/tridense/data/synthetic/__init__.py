"""Procedural indoor scenes rendered by ray casting: the embedded default dataset."""

from tridense.data.synthetic.dataset import SyntheticScenes
from tridense.data.synthetic.scene import CLASS_NAMES, NYU40_IDS

__all__ = ["CLASS_NAMES", "NYU40_IDS", "SyntheticScenes"]
