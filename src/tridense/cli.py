"""The ``tridense`` command line.

    tridense train [--config FILE] [--resume RUN] [key=value ...]
    tridense evaluate (--checkpoint C | --predictions DIR) --dataset NAME [--protocol NAME] [...]
    tridense predict --checkpoint C PATHS... --out DIR [...]
    tridense export --checkpoint C --out DIR
    tridense render --out DIR [--split train] [--count N] [--size 240x320]
    tridense prepare normals --dataset NAME --root DIR --out DIR
    tridense analyze {pairs,affinity,structure} ...
    tridense info

Errors that concern the user's input (a missing file, an unknown key, a bad option value) are printed as
one line with exit status 2; everything else is a bug and shows its traceback. A training run stopped by
Ctrl-C or SIGTERM saves its current step and exits with 128 + the signal number (130, 143). Library
messages (Lightning's tips, deprecation warnings) are shown only with ``-v``. Only the commands that need
them import torch, Lightning and timm: ``tridense --help`` and ``tridense info`` answer at once.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from tridense.catalog import CROPS, DATASETS, METHODS, MODELS, PROTOCOLS
from tridense.errors import ConfigError, TridenseError

if TYPE_CHECKING:
    from tridense.data.base import DenseDataset


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"size must look like 240x320 (HxW), got {text!r}") from err
    if h < 8 or w < 8:
        raise argparse.ArgumentTypeError(f"size must be at least 8x8, got {text!r}")
    return h, w


def _output_size(text: str) -> str | tuple[int, int]:
    """``native``, ``input`` or WIDTHxHEIGHT -> the mode or (H, W)."""
    if text in ("native", "input"):
        return text
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"expected native, input or WIDTHxHEIGHT (e.g. 640x480), got {text!r}"
        ) from err
    if h < 8 or w < 8:
        raise argparse.ArgumentTypeError(f"size must be at least 8x8, got {text!r}")
    return h, w


def _device(text: str) -> str:
    if text in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", text):
        return text
    raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r}")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from err
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _dataset_args(items: Sequence[str] | None, dataset: str) -> dict:
    """``--set key=value`` items -> keyword arguments of the dataset class, unknown keys refused."""
    import inspect

    from tridense.data.registry import dataset_class
    from tridense.training.config import parse_overrides

    args = parse_overrides(list(items or []))
    if not args:
        return args
    parameters = inspect.signature(dataset_class(dataset).__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return args
    valid = sorted(set(parameters) - {"self", "root", "split", "transform"})
    unknown = sorted(set(args) - set(valid))
    if unknown:
        raise ConfigError(f"--set: dataset {dataset} takes no {unknown}; valid keys: {valid}")
    return args


def _check_output(path: Path | None, overwrite: bool, option: str) -> None:
    """Refuse an existing output file, or a non-empty output folder, before any work is done."""
    if path is None or overwrite:
        return
    if path.is_file() or (path.is_dir() and any(path.iterdir())):
        raise FileExistsError(f"{option} {path} exists; pass --overwrite to replace it")


def _progress(total: int, what: str) -> Callable[[int, int], None]:
    """A progress bar with count, rate and ETA on stderr; returns ``update(done, total)``."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=what, unit="img", file=sys.stderr, mininterval=0.5, dynamic_ncols=True)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update


def configure_output(verbose: bool) -> None:
    """Quiet by default: Lightning's info lines (tips, model summary, device lines) and third-party
    deprecation warnings reach the user only with ``-v``."""
    import logging
    import warnings

    if verbose:
        return
    # Lightning sets its package logger's level when imported, so the loggers that emit are quietened.
    for name in (
        "lightning.pytorch.utilities.rank_zero",
        "lightning.fabric.utilities.rank_zero",
        "lightning.pytorch.callbacks.model_summary",
        "lightning.pytorch.accelerators.cuda",
        "lightning.pytorch.trainer.connectors.checkpoint_connector",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning,ignore::FutureWarning")  # DDP children
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty.*")  # on resume
    warnings.filterwarnings("ignore", message=r".*(litlogger|litmodels|LitLogger).*")


# --------------------------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    from tridense.training.config import load_config
    from tridense.training.run import train

    if args.retest and not args.resume:
        raise ConfigError("--retest needs --resume RUN (the finished run whose best checkpoint to test again)")
    if args.resume:
        run_dir = train(overrides=args.overrides, resume=args.resume, retest=args.retest)
    else:
        cfg = load_config(args.config, args.overrides)
        run_dir = train(cfg)
    print(f"run folder: {run_dir}")
    test_md = Path(run_dir) / "metrics" / "test.md"
    if test_md.is_file():
        print(test_md.read_text())
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    if args.dataset:
        import inspect

        from tridense.data.registry import dataset_class

        cls = dataset_class(args.dataset)
        print(f"{args.dataset}: {cls.__module__}.{cls.__name__}\n")
        print(inspect.getdoc(cls) or "")
        if cls.layout:
            print(f"\nexpected layout:\n{cls.layout}")
        return 0

    sections = {
        "models (tridense train model.name=NAME; any timm encoder via model.encoder=NAME)": MODELS,
        "datasets (data.dataset=NAME, data.root=DIR)": DATASETS,
        "depth evaluation crops (eval.crop=NAME, evaluate --crop NAME)": CROPS,
        "evaluation protocols (eval.protocol=NAME, evaluate --protocol NAME; docs/metrics.md)": PROTOCOLS,
        "training methods (method.name=NAME; docs/training.md)": METHODS,
    }
    for i, (heading, table) in enumerate(sections.items()):
        print(f"{chr(10) if i else ''}{heading}:")
        for name, description in table.items():
            print(f"  {name:<24} {description}")
    return 0


def _load(checkpoint: Path, device: str):
    import torch

    from tridense.checkpoints import load_model

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: PyTorch sees no CUDA GPU on this machine; use --device cpu (or auto)")
    if device.startswith("cuda:") and int(device[5:]) >= torch.cuda.device_count():
        raise ConfigError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) visible")
    model, info = load_model(checkpoint)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return model.to(device), info


def _palette(info: dict, num_classes: int | None = None):
    from tridense.training.callbacks import palette_for

    return palette_for(num_classes or info.get("num_classes"), info.get("nyu40_ids"))


def _check_evaluate_args(args: argparse.Namespace) -> None:
    """ConfigError for a missing or doubled source, conventions a ``--protocol`` fixes, or outputs in the way."""
    if (args.checkpoint is None) == (args.predictions is None):
        raise ConfigError("tridense evaluate needs --checkpoint C or --predictions DIR (one of them)")
    if args.protocol is not None:
        fixed = {
            "--crop": args.crop is not None,
            "--min-depth": args.min_depth != 1e-3,
            "--max-depth": args.max_depth != 10.0,
            "--reduction": args.reduction != "image",
            "--kitti": args.kitti,
        }
        if any(fixed.values()):
            raise ConfigError(
                f"--protocol {args.protocol} fixes the metric conventions; drop {[k for k, v in fixed.items() if v]}"
            )
    _check_output(args.json, args.overwrite, "--json")
    _check_output(args.save, args.overwrite, "--save")


def _evaluated_model(
    args: argparse.Namespace, dataset: DenseDataset
) -> tuple[Any, dict[str, Any], list[str], str]:
    """(model or None, checkpoint info, tasks to evaluate, source named in the log) of ``tridense evaluate``:
    the checkpoint's model and its tasks the dataset has, or the saved ``--predictions``."""
    from tridense.inference import synthetic_only_note

    if args.predictions is not None:
        tasks = [t for t in dataset.tasks if not args.tasks or t in args.tasks]
        return None, {}, tasks, f"predictions in {args.predictions}"
    model, info = _load(args.checkpoint, args.device)
    tasks = [t for t in info.get("model_tasks", info.get("tasks", [])) if t in dataset.tasks]
    if args.tasks:
        tasks = [t for t in tasks if t in args.tasks]
    if "semseg" in tasks and dataset.num_classes != info.get("num_classes"):
        print(
            f"note: semseg not evaluated: the model has {info.get('num_classes')} classes, "
            f"{dataset.name} has {dataset.num_classes}"
        )
        tasks.remove("semseg")
    note = synthetic_only_note(info, images_are_real=dataset.name != "synthetic")
    if note:
        print(note, file=sys.stderr)
    return model, info, tasks, str(args.checkpoint)


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from tridense.data.io import write_json
    from tridense.data.registry import build_dataset
    from tridense.evaluate import class_iou_table, evaluate
    from tridense.inference import model_input_size
    from tridense.training.run import results_table

    _check_evaluate_args(args)
    dataset = build_dataset(args.dataset, args.root, args.split, **_dataset_args(args.set, args.dataset))
    model, info, tasks, source = _evaluated_model(args, dataset)
    count = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    of = "" if count == len(dataset) else f" of {len(dataset)}"
    print(f"evaluating {source} on {count}{of} samples of {dataset.describe()} ({args.split}), tasks {tasks}")
    results = evaluate(
        model,
        dataset,
        tasks=tasks,
        input_size=model_input_size(info, args.input_size) if model is not None else None,
        flip=args.flip,
        resize=args.resize,
        crop=args.crop,
        min_depth=args.min_depth,
        max_depth=args.max_depth,
        reduction=args.reduction,
        kitti=args.kitti,
        batch_size=args.batch_size,
        num_workers=args.workers,
        limit=args.limit,
        save_dir=args.save,
        palette=_palette(info, dataset.num_classes),
        overwrite=args.overwrite,
        protocol=args.protocol,
        predictions=args.predictions,
        progress=_progress(count, "evaluate"),
        analyses=args.analyses,
    )
    meta = results.pop("_meta")
    print(f"protocol: {meta['protocol']}")
    print(results_table(results))
    if "iou" in results.get("semseg", {}):
        print(class_iou_table(results["semseg"]))
    print(json.dumps(meta))
    if args.json:
        payload = {
            "protocol": meta["protocol"],
            "checkpoint": None if args.checkpoint is None else str(args.checkpoint),
            "predictions": None if args.predictions is None else str(args.predictions),
            "dataset": args.dataset,
            "root": str(args.root),
            "split": args.split,
            "settings": meta,
            "results": results,
        }
        write_json(args.json, payload, overwrite=args.overwrite)
        print(f"wrote {args.json}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from tridense.inference import synthetic_only_note
    from tridense.predict import parse_intrinsics, predict_files

    intrinsics = parse_intrinsics(args.intrinsics)
    model, info = _load(args.checkpoint, args.device)
    note = synthetic_only_note(info, images_are_real=True)
    if note:
        print(note, file=sys.stderr)
    summary = predict_files(
        model,
        info,
        args.inputs,
        args.out,
        intrinsics=intrinsics,
        input_size=args.input_size,
        output_size=args.output_size,
        flip=args.flip,
        overwrite=args.overwrite,
        point_cloud=not args.no_point_cloud,
        point_cloud_at_output_size=args.full_point_cloud,
        palette=_palette(info),
        progress=_progress(0, "predict"),  # the total is set once the inputs are expanded
        log=lambda text: print(text, file=sys.stderr),
    )
    print(f"predicted {summary['predicted']} image(s) into {args.out}; {summary['failed']} failed")
    for item, reason in summary["failures"].items():
        print(f"  failed: {item}: {reason}", file=sys.stderr)
    return 1 if summary["failed"] else 0


def cmd_export(args: argparse.Namespace) -> int:
    from tridense.checkpoints import export

    out = export(args.checkpoint, args.out, overwrite=args.overwrite)
    print(f"exported {args.checkpoint} -> {out} (model.safetensors, config.yaml, meta.json)")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from tridense.data.export import write_dataset
    from tridense.data.synthetic import SyntheticScenes

    dataset = SyntheticScenes(
        args.split, size=args.size, length=max(args.count, 1), seed=args.seed, sensor_invalid=not args.clean
    )
    info = dataset.info()
    info.pop("dataset")
    info.pop("classes")
    summary = write_dataset(
        dataset,
        args.out,
        split=args.split,
        count=args.count,
        overwrite=args.overwrite,
        progress=_progress(args.count, "render"),
        info=info,
    )
    print(f"wrote {summary['written']} {args.split} samples to {args.out} in {summary['seconds']} s")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    import inspect

    from tridense.data.export import prepare_normals
    from tridense.data.registry import build_dataset, dataset_class

    dataset = build_dataset(
        args.dataset, args.root, args.split, tasks=["depth"], **_dataset_args(args.set, args.dataset)
    )
    summary = prepare_normals(
        dataset,
        args.out,
        overwrite=args.overwrite,
        progress=_progress(len(dataset), "normals"),
        window=args.window,
        dilation=args.dilation,
        depth_sigma=args.depth_sigma,
        fit=args.fit,
    )
    print(
        f"wrote normals of {summary['written']} samples to {args.out} in {summary['seconds']} s "
        f"(valid fraction {summary['mean_valid_fraction']})"
    )
    if "normals_dir" in inspect.signature(dataset_class(args.dataset).__init__).parameters:
        print(f"use them with --set normals_dir={args.out} (training: data.split_args.SPLIT.normals_dir)")
    else:
        readers = [n for n in DATASETS if n in NORMALS_DIR_DATASETS]
        print(f"note: {args.dataset} does not read a normals_dir (datasets that do: {readers})")
    return 0


#: Datasets whose class takes ``normals_dir`` (the folder ``prepare normals --out`` writes); checked by a test.
NORMALS_DIR_DATASETS = ("nyuv2_labeled", "nyuv2_raw")


def cmd_analyze_pairs(args: argparse.Namespace) -> int:
    from tridense.analysis.pairs import format_pairs_table, run_pairs
    from tridense.data.io import write_json

    _check_output(args.json, args.overwrite, "--json")
    result = run_pairs(
        args.dataset,
        args.root,
        split=args.split,
        predictions_dir=args.predictions,
        stride=args.stride,
        depth_threshold=args.depth_threshold,
        normal_similar_deg=args.normal_similar,
        normal_dissimilar_deg=args.normal_dissimilar,
        limit=args.limit,
        dataset_args=_dataset_args(args.set, args.dataset),
        progress=_progress(0, "pairs"),
    )
    print(format_pairs_table(result))
    if args.json:
        write_json(args.json, result, overwrite=args.overwrite)
        print(f"wrote {args.json}")
    return 0


def cmd_analyze_affinity(args: argparse.Namespace) -> int:
    import json

    from tridense.analysis.affinity import save_affinity_figure

    try:
        x, y = (int(v) for v in args.point.split(","))
    except ValueError as err:
        raise TridenseError(f"--point must be x,y in pixels of the image, got {args.point!r}") from err
    _check_output(args.out, args.overwrite, "--out")
    model, info = _load(args.checkpoint, "cpu")
    summary = save_affinity_figure(model, info, args.image, (x, y), args.out, overwrite=args.overwrite)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_analyze_structure(args: argparse.Namespace) -> int:
    import json

    from tridense.analysis.structure import save_structure_figure
    from tridense.data.registry import build_dataset
    from tridense.data.transforms import eval_transforms

    if (args.image is None) == (args.dataset is None):
        raise TridenseError("tridense analyze structure needs --image I or --dataset NAME --root DIR --index i")
    _check_output(args.out, args.overwrite, "--out")
    sample = None
    if args.dataset is not None:
        from tridense.checkpoints import read_checkpoint
        from tridense.inference import model_input_size

        size = model_input_size(read_checkpoint(args.checkpoint).get("tridense") or {})
        transform = eval_transforms(size)
        dataset_args = _dataset_args(args.set, args.dataset)
        dataset = build_dataset(args.dataset, args.root, args.split, transform=transform, **dataset_args)
        sample = dataset[args.index]
    summary = save_structure_figure(
        args.checkpoint, args.out, image_path=args.image, sample=sample, overwrite=args.overwrite
    )
    print(json.dumps(summary, indent=2))
    return 0


# --------------------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``tridense CMD: error: MESSAGE (see tridense CMD --help)``, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


_OVERWRITE_HELP = "replace existing output files (default: refuse and change nothing)"
_DEVICE_HELP = "auto (a CUDA GPU when PyTorch sees one, else the CPU), cpu, cuda or cuda:N"
_CHECKPOINT_HELP = "training .ckpt or exported package folder (tridense export)"


def _add_dataset_options(p: argparse.ArgumentParser, *, split: str, tasks: bool = False) -> None:
    """--dataset, --root, --split and --set, shared by evaluate, prepare normals and analyze pairs."""
    p.add_argument("--dataset", required=True, choices=list(DATASETS), metavar="NAME", help="dataset name: "
                   + ", ".join(DATASETS))  # fmt: skip
    p.add_argument("--root", type=Path, help="dataset root folder (tridense info --dataset NAME shows its layout)")
    p.add_argument("--split", default=split, help=f"dataset split, e.g. train, val, test (default {split})")
    p.add_argument(
        "--set",
        nargs="*",
        metavar="KEY=VALUE",
        help="dataset arguments (the dataset class's keyword arguments, e.g. label_set=13 or normals_dir=DIR)",
    )


def _add_train(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "train", parents=[common], help="train a model (no arguments: the embedded default on synthetic scenes)"
    )
    p.add_argument("--config", type=Path, help="YAML config (default: the built-in defaults, see configs/default.yaml)")
    p.add_argument(
        "--resume", type=Path, metavar="RUN", help="continue the run in this folder from its last checkpoint"
    )
    p.add_argument("--retest", action="store_true", help="with --resume: test the finished run's best checkpoint again")
    p.add_argument("overrides", nargs="*", help="config overrides key=value, e.g. trainer.max_steps=100")
    p.set_defaults(func=cmd_train)



def _add_evaluate(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "evaluate", parents=[common], help="metrics of a checkpoint (or of saved predictions) on a dataset split"
    )
    p.add_argument("--checkpoint", type=Path, help=_CHECKPOINT_HELP)
    p.add_argument(
        "--predictions",
        type=Path,
        help="score the predictions saved in this folder (NAME_depth.npy/.png, NAME_normals.npy, NAME_semseg.png) "
        "instead of running a model",
    )
    p.add_argument(
        "--protocol",
        choices=list(PROTOCOLS),
        metavar="NAME",
        help=f"named evaluation protocol fixing every metric convention: {', '.join(PROTOCOLS)} (docs/metrics.md)",
    )
    _add_dataset_options(p, split="test")
    p.add_argument("--tasks", nargs="*", choices=["depth", "normals", "semseg"], help="evaluate only these")
    p.add_argument("--flip", action="store_true", help="average with the horizontally flipped image")
    p.add_argument(
        "--resize",
        choices=["pred", "gt"],
        default="pred",
        help="pred: predictions resized to the ground truth (default); gt: ground truth resized",
    )
    p.add_argument("--crop", choices=list(CROPS), help="depth evaluation crop: " + ", ".join(CROPS))
    p.add_argument("--min-depth", type=float, default=1e-3, help="ignore ground truth nearer than this (m)")
    p.add_argument("--max-depth", type=float, default=10.0, help="ignore ground truth farther than this (m)")
    p.add_argument(
        "--reduction", choices=["image", "pixel"], default="image", help="depth metrics averaged per image or pixel"
    )
    p.add_argument("--kitti", action="store_true", help="also the KITTI benchmark metrics")
    p.add_argument(
        "--analyses",
        nargs="*",
        default=[],
        choices=["boundary", "instance", "background"],
        help="ASM's extra evaluations: boundary F-measure, instance-wise depth/normal metrics, background confusion",
    )
    p.add_argument("--input-size", type=_size, help="model input HxW (default: the training size)")
    p.add_argument("--batch-size", type=_positive_int, default=1, help="images per forward pass (default 1)")
    p.add_argument("--workers", type=int, default=0, help="data loading processes (default 0: in this process)")
    p.add_argument("--limit", type=_positive_int, help="evaluate only the first N samples")
    p.add_argument("--save", type=Path, help="also write the predictions to this folder")
    p.add_argument("--json", type=Path, help="write the metrics to this JSON file")
    p.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    p.add_argument("--device", type=_device, default="auto", help=_DEVICE_HELP)
    p.set_defaults(func=cmd_evaluate)


def _add_predict(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("predict", parents=[common], help="predict depth, normals and segmentation for images")
    p.add_argument("--checkpoint", type=Path, required=True, help=_CHECKPOINT_HELP)
    p.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    p.add_argument("--out", type=Path, required=True, help="folder for the outputs (created if missing)")
    p.add_argument("--intrinsics", help="fx,fy,cx,cy of the input images (default: the training camera, scaled)")
    p.add_argument(
        "--input-size", type=_size, help="model input HxW (default: the training size's area at the image's aspect)"
    )
    p.add_argument(
        "--output-size",
        type=_output_size,
        default="native",
        help="size of the written maps: native (the prediction's own, default), input (the image's) or "
        "WIDTHxHEIGHT, e.g. 640x480",
    )
    p.add_argument("--flip", action="store_true", help="average with the horizontally flipped image")
    p.add_argument("--no-point-cloud", action="store_true", help="do not write the .ply point cloud")
    p.add_argument(
        "--full-point-cloud",
        action="store_true",
        help="point cloud at the output size (default: at the prediction's resolution)",
    )
    p.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    p.add_argument("--device", type=_device, default="auto", help=_DEVICE_HELP)
    p.set_defaults(func=cmd_predict)


def _add_export_render(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "export", parents=[common], help="write a self-contained inference package (safetensors + config)"
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="training checkpoint (.ckpt) to export")
    p.add_argument("--out", type=Path, required=True, help="package folder to write")
    p.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("render", parents=[common], help="write synthetic scenes to disk in the folder format")
    p.add_argument("--out", type=Path, required=True, help="dataset folder to write (data.dataset=folder reads it)")
    p.add_argument("--split", default="train", choices=["train", "val", "test"], help="split to write")
    p.add_argument("--count", type=_positive_int, default=100, help="number of scenes (default 100)")
    p.add_argument("--size", type=_size, default=(240, 320), help="HxW (default 240x320)")
    p.add_argument("--seed", type=int, default=0, help="scene seed (default 0)")
    p.add_argument("--clean", action="store_true", help="no sensor-like invalid depth (glass, edge dropouts)")
    p.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    p.set_defaults(func=cmd_render)


def _add_prepare(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("prepare", parents=[common], help="prepare ground truth a dataset lacks")
    prep = p.add_subparsers(dest="what", required=True, parser_class=_Parser)
    q = prep.add_parser(
        "normals", parents=[common], help="normals from depth by local plane fits (the classic procedure)"
    )
    _add_dataset_options(q, split="train")
    q.add_argument(
        "--out",
        type=Path,
        required=True,
        help="normals folder; " + " and ".join(NORMALS_DIR_DATASETS) + " read it with --set normals_dir=DIR",
    )
    q.add_argument("--window", type=int, default=7, help="plane-fit window in pixels (default 7)")
    q.add_argument("--dilation", type=int, default=2, help="spacing of the window's samples (default 2)")
    q.add_argument("--depth-sigma", type=float, default=0.05, help="relative depth tolerance of a neighbour")
    q.add_argument("--fit", choices=["tls", "algebraic"], default="tls", help="plane fit (default tls)")
    q.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    q.set_defaults(func=cmd_prepare)


def _add_analyze(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("analyze", parents=[common], help="the papers' analyses")
    ana = p.add_subparsers(dest="what", required=True, parser_class=_Parser)
    q = ana.add_parser(
        "pairs", parents=[common], help="PAP Fig. 1: how often similar / dissimilar pixel pairs match across tasks"
    )
    _add_dataset_options(q, split="test")
    q.add_argument("--predictions", type=Path, help="folder of predictions (tridense predict / evaluate --save)")
    q.add_argument("--stride", type=_positive_int, default=16, help="grid step in pixels (default 16)")
    q.add_argument("--depth-threshold", type=float, default=0.2, help="relative depth difference (default 0.2)")
    q.add_argument("--normal-similar", type=float, default=26.0, help="similar below this angle (degrees)")
    q.add_argument("--normal-dissimilar", type=float, default=40.0, help="dissimilar above this angle (degrees)")
    q.add_argument("--limit", type=_positive_int, help="analyse only the first N samples")
    q.add_argument("--json", type=Path, help="write the result as JSON")
    q.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    q.set_defaults(func=cmd_analyze_pairs)
    q = ana.add_parser(
        "affinity", parents=[common], help="PAP Fig. 5: one pixel's affinity map, single-task vs cross-task"
    )
    q.add_argument("--checkpoint", type=Path, required=True, help="a PAP checkpoint or exported package")
    q.add_argument("--image", type=Path, required=True, help="the input image")
    q.add_argument("--point", required=True, help="x,y pixel of the image")
    q.add_argument("--out", type=Path, required=True, help="PNG to write")
    q.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    q.set_defaults(func=cmd_analyze_affinity)
    q = ana.add_parser(
        "structure",
        parents=[common],
        help="ASM Figs. 3-4: the analyzer's layer-wise error maps and reconstructions",
    )
    q.add_argument("--checkpoint", type=Path, required=True, help="a checkpoint of method adversarial (asm)")
    q.add_argument("--image", type=Path, help="an image (no ground truth: prediction vs its reconstruction)")
    q.add_argument("--dataset", choices=list(DATASETS), metavar="NAME", help="or a dataset sample with ground "
                   "truth: dataset name, " + ", ".join(DATASETS))  # fmt: skip
    q.add_argument("--root", type=Path, help="dataset root folder (with --dataset)")
    q.add_argument("--split", default="test", help="dataset split (default test)")
    q.add_argument("--index", type=int, default=0, help="sample index in the split (default 0)")
    q.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="dataset arguments (the dataset class's keywords)")
    q.add_argument("--out", type=Path, required=True, help="PNG to write")
    q.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    q.set_defaults(func=cmd_analyze_structure)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show library messages (Lightning's tips and model summary, deprecation warnings)",
    )
    parser = _Parser(prog="tridense", description="Joint depth, normals and segmentation.", parents=[common])
    parser.set_defaults(verbose=False)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_train(sub, common)
    _add_evaluate(sub, common)
    _add_predict(sub, common)
    _add_export_render(sub, common)
    _add_prepare(sub, common)
    _add_analyze(sub, common)
    p = sub.add_parser("info", parents=[common], help="list models, datasets and crops")
    p.add_argument("--dataset", choices=list(DATASETS), metavar="NAME", help="print this dataset's documentation "
                   "and on-disk layout")  # fmt: skip
    p.set_defaults(func=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_output(args.verbose)
    command = f"tridense {args.command}"
    try:
        return int(args.func(args) or 0)
    except (TridenseError, FileExistsError) as err:
        status = getattr(err, "exit_status", None)  # a run stopped by a signal (training.interrupt)
        print(f"{command}: {'' if status else 'error: '}{err}", file=sys.stderr)
        return status or 2
    except KeyboardInterrupt:
        print(f"{command}: interrupted (Ctrl-C)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
