"""The run configuration: typed pydantic models, read from YAML and overridden from the command line.

A config file may name one base file (``_base_: ../default.yaml``, resolved relative to it; one level only);
its keys override the base's, mappings key by key. ``null`` clears a mapping (``data: {split_args: null}``)
and so does an empty one (``loss: {extra: {}}``); for ``loss.aux_weights`` and ``loss.extra`` ``null`` means
"the model's own defaults" and ``{}`` "none". Command-line overrides are ``dotted.key=value`` pairs whose
values are parsed as YAML (``trainer.max_steps=200``, ``data.size=[96,128]``, ``model.pretrained=false``).

Everything is checked when the config is loaded, before any data is read: an unknown key at any level lists
the valid keys; every enumerated value (optimiser, schedule, task losses, reduction, precision, ...) is a
``Literal`` whose error lists the valid values; names looked up in a registry (model, ``model.args`` through
the model's options, dataset, method, extra losses, auxiliary stages, crop) are checked by
:func:`check_names`. Every error is a :class:`~tridense.errors.ConfigError` naming the key (exit status 2
from the command line). The config becomes objects once, in :mod:`tridense.training.run`; nothing below
that sees a dict.
"""

from __future__ import annotations

import copy
import inspect
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from tridense.errors import ConfigError


def _yaml_float(value: Any) -> Any:
    """YAML 1.1 reads ``1e-3`` (no dot) as a string: accept it as the number it is."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _none_is_empty(value: Any) -> Any:
    return {} if value is None else value


#: A number (an integer is accepted; a bool is not; "1e-3" is).
Float = Annotated[float, Strict(), BeforeValidator(_yaml_float)]
Int = StrictInt
Bool = StrictBool
Str = StrictStr
#: A mapping whose ``null`` means empty.
Kwargs = Annotated[dict[str, Any], BeforeValidator(_none_is_empty)]
Pair = Annotated[list[Float], Field(min_length=2, max_length=2)]

TaskName = Literal["depth", "normals", "semseg"]
DepthLossName = Literal["berhu", "l1", "silog"]
NormalLossName = Literal["l1", "cosine"]
SegLossName = Literal["ce", "focal"]
OptimizerName = Literal["adam", "adamw", "sgd"]
ScheduleName = Literal["constant", "poly", "step", "cosine"]
Precision = Literal["auto", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true"]
Accelerator = Literal["auto", "cpu", "gpu", "cuda", "mps", "tpu"]


class Section(BaseModel):
    """A config section: unknown keys are errors; ``null`` for the whole section means its defaults."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_default=False)

    @model_validator(mode="before")
    @classmethod
    def _null_is_default(cls, data: Any) -> Any:
        return {} if data is None else data

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="python")


class ModelConfig(Section):
    #: Registered model name (``tridense info`` lists them).
    name: Str = "pap"
    #: timm encoder name.
    encoder: Str = "resnet18"
    #: false, true (timm hub, needs a network) or a local weights file.
    pretrained: Bool | Str = False
    #: Extra keyword arguments of the model (e.g. ``affinity_scale``, ``decoder_channels``), checked against
    #: the model's options; ``tasks`` (the tasks it predicts) is common to every model.
    args: Kwargs = Field(default_factory=dict)


class MethodConfig(Section):
    #: The training method (a registered LightningModule): ``dense`` (supervised, one optimiser), ...
    name: Str = "dense"
    #: Options of the method, checked against its registered options model.
    args: Kwargs = Field(default_factory=dict)


class AugmentConfig(Section):
    flip: Bool = True
    #: Random rescale range (a change of focal length) followed by a crop back to ``data.size``; null = off.
    scale: Pair | None = None
    #: Random zoom range (the camera moves closer: depth / s); null = off.
    zoom: Pair | None = None
    #: Maximum camera roll in degrees (0 = off).
    rotation: Float = 0.0
    #: Gamma / brightness / contrast jitter.
    color: Bool = True


class DataConfig(Section):
    #: Dataset name (``tridense info`` lists them).
    dataset: Str = "synthetic"
    #: Dataset root folder (not needed for ``synthetic``).
    root: Str | None = None
    #: Keyword arguments of the dataset class for every split (e.g. ``label_set: 13``).
    args: Kwargs = Field(default_factory=dict)
    #: Per-split keyword arguments, e.g. ``{train: {length: 4000}}``.
    split_args: Annotated[dict[str, Kwargs], BeforeValidator(_none_is_empty)] = Field(default_factory=dict)
    #: Network input size [H, W]; null keeps the dataset's own size.
    size: Annotated[list[Int], Field(min_length=2, max_length=2)] | None = Field(default_factory=lambda: [96, 128])
    train_split: Str = "train"
    val_split: Str = "val"
    test_split: Str = "test"
    #: Tasks to train and evaluate (default: those of the model that the dataset has).
    tasks: list[TaskName] | None = None
    batch_size: Int = Field(8, ge=1)
    val_batch_size: Annotated[int, Strict(), Field(ge=1)] | None = None
    num_workers: Int = Field(1, ge=0)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)


class LossConfig(Section):
    depth: DepthLossName = "berhu"
    normals: NormalLossName = "l1"
    semseg: SegLossName = "ce"
    focal_gamma: Float = 2.0
    #: Weight of each task's term.
    weights: Annotated[dict[TaskName, Float], BeforeValidator(_none_is_empty)] = Field(default_factory=dict)
    #: Weight of supervised auxiliary predictions (``aux[stage]``), e.g. ``{initial: 1.0}`` (PAP's initial
    #: predictions); null: the model's defaults; ``{}``: none. A stage the model does not have is an error.
    aux_weights: dict[Str, Float] | None = None
    #: Method-specific terms by registered name with their options, e.g. ``pairwise: {weight: 0.2, pairs: 300}``
    #: (PAP); null: the model's defaults; ``{}``: none.
    extra: dict[Str, Kwargs] | None = None


class GroupConfig(Section):
    #: fnmatch pattern(s) of parameter names (``encoder.*``); a parameter joins the first group it matches.
    pattern: Str | list[Str]
    #: Learning rate of the group (default: ``optim.lr``).
    lr: Float | None = None
    #: Weight decay of the group (default: ``optim.weight_decay``).
    weight_decay: Float | None = None
    #: Clip this group's gradients by their own global norm (null: the group is clipped with the other
    #: parameters by ``optim.grad_clip``), e.g. GAD's clipping of the semantic branch only.
    grad_clip: Annotated[float, Strict(), BeforeValidator(_yaml_float), Field(gt=0)] | None = None

    @property
    def patterns(self) -> tuple[str, ...]:
        return (self.pattern,) if isinstance(self.pattern, str) else tuple(self.pattern)


class OptimConfig(Section):
    optimizer: OptimizerName = "adamw"
    lr: Float = 2e-3
    #: Learning rate of the encoder (parameters ``encoder.*``; default: ``lr``); PAP and GAD use a smaller one
    #: for pretrained encoders. Sugar for ``groups: {encoder: {pattern: "encoder.*", lr: ...}}``.
    encoder_lr: Float | None = None
    #: More parameter groups by name pattern, e.g. ``{heads: {pattern: "heads.*", lr: 1e-3}}``; parameters that
    #: no group matches train at ``lr`` (group ``rest``).
    groups: Annotated[dict[Str, GroupConfig], BeforeValidator(_none_is_empty)] = Field(default_factory=dict)
    weight_decay: Float = 1e-4
    momentum: Float = 0.9
    #: constant, poly, step or cosine (per optimisation step), after a linear warm-up.
    schedule: ScheduleName = "poly"
    warmup_steps: Int = Field(100, ge=0)
    poly_power: Float = 0.9
    #: For ``step``: multiply by ``gamma`` every ``step_every`` steps.
    step_every: Int = Field(1000, ge=1)
    gamma: Float = 0.1
    min_lr_ratio: Float = Field(0.0, ge=0.0, le=1.0)
    #: Decay on the clock as well as on the step count: the schedule's progress is the larger of
    #: steps / max_steps and elapsed / trainer.max_time, so a run that the time limit stops has still finished
    #: its decay (the default's budget is time). Ignored (with a warning) in deterministic mode and without
    #: ``max_time``, where progress counts steps only.
    anneal_by_time: Bool = True
    #: Gradient clipping by global norm (null = off), before every optimiser step, of the parameters whose
    #: group has no ``grad_clip`` of its own.
    grad_clip: Annotated[float, Strict(), BeforeValidator(_yaml_float), Field(gt=0)] | None = 5.0


class TrainerConfig(Section):
    #: Optimisation steps (each a batch; a method with two optimisers counts one per batch); -1: no step
    #: limit (then ``max_epochs`` or ``max_time`` ends training).
    max_steps: Int = Field(4000, ge=-1)
    max_epochs: Int | None = None
    #: Wall-clock limit "DD:HH:MM:SS" (a safety net; training then stops and the best checkpoint is tested).
    max_time: Str | None = "00:00:09:15"
    accelerator: Accelerator = "auto"
    devices: Int | list[Int] | Str = "auto"
    num_nodes: Int = Field(1, ge=1)
    #: auto, ddp, ddp_spawn, ... (Lightning's registered strategies).
    strategy: Str = "auto"
    #: auto (bf16-mixed or 16-mixed on a GPU, bf16-mixed on a CPU with AMX, else 32-true), 32-true, 16-mixed,
    #: bf16-mixed.
    precision: Precision = "auto"
    #: Validate every n epochs, or every ``val_every_n_steps`` steps when set.
    val_every_n_epochs: Int = Field(1, ge=1)
    val_every_n_steps: Annotated[int, Strict(), Field(ge=1)] | None = 400
    limit_val_batches: Int | Float = 1.0
    log_every_n_steps: Int = Field(20, ge=1)
    #: Bitwise reproducible runs (slower on GPU).
    deterministic: Bool = False
    progress_bar: Bool = True

    @field_validator("max_time", mode="before")
    @classmethod
    def _max_time(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            raise ConfigError(
                f"trainer.max_time: got the number {value}; quote it (\"01:00:00:00\"): YAML 1.1 reads unquoted "
                "colon-separated numbers as one base-60 integer"
            )
        if isinstance(value, str):
            parts = value.split(":")
            if len(parts) != 4 or not all(p.isdigit() for p in parts):
                raise ConfigError(f"trainer.max_time: {value!r} is not of the form DD:HH:MM:SS")
        return value


class CheckpointConfig(Section):
    #: Metric that decides the best checkpoint (``val/score``: mean of delta1, within_22.5 / 100 and mIoU
    #: over the tasks trained).
    monitor: Str = "val/score"
    mode: Literal["min", "max"] = "max"


class InitConfig(Section):
    #: Initialise the model from an earlier checkpoint or exported package (weights only).
    checkpoint: Str | None = None
    #: Parameter-name patterns (fnmatch, e.g. ``decoders.normals.*``) to freeze.
    freeze: Annotated[list[Str], BeforeValidator(lambda v: [] if v is None else v)] = Field(default_factory=list)
    #: Require every parameter of the model to be found in the checkpoint.
    strict: Bool = False


class EvalConfig(Section):
    #: Depth metric range (metres) and crop (see ``tridense.metrics.CROPS``).
    min_depth: Float = 1e-3
    max_depth: Float = 10.0
    crop: Str | None = None
    #: image (per-image then mean) or pixel (pooled).
    reduction: Literal["image", "pixel"] = "image"
    #: Also report the KITTI benchmark metrics.
    kitti: Bool = False
    #: Named evaluation protocol (``tridense.metrics.protocols.PROTOCOLS``) fixing every metric convention;
    #: min_depth, max_depth, crop, reduction and kitti must then stay at their defaults.
    protocol: Str | None = None
    #: Number of fixed validation samples drawn in the panel saved at every validation.
    panel_samples: Int = Field(4, ge=0)


class Config(Section):
    seed: Int = 0
    #: Run folder (default runs/<model>-<dataset>-<time>).
    run_dir: Str | None = None
    model: ModelConfig = Field(default_factory=ModelConfig)
    method: MethodConfig = Field(default_factory=MethodConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    init: InitConfig = Field(default_factory=InitConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)


# -------------------------------------------------------------------------------------------------- errors
def _strip(tp: Any) -> Any:
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    return tp


_MISSING = object()


def _child(tp: Any, part: str | int) -> Any:
    """The annotation of key ``part`` inside a value of annotation ``tp`` (``_MISSING``: not a config key)."""
    tp = _strip(tp)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            found = _child(option, part)
            if found is not _MISSING:
                return found
        return _MISSING
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        field = tp.model_fields.get(part) if isinstance(part, str) else None
        return _MISSING if field is None else field.annotation
    if origin is dict and isinstance(part, str):
        return typing.get_args(tp)[1]
    if origin is list and isinstance(part, int):
        return typing.get_args(tp)[0]
    return _MISSING


def _walk(root: type[BaseModel], loc: tuple[str | int, ...]) -> tuple[str, Any]:
    """The dotted key of the config-key prefix of ``loc`` (pydantic adds type tags after it), and its type."""
    path, tp = "", root
    for part in loc:
        child = _child(tp, part)
        if child is _MISSING:
            break
        path = f"{path}[{part}]" if isinstance(part, int) else (f"{path}.{part}" if path else str(part))
        tp = child
    return path, tp


def _models_in(tp: Any) -> list[type[BaseModel]]:
    tp = _strip(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [m for option in typing.get_args(tp) for m in _models_in(option)]
    return []


def config_error(
    err: ValidationError, root: type[BaseModel] = BaseModel, where: str = "", prefix: str = ""
) -> ConfigError:
    """One :class:`ConfigError` naming every bad key of a pydantic ``err`` (and what is valid there).

    ``where`` (a file) goes in front of the message; ``prefix`` is the dotted key of ``root`` in the config
    (e.g. ``model.args`` for a model's options).
    """

    def key(path: str) -> str:
        return ".".join(p for p in (prefix, path) if p)

    unknown: dict[str, list[str]] = {}
    valid: dict[str, list[str]] = {}
    problems: dict[str, list[str]] = {}
    for item in err.errors():
        loc = tuple(item["loc"])
        if item["type"] == "extra_forbidden":
            path, tp = _walk(root, loc[:-1])
            path = key(path)
            unknown.setdefault(path, []).append(str(loc[-1]))
            valid[path] = sorted(f for m in _models_in(tp) for f in m.model_fields)
            continue
        path = key(_walk(root, loc)[0])
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, ConfigError):
            message = str(cause)
        elif item["type"] == "literal_error":
            message = f"{path}: {item['input']!r} is not valid; valid values: {item['ctx']['expected']}"
        else:
            message = f"{path or 'config'}: {item['msg'][0].lower()}{item['msg'][1:]} (got {item['input']!r})"
        problems.setdefault(path, [])
        if message not in problems[path]:
            problems[path].append(message)
    lines = [
        f"unknown config key(s) {sorted(keys)} at {path or 'the top level'}; valid keys: {valid[path]}"
        for path, keys in unknown.items()
    ]
    lines += [" or ".join(messages) if len(messages) > 1 else messages[0] for messages in problems.values()]
    prefix = f"{where}: " if where else ""
    return ConfigError(prefix + "; ".join(lines))


def from_dict(cls: type[Section], data: dict[str, Any] | None, where: str = "") -> Any:
    """Build section ``cls`` from a nested dict; a :class:`ConfigError` lists every problem."""
    try:
        return cls.model_validate(data or {})
    except ValidationError as err:
        raise config_error(err, cls, where) from None


# -------------------------------------------------------------------------------------------------- files
def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` on ``base``, mappings key by key; ``null`` or an empty mapping replaces the base's."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and value and isinstance(out.get(key), dict):
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
    """The config of a run: defaults <- file (and its base) <- command-line overrides, checked completely
    (including the registered names, :func:`check_names`)."""
    data = _merge(load_config_dict(path), parse_overrides(overrides or []))
    cfg = from_dict(Config, data, where=str(path) if path else "")
    check_names(cfg)
    return cfg


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


# -------------------------------------------------------------------------------------------------- names
def _valid(key: str, value: Any, names: typing.Iterable[str]) -> None:
    names = sorted(names)
    if value not in names:
        raise ConfigError(f"{key}: {value!r} is not valid; valid values: {names}")


def _options(key: str, options: type[BaseModel] | None, args: dict[str, Any], owner: str) -> None:
    if options is None:
        if args:
            raise ConfigError(f"{key}: {owner} takes no options, got {sorted(args)}")
        return
    try:
        options.model_validate(args)
    except ValidationError as err:
        raise config_error(err, options, prefix=key) from None


def check_names(cfg: Config) -> None:
    """Check the names that registries define: model (and ``model.args`` against its options), dataset,
    method (and ``method.args``), ``loss.extra`` terms and their options, ``loss.aux_weights`` stages, crop.

    Imports the registries (models, losses, training methods), so it runs when a config is loaded for
    training, not when a checkpoint's config is read back.
    """
    from tridense.data.registry import DATASETS
    from tridense.losses.registry import EXTRA_LOSSES
    from tridense.metrics.functional import CROPS
    from tridense.metrics.protocols import protocol_names
    from tridense.models.registry import list_models
    from tridense.training.defaults import model_aux_stages, model_options_of
    from tridense.training.methods import METHODS, method_options

    _valid("model.name", cfg.model.name, list_models())
    args = dict(cfg.model.args)
    tasks = args.pop("tasks", None)
    if tasks is not None:
        for task in tasks if isinstance(tasks, list | tuple) else [tasks]:
            _valid("model.args.tasks", task, typing.get_args(TaskName))
    _options("model.args", model_options_of(cfg.model.name), args, f"model {cfg.model.name!r}")
    _valid("data.dataset", cfg.data.dataset, DATASETS)
    _valid("method.name", cfg.method.name, METHODS)
    _options("method.args", method_options(cfg.method.name), dict(cfg.method.args), f"method {cfg.method.name!r}")
    if cfg.eval.crop is not None:
        _valid("eval.crop", cfg.eval.crop, CROPS)
    if cfg.eval.protocol is not None:
        _valid("eval.protocol", cfg.eval.protocol, protocol_names())
    stages = model_aux_stages(cfg.model.name)
    for stage in cfg.loss.aux_weights or {}:
        if stage not in stages:
            raise ConfigError(
                f"loss.aux_weights: model {cfg.model.name!r} has no auxiliary stage {stage!r}; its stages: "
                f"{list(stages)}"
            )
    for name, options_ in (cfg.loss.extra or {}).items():
        _valid("loss.extra", name, EXTRA_LOSSES)
        try:
            inspect.signature(EXTRA_LOSSES[name]).bind(("depth",), **options_)
        except TypeError as err:
            raise ConfigError(f"loss.extra.{name}: {err}") from None
    if cfg.trainer.strategy != "auto":
        from lightning.pytorch.strategies import StrategyRegistry

        _valid("trainer.strategy", cfg.trainer.strategy, ["auto", *StrategyRegistry.available_strategies()])
