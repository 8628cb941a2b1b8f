"""Reading checkpoints safely, rebuilding models from them, and exporting inference packages.

Two formats hold a model:

- a training checkpoint ``*.ckpt`` (Lightning), read with ``torch.load(weights_only=True)``: only tensors
  and plain containers, never code. Its ``"tridense"`` entry records the resolved config and the dataset
  description (tasks, classes, intrinsics) needed to rebuild the model;
- an exported package (a folder from ``tridense export``): ``model.safetensors`` (weights),
  ``config.yaml`` (the resolved config) and ``meta.json`` (tasks, classes, input size, intrinsics).

:func:`load_model` accepts either and returns the model in eval mode with its description.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save
from torch import nn

from tridense.data.io import atomic_write, write_json
from tridense.errors import ConfigError, DataError

PACKAGE_FILES = ("model.safetensors", "config.yaml", "meta.json")


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a Lightning checkpoint with ``weights_only=True``; clear errors for missing or broken files."""
    path = Path(path)
    if not path.is_file():
        raise DataError("checkpoint not found", path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, pickle refused by weights_only, ...
        raise DataError(f"not a readable checkpoint ({type(err).__name__}: {err})", path) from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise DataError("not a training checkpoint (no 'state_dict')", path)
    return checkpoint


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Weights of a ``.safetensors`` file; a truncated or corrupt file is a DataError naming it."""
    try:
        return load_file(path)
    except Exception as err:  # SafetensorError (truncated header or data), OSError
        raise DataError(f"not a readable safetensors file ({type(err).__name__}: {err})", path) from err


def model_state(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The model's weights in a training checkpoint (the LightningModule keeps the model as ``model.``)."""
    return {k[len("model.") :]: v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}


def _build(info: dict[str, Any]) -> nn.Module:
    from tridense.training.build import build_model
    from tridense.training.config import Config, from_dict

    cfg = from_dict(Config, info["config"])
    cfg.model.pretrained = False  # the weights come from the checkpoint
    return build_model(cfg.model, tasks=info.get("model_tasks"), num_classes=info.get("num_classes"))


def _read_package_description(path: Path) -> dict[str, Any]:
    """``meta.json`` and ``config.yaml`` of an exported package; broken files are a DataError naming them."""
    try:
        info = json.loads((path / "meta.json").read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"invalid JSON ({err})", path / "meta.json") from err
    try:
        info["config"] = yaml.safe_load((path / "config.yaml").read_text())
    except yaml.YAMLError as err:
        raise DataError(f"invalid YAML ({err})", path / "config.yaml") from err
    if not isinstance(info, dict) or not isinstance(info.get("config"), dict):
        raise DataError("meta.json and config.yaml must each hold a mapping", path)
    return info


def load_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """A model and its description from a training checkpoint (``.ckpt``) or an exported package folder."""
    path = Path(path)
    if path.is_dir():
        missing = [f for f in PACKAGE_FILES if not (path / f).is_file()]
        if missing:
            raise DataError(f"not an exported package: missing {missing} (expected {list(PACKAGE_FILES)})", path)
        info = _read_package_description(path)
        state = _read_safetensors(path / "model.safetensors")
    elif path.suffix == ".safetensors":
        return load_model(path.parent)
    else:
        checkpoint = read_checkpoint(path)
        if "tridense" not in checkpoint:
            raise DataError("checkpoint has no 'tridense' entry: it was not written by tridense train", path)
        info = checkpoint["tridense"]
        state = model_state(checkpoint)
    model = _build(info)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise DataError(f"weights do not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}", path)
    model.eval()
    return model, info


def load_weights(model: nn.Module, path: str | Path, *, strict: bool = False) -> dict[str, list[str]]:
    """Initialise ``model`` from a checkpoint or package (weights only; shapes must agree).

    Parameters absent from the file keep their initialisation unless ``strict``; parameters whose shape
    differs (e.g. a segmentation head for another number of classes) are skipped and reported.
    """
    path = Path(path)
    if path.is_dir() or path.suffix == ".safetensors":
        file = path / "model.safetensors" if path.is_dir() else path
        if not file.is_file():
            raise DataError("no model.safetensors in the package", file)
        state = _read_safetensors(file)
    else:
        state = model_state(read_checkpoint(path))
    own = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    report = {
        "loaded": sorted(fitting),
        "missing": sorted(set(own) - set(fitting)),
        "skipped": sorted(k for k in state if k not in fitting),
    }
    if not fitting:
        raise ConfigError(f"{path}: no parameter of the checkpoint fits this model (different architecture?)")
    if strict and report["missing"]:
        raise ConfigError(f"{path}: init.strict but the checkpoint lacks {report['missing'][:8]}")
    model.load_state_dict(fitting, strict=False)
    return report


def export(checkpoint_path: str | Path, out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Write a self-contained inference package from a training checkpoint."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{out_dir} exists and is not empty; pass --overwrite to replace its files")
    checkpoint = read_checkpoint(checkpoint_path)
    info = dict(checkpoint.get("tridense") or {})
    if "config" not in info:
        raise DataError("checkpoint has no 'tridense' entry: it was not written by tridense train", checkpoint_path)
    state = {k: v.contiguous() for k, v in model_state(checkpoint).items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(out_dir / "model.safetensors", overwrite=True) as handle:
        handle.write(save(state))
    config = info.pop("config")
    with atomic_write(out_dir / "config.yaml", overwrite=True, mode="w") as handle:
        handle.write(yaml.safe_dump(config, sort_keys=False))
    write_json(out_dir / "meta.json", info, overwrite=True)
    return out_dir
