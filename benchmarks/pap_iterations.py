"""PAP's Fig. 4: accuracy and inference time against the number of diffusion steps T, for a trained model.

The diffusion steps of a trained PAP model are changed at test time (``PAPNet.set_iterations``); for each T
the model is evaluated on a split and timed on one image. Prints one JSON object per line with ``T``,
``seconds`` (median inference time of one image at the model's input size, batch 1), the depth ``rmse``,
the segmentation ``miou`` and the normal angle ``rmse`` (those the model predicts).

    python benchmarks/pap_iterations.py --checkpoint runs/RUN/checkpoints/best.ckpt
    python benchmarks/pap_iterations.py --checkpoint C --dataset nyuv2_labeled --root DIR --iterations 0 1 2 4 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from tridense.checkpoints import load_model
from tridense.data.registry import build_dataset
from tridense.evaluate import evaluate
from tridense.inference import model_input_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--root")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=100, help="samples evaluated per T")
    parser.add_argument("--iterations", type=int, nargs="*", default=[0, 1, 2, 3, 4, 6, 8, 12])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model, info = load_model(args.checkpoint)
    if not hasattr(model, "set_iterations") or getattr(model, "propagation", None) not in ("pap", "cspn"):
        parser.error(f"{args.checkpoint} is not a PAP (or CSPN) model: it has no diffusion steps to change")
    size = model_input_size(info)
    extra = {"size": tuple(size)} if args.dataset == "synthetic" and size else {}
    dataset = build_dataset(args.dataset, args.root, args.split, **extra)
    tasks = [t for t in model.tasks if t in dataset.tasks]
    image = torch.randn(1, 3, *(size or (480, 640)))
    trained_t = model.pap.iterations if model.propagation == "pap" else None
    for steps in args.iterations:
        model.set_iterations(steps)
        results = evaluate(model, dataset, tasks=tasks, input_size=size, limit=args.limit)
        with torch.inference_mode():
            model(image)
            times = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                model(image)
                times.append(time.perf_counter() - started)
        row = {"T": steps, "trained_T": trained_t, "seconds": round(statistics.median(times), 5)}
        if "depth" in results:
            row["rmse"] = round(results["depth"]["rmse"], 4)
        if "semseg" in results:
            row["miou"] = round(100 * results["semseg"]["miou"], 2)
        if "normals" in results:
            row["normal_rmse"] = round(results["normals"]["rmse"], 2)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
