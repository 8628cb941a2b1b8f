"""Callbacks and plugins of a training run: panels of fixed samples, safe checkpoint loading, frozen BN."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from tridense.data.sample import collate
from tridense.viz import NYU40_PALETTE, make_palette, make_panel, save_png


def palette_for(num_classes: int | None, nyu40_ids: list[int] | None = None) -> np.ndarray | None:
    """Class colours: the NYU-40 colours of the classes' NYU ids when known, else a generic palette."""
    if not num_classes:
        return None
    if nyu40_ids and len(nyu40_ids) == num_classes:
        return NYU40_PALETTE[np.asarray(nyu40_ids) - 1]
    return NYU40_PALETTE if num_classes == 40 else make_palette(num_classes)


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO, loading with ``torch.load(weights_only=True)``: a checkpoint can never run
    code. (Saving is already atomic in Lightning: written through a filesystem transaction.)"""

    def load_checkpoint(self, path: str | Path, map_location: Any = None, weights_only: bool | None = None) -> dict:
        return torch.load(path, map_location=map_location or "cpu", weights_only=True)


class PanelCallback(L.Callback):
    """After every validation, draw input | prediction | ground truth | error for a few fixed samples.

    The PNG goes to ``<run>/panels/step_<N>.png`` (N: the module's own step count, ``pl_module.step``) and, with
    a TensorBoard logger, to the ``panels`` image.
    """

    def __init__(
        self,
        samples: list[dict[str, Any]],
        out_dir: Path,
        palette: np.ndarray | None,
        class_names: list[str] | None = None,
    ) -> None:
        self.samples, self.out_dir, self.palette = samples, Path(out_dir), palette
        self.class_names = class_names

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.samples or trainer.sanity_checking or not trainer.is_global_zero:
            return
        batch = collate(self.samples)
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            outputs = pl_module(batch["image"].to(pl_module.device))
        pl_module.train(was_training)
        rows = []
        for i in range(len(self.samples)):
            preds = {t: outputs[t][i].float().cpu() for t in ("depth", "normals", "semseg") if t in outputs}
            targets = {
                t: batch[t][i] for t in ("depth", "normals", "semseg") if t in batch and bool(batch[f"has_{t}"][i])
            }
            panel = make_panel(
                batch["image"][i], preds, targets, palette=self.palette, class_names=self.class_names, normalized=True
            )
            rows.append(panel)
        width = max(r.shape[1] for r in rows)
        rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
        panel = np.concatenate(rows, axis=0)
        step = pl_module.step
        save_png(self.out_dir / f"step_{step:07d}.png", panel, overwrite=True)
        for logger in trainer.loggers:
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_image"):
                experiment.add_image("panels", panel, step, dataformats="HWC")


class FrozenBatchNorm(L.Callback):
    """Keep batch-norm layers whose parameters are all frozen in eval mode (their statistics frozen too)."""

    def __init__(self, module_names: list[str]) -> None:
        self.module_names = module_names

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.apply(pl_module)  # Lightning puts the model back in train mode after every validation

    def apply(self, pl_module: L.LightningModule) -> None:
        modules = dict(pl_module.model.named_modules())
        for name in self.module_names:
            modules[name].eval()
