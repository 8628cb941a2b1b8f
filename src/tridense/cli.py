"""The ``tridense`` command line.

    tridense train [--config FILE] [--resume RUN] [key=value ...]
    tridense evaluate (--checkpoint C | --predictions DIR) --dataset NAME [--protocol NAME] [...]
    tridense predict --checkpoint C PATHS... --out DIR [...]
    tridense export --checkpoint C --out DIR
    tridense render --out DIR [--split train] [--count N] [--size 240x320]
    tridense prepare normals --dataset NAME --root DIR --out DIR
    tridense analyze {pairs,affinity,structure} ...
    tridense info

Errors that concern the user's input (a missing file, an unknown key) are printed as one clear message
with exit status 2; everything else is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from tridense.errors import TridenseError


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"size must look like 240x320 (HxW), got {text!r}") from err
    if h < 8 or w < 8:
        raise argparse.ArgumentTypeError(f"size must be at least 8x8, got {text!r}")
    return h, w


def _dataset_args(items: Sequence[str] | None) -> dict:
    from tridense.training.config import parse_overrides

    return parse_overrides(list(items or []))


# --------------------------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    from tridense.training.config import load_config
    from tridense.training.run import train

    if args.resume:
        run_dir = train(overrides=args.overrides, resume=args.resume)
    else:
        cfg = load_config(args.config, args.overrides)
        run_dir = train(cfg)
    print(f"run folder: {run_dir}")
    test_md = Path(run_dir) / "metrics" / "test.md"
    if test_md.is_file():
        print(test_md.read_text())
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import inspect

    from tridense.data.registry import DATASETS, dataset_class
    from tridense.metrics.functional import CROPS
    from tridense.models.registry import describe_model, list_models

    if args.dataset:
        cls = dataset_class(args.dataset)
        print(f"{args.dataset}: {cls.__module__}.{cls.__name__}\n")
        print(inspect.getdoc(cls) or "")
        if cls.layout:
            print(f"\nexpected layout:\n{cls.layout}")
        return 0

    print("models (tridense train model.name=NAME; any timm encoder via model.encoder=NAME):")
    for name in list_models():
        print(f"  {name:<24} {describe_model(name)}")
    print("\ndatasets (data.dataset=NAME, data.root=DIR):")
    for name, spec in sorted(DATASETS.items()):
        print(f"  {name:<24} {spec.description}")
    print("\ndepth evaluation crops (eval.crop=NAME, evaluate --crop NAME):")
    for name, crop in CROPS.items():
        print(f"  {name:<24} {crop.description}")
    from tridense.metrics.protocols import PROTOCOLS

    print("\nevaluation protocols (eval.protocol=NAME, evaluate --protocol NAME; docs/metrics.md):")
    for name, protocol in PROTOCOLS.items():
        print(f"  {name:<24} {protocol.description}")
    return 0


def _load(checkpoint: Path, device: str):
    import torch

    from tridense.checkpoints import load_model

    model, info = load_model(checkpoint)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return model.to(device), info


def _palette(info: dict, num_classes: int | None = None):
    from tridense.training.callbacks import palette_for

    return palette_for(num_classes or info.get("num_classes"), info.get("nyu40_ids"))


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from tridense.data.io import write_json
    from tridense.data.registry import build_dataset
    from tridense.errors import ConfigError
    from tridense.evaluate import evaluate
    from tridense.inference import model_input_size
    from tridense.training.run import results_table

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
    dataset = build_dataset(args.dataset, args.root, args.split, **_dataset_args(args.set))
    if args.predictions is not None:
        model, info = None, {}
        tasks = [t for t in dataset.tasks if not args.tasks or t in args.tasks]
        source = f"predictions in {args.predictions}"
    else:
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
        source = str(args.checkpoint)
    print(f"evaluating {source} on {dataset.describe()} ({args.split}), tasks {tasks}")
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
        analyses=args.analyses,
    )
    meta = results.pop("_meta")
    print(f"protocol: {meta['protocol']}")
    print(results_table(results))
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
    from tridense.predict import parse_intrinsics, predict_files

    intrinsics = parse_intrinsics(args.intrinsics)
    model, info = _load(args.checkpoint, args.device)
    summary = predict_files(
        model,
        info,
        args.inputs,
        args.out,
        intrinsics=intrinsics,
        input_size=args.input_size,
        flip=args.flip,
        overwrite=args.overwrite,
        point_cloud=not args.no_point_cloud,
        palette=_palette(info),
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

    def progress(i: int, n: int) -> None:
        if i == n or i % 50 == 0:
            print(f"  {i}/{n}", flush=True)

    summary = write_dataset(
        dataset, args.out, split=args.split, count=args.count, overwrite=args.overwrite, progress=progress, info=info
    )
    print(f"wrote {summary['written']} {args.split} samples to {args.out} in {summary['seconds']} s")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from tridense.data.export import prepare_normals
    from tridense.data.registry import build_dataset

    dataset = build_dataset(args.dataset, args.root, args.split, tasks=["depth"], **_dataset_args(args.set))

    def progress(i: int, n: int) -> None:
        if i == n or i % 100 == 0:
            print(f"  {i}/{n}", flush=True)

    summary = prepare_normals(
        dataset,
        args.out,
        overwrite=args.overwrite,
        progress=progress,
        window=args.window,
        dilation=args.dilation,
        depth_sigma=args.depth_sigma,
        fit=args.fit,
    )
    print(
        f"wrote normals of {summary['written']} samples to {args.out} in {summary['seconds']} s "
        f"(valid fraction {summary['mean_valid_fraction']})"
    )
    return 0


def cmd_analyze_pairs(args: argparse.Namespace) -> int:
    from tridense.analysis.pairs import format_pairs_table, run_pairs
    from tridense.data.io import write_json

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
        dataset_args=_dataset_args(args.set),
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
    sample = None
    if args.dataset is not None:
        from tridense.checkpoints import read_checkpoint
        from tridense.inference import model_input_size

        size = model_input_size(read_checkpoint(args.checkpoint).get("tridense") or {})
        dataset = build_dataset(
            args.dataset, args.root, args.split, transform=eval_transforms(size), **_dataset_args(args.set)
        )
        sample = dataset[args.index]
    summary = save_structure_figure(
        args.checkpoint, args.out, image_path=args.image, sample=sample, overwrite=args.overwrite
    )
    print(json.dumps(summary, indent=2))
    return 0


# --------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tridense", description="Joint depth, normals and segmentation.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model (no arguments: the embedded default on synthetic scenes)")
    p.add_argument("--config", type=Path, help="YAML config (default: the built-in defaults, see configs/default.yaml)")
    p.add_argument("--resume", type=Path, help="continue the run in this folder from its last checkpoint")
    p.add_argument("overrides", nargs="*", help="config overrides key=value, e.g. trainer.max_steps=100")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="metrics of a checkpoint (or of saved predictions) on a dataset split")
    p.add_argument("--checkpoint", type=Path, help="training .ckpt or exported package folder")
    p.add_argument(
        "--predictions",
        type=Path,
        help="score the predictions saved in this folder (NAME_depth.npy/.png, NAME_normals.npy, NAME_semseg.png) "
        "instead of running a model",
    )
    p.add_argument(
        "--protocol", help="named evaluation protocol fixing every metric convention (tridense info; docs/metrics.md)"
    )
    p.add_argument("--dataset", required=True, help="dataset name (tridense info)")
    p.add_argument("--root", type=Path, help="dataset root folder")
    p.add_argument("--split", default="test")
    p.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="dataset arguments, e.g. label_set=13")
    p.add_argument("--tasks", nargs="*", choices=["depth", "normals", "semseg"], help="evaluate only these")
    p.add_argument("--flip", action="store_true", help="average with the horizontally flipped image")
    p.add_argument(
        "--resize",
        choices=["pred", "gt"],
        default="pred",
        help="pred: predictions resized to the ground truth (default); gt: ground truth resized",
    )
    p.add_argument("--crop", help="depth evaluation crop (eigen_nyu, garg, eigen_kitti)")
    p.add_argument("--min-depth", type=float, default=1e-3)
    p.add_argument("--max-depth", type=float, default=10.0)
    p.add_argument("--reduction", choices=["image", "pixel"], default="image")
    p.add_argument("--kitti", action="store_true", help="also the KITTI benchmark metrics")
    p.add_argument(
        "--analyses",
        nargs="*",
        default=[],
        choices=["boundary", "instance", "background"],
        help="ASM's extra evaluations: boundary F-measure, instance-wise depth/normal metrics, background confusion",
    )
    p.add_argument("--input-size", type=_size, help="model input HxW (default: the training size)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--limit", type=int, help="evaluate only the first N samples")
    p.add_argument("--save", type=Path, help="also write the predictions to this folder")
    p.add_argument("--json", type=Path, help="write the metrics to this JSON file")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="predict depth, normals and segmentation for images")
    p.add_argument("--checkpoint", type=Path, required=True, help="training .ckpt or exported package folder")
    p.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--intrinsics", help="fx,fy,cx,cy of the input images (default: the training camera, scaled)")
    p.add_argument("--input-size", type=_size, help="model input HxW (default: the training size)")
    p.add_argument("--flip", action="store_true", help="average with the horizontally flipped image")
    p.add_argument("--no-point-cloud", action="store_true")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="write a self-contained inference package (safetensors + config)")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("render", help="write synthetic scenes to disk in the folder format")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--split", default="train", choices=["train", "val", "test"])
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--size", type=_size, default=(240, 320), help="HxW (default 240x320)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clean", action="store_true", help="no sensor-like invalid depth (glass, edge dropouts)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("prepare", help="prepare ground truth a dataset lacks")
    prep = p.add_subparsers(dest="what", required=True)
    q = prep.add_parser("normals", help="normals from depth by local plane fits (the classic procedure)")
    q.add_argument("--dataset", required=True)
    q.add_argument("--root", type=Path)
    q.add_argument("--split", default="train")
    q.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="dataset arguments")
    q.add_argument("--out", type=Path, required=True, help="normals folder the dataset then reads (normals_dir)")
    q.add_argument("--window", type=int, default=7)
    q.add_argument("--dilation", type=int, default=2)
    q.add_argument("--depth-sigma", type=float, default=0.05)
    q.add_argument("--fit", choices=["tls", "algebraic"], default="tls")
    q.add_argument("--overwrite", action="store_true")
    q.set_defaults(func=cmd_prepare)

    p = sub.add_parser("analyze", help="the papers' analyses")
    ana = p.add_subparsers(dest="what", required=True)
    q = ana.add_parser("pairs", help="PAP Fig. 1: how often similar / dissimilar pixel pairs match across tasks")
    q.add_argument("--dataset", required=True)
    q.add_argument("--root", type=Path)
    q.add_argument("--split", default="test")
    q.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="dataset arguments")
    q.add_argument("--predictions", type=Path, help="folder of predictions (tridense predict / evaluate --save)")
    q.add_argument("--stride", type=int, default=16, help="grid step in pixels (default 16)")
    q.add_argument("--depth-threshold", type=float, default=0.2, help="relative depth difference (default 0.2)")
    q.add_argument("--normal-similar", type=float, default=26.0, help="similar below this angle (degrees)")
    q.add_argument("--normal-dissimilar", type=float, default=40.0, help="dissimilar above this angle (degrees)")
    q.add_argument("--limit", type=int)
    q.add_argument("--json", type=Path, help="write the result as JSON")
    q.add_argument("--overwrite", action="store_true")
    q.set_defaults(func=cmd_analyze_pairs)
    q = ana.add_parser("affinity", help="PAP Fig. 5: one pixel's affinity map, single-task vs cross-task")
    q.add_argument("--checkpoint", type=Path, required=True, help="a PAP checkpoint or exported package")
    q.add_argument("--image", type=Path, required=True)
    q.add_argument("--point", required=True, help="x,y pixel of the image")
    q.add_argument("--out", type=Path, required=True, help="PNG to write")
    q.add_argument("--overwrite", action="store_true")
    q.set_defaults(func=cmd_analyze_affinity)
    q = ana.add_parser("structure", help="ASM Figs. 3-4: the analyzer's layer-wise error maps and reconstructions")
    q.add_argument("--checkpoint", type=Path, required=True, help="a checkpoint of method adversarial (asm)")
    q.add_argument("--image", type=Path, help="an image (no ground truth: prediction vs its reconstruction)")
    q.add_argument("--dataset", help="or a dataset sample with ground truth: dataset name")
    q.add_argument("--root", type=Path)
    q.add_argument("--split", default="test")
    q.add_argument("--index", type=int, default=0)
    q.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="dataset arguments")
    q.add_argument("--out", type=Path, required=True, help="PNG to write")
    q.add_argument("--overwrite", action="store_true")
    q.set_defaults(func=cmd_analyze_structure)

    p = sub.add_parser("info", help="list models, datasets and crops")
    p.add_argument("--dataset", help="print this dataset's documentation and on-disk layout")
    p.set_defaults(func=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (TridenseError, FileExistsError) as err:
        print(f"tridense {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
