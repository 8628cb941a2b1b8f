"""The run configuration: typed dataclasses, read from YAML and overridden from the command line.

A config file may name one base file (``_base_: ../default.yaml``, resolved relative to it; one level only);
its keys override the base's, mappings key by key (``null`` clears a mapping, e.g. ``loss: {extra: null}``).
Command-line overrides are ``dotted.key=value`` pairs whose values are parsed as YAML
(``trainer.max_steps=200``, ``data.size=[96,128]``, ``model.pretrained=false``). An unknown key, at any level,
is an error that lists the valid keys. The config becomes objects once, in :mod:`tridense.training.build`;
nothing below that sees a dict.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tridense.errors import ConfigError


@dataclass
class ModelConfig:
    #: Registered model name (``tridense info`` lists them).
    name: str = "pap"
    #: timm encoder name.
    encoder: str = "resnet18"
    #: false, true (timm hub, needs a network) or a local weights file.
    pretrained: bool | str = False
    #: Extra keyword arguments of the model (e.g. ``affinity_scale``, ``decoder_channels``).
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class AugmentConfig:
    flip: bool = True
    #: Random rescale range (a change of focal length) followed by a crop back to ``data.size``; null = off.
    scale: list[float] | None = None
    #: Random zoom range (the camera moves closer: depth / s); null = off.
    zoom: list[float] | None = None
    #: Maximum camera roll in degrees (0 = off).
    rotation: float = 0.0
    #: Gamma / brightness / contrast jitter.
    color: bool = True


@dataclass
class DataConfig:
    #: Dataset name (``tridense info`` lists them).
    dataset: str = "synthetic"
    #: Dataset root folder (not needed for ``synthetic``).
    root: str | None = None
    #: Keyword arguments of the dataset class for every split (e.g. ``label_set: 13``).
    args: dict[str, Any] = field(default_factory=dict)
    #: Per-split keyword arguments, e.g. ``{train: {length: 4000}}``.
    split_args: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Network input size [H, W]; null keeps the dataset's own size.
    size: list[int] | None = field(default_factory=lambda: [96, 128])
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    #: Tasks to train and evaluate (default: those of the model that the dataset has).
    tasks: list[str] | None = None
    batch_size: int = 8
    val_batch_size: int | None = None
    num_workers: int = 1
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class LossConfig:
    depth: str = "berhu"
    normals: str = "l1"
    semseg: str = "ce"
    focal_gamma: float = 2.0
    #: Weight of each task's term.
    weights: dict[str, float] = field(default_factory=dict)
    #: Weight of supervised auxiliary predictions (``aux[stage]``), e.g. ``{initial: 1.0}``.
    aux_weights: dict[str, float] = field(default_factory=lambda: {"initial": 1.0})
    #: Method-specific terms: ``pairwise: {weight: 0.2, pairs: 300}`` (PAP).
    extra: dict[str, dict[str, Any]] = field(default_factory=lambda: {"pairwise": {"weight": 0.2, "pairs": 300}})


@dataclass
class OptimConfig:
    #: adam, adamw or sgd.
    optimizer: str = "adamw"
    lr: float = 2e-3
    #: Learning rate of the encoder (default: ``lr``); PAP and GAD use a smaller one for pretrained encoders.
    encoder_lr: float | None = None
    weight_decay: float = 1e-4
    momentum: float = 0.9
    #: constant, poly, step or cosine (per optimisation step), after a linear warm-up.
    schedule: str = "poly"
    warmup_steps: int = 100
    poly_power: float = 0.9
    #: For ``step``: multiply by ``gamma`` every ``step_every`` steps.
    step_every: int = 1000
    gamma: float = 0.1
    min_lr_ratio: float = 0.0
    #: Decay on the clock as well as on the step count: the schedule's progress is the larger of
    #: steps / max_steps and elapsed / trainer.max_time, so a run that the time limit stops has still finished
    #: its decay (the default's budget is time). Ignored (with a warning) in deterministic mode and without
    #: ``max_time``, where progress counts steps only.
    anneal_by_time: bool = True
    #: Gradient clipping by global norm (null = off).
    grad_clip: float | None = 5.0


@dataclass
class TrainerConfig:
    #: -1: no step limit (then ``max_epochs`` or ``max_time`` ends training).
    max_steps: int = 4000
    max_epochs: int | None = None
    #: Wall-clock limit "DD:HH:MM:SS" (a safety net; training then stops and the best checkpoint is tested).
    max_time: str | None = "00:00:09:15"
    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    #: auto, ddp, ddp_spawn, ... (Lightning strategies).
    strategy: str = "auto"
    #: auto (bf16-mixed or 16-mixed on a GPU, 32-true on the CPU), 32-true, 16-mixed, bf16-mixed.
    precision: str = "auto"
    #: Validate every n epochs, or every ``val_every_n_steps`` steps when set.
    val_every_n_epochs: int = 1
    val_every_n_steps: int | None = 400
    limit_val_batches: float | int = 1.0
    log_every_n_steps: int = 20
    #: Bitwise reproducible runs (slower on GPU).
    deterministic: bool = False
    progress_bar: bool = True


@dataclass
class CheckpointConfig:
    #: Metric that decides the best checkpoint (``val/score``: mean of delta1, within_22.5 / 100 and mIoU
    #: over the tasks trained).
    monitor: str = "val/score"
    mode: str = "max"


@dataclass
class InitConfig:
    #: Initialise the model from an earlier checkpoint or exported package (weights only).
    checkpoint: str | None = None
    #: Parameter-name patterns (fnmatch, e.g. ``decoders.normals.*``) to freeze.
    freeze: list[str] = field(default_factory=list)
    #: Require every parameter of the model to be found in the checkpoint.
    strict: bool = False


@dataclass
class EvalConfig:
    #: Depth metric range (metres) and crop (see ``tridense.metrics.CROPS``).
    min_depth: float = 1e-3
    max_depth: float = 10.0
    crop: str | None = None
    #: image (per-image then mean) or pixel (pooled).
    reduction: str = "image"
    #: Also report the KITTI benchmark metrics.
    kitti: bool = False
    #: Named evaluation protocol (``tridense.metrics.protocols.PROTOCOLS``) fixing every metric convention;
    #: min_depth, max_depth, crop, reduction and kitti must then stay at their defaults.
    protocol: str | None = None
    #: Number of fixed validation samples drawn in the panel saved at every validation.
    panel_samples: int = 4


@dataclass
class Config:
    seed: int = 0
    #: Run folder (default runs/<model>-<dataset>-<time>).
    run_dir: str | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    init: InitConfig = field(default_factory=InitConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------------
def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _check_value(path: str, value: Any, tp: Any) -> Any:
    """Loose type check of a YAML value against a field annotation; returns the (converted) value."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            if option is type(None):
                if value is None:
                    return None
                continue
            try:
                return _check_value(path, value, option)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{path}: {value!r} is not a valid value ({tp})")
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        (inner,) = typing.get_args(tp) or (Any,)
        return [_check_value(f"{path}[{i}]", v, inner) for i, v in enumerate(value)]
    if origin is dict:
        if value is None:  # `key: null` in a file clears a mapping the base file set
            return {}
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type, data: dict[str, Any] | None, path: str = "") -> Any:
    """Build dataclass ``cls`` from a nested dict, rejecting unknown keys with the list of valid ones."""
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = path or "the top level"
        raise ConfigError(f"unknown config key(s) {unknown} at {where}; valid keys: {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        key = f"{path}.{name}" if path else name
        kwargs[name] = from_dict(tp, value, key) if _is_dataclass_type(tp) else _check_value(key, value, tp)
    return cls(**kwargs)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML ({err})") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping at the top level")
    return data


def load_config_dict(path: str | Path | None) -> dict[str, Any]:
    """Read a config file and its (single) base into one nested dict."""
    if path is None:
        return {}
    data = read_yaml(path)
    base = data.pop("_base_", None)
    if base is None:
        return data
    base_path = (Path(path).parent / base).resolve()
    base_data = read_yaml(base_path)
    if "_base_" in base_data:
        raise ConfigError(f"{base_path}: a base config cannot have a base of its own (one level only)")
    return _merge(base_data, data)


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["a.b=1", "c=[1,2]"]`` -> ``{"a": {"b": 1}, "c": [1, 2]}`` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. trainer.max_steps=100)")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({err})") from err
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with another override")
        node[parts[-1]] = value
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """The config of a run: defaults <- file (and its base) <- command-line overrides."""
    data = _merge(load_config_dict(path), parse_overrides(overrides or []))
    return from_dict(Config, data)


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
