"""Inference throughput, peak memory and training step time of every registered model.

    python benchmarks/models.py [--models mtl_baseline pap ...] [--device cpu|cuda] [--repeats 3]
    python benchmarks/models.py --models pap --model-arg mode=fused --train-size 480x640 --precision bf16

For each model, in a fresh subprocess (so peak memory is that model's alone), prints one JSON line:

- ``infer_b1_img_s`` / ``infer_b8_img_s``: images per second at 480x640 (batch 1 and 8), no_grad, eval mode;
- ``infer_peak_mb``: peak memory of the inference runs above what the loaded model already used (CPU: the
  process's maximum resident set size, ru_maxrss; CUDA: torch.cuda.max_memory_allocated);
- ``train_step_s``: one optimisation step (forward, loss, backward, fused AdamW, as training runs it) at
  ``--train-size`` with batch ``--train-batch`` (default 240x320, 8), under ``--precision`` (``32`` or
  ``bf16``: the autocast of ``trainer.precision=bf16-mixed``), median of the repeats;
- the machine: device name, threads, torch version; ``model_args``: the ``--model-arg`` options
  (``key=value``, the value read as YAML, e.g. ``mode=fused`` for PAP's propagation path).

The segmentation head has 14 classes (the synthetic scenes). Timings are medians of ``--repeats`` runs
after one warm-up.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time

import yaml

DEFAULT_MODELS = [
    "mtl_baseline", "single_depth", "single_normals", "single_semseg", "pap", "pap_resnet18", "pap_resnet50",
    "pap_vgg16_bn", "cross_stitch", "cspn",
]  # fmt: skip


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def measure(
    name: str,
    device: str,
    repeats: int,
    train_size: tuple[int, int],
    train_batch: int,
    precision: str = "32",
    model_args: dict | None = None,
) -> dict:
    import torch

    from tridense.losses import MultiTaskLoss, build_task_losses
    from tridense.models import create_model
    from tridense.ops import unit_vectors

    torch.manual_seed(0)
    model = create_model(name, num_classes=14, **(model_args or {})).to(device).eval()
    params_m = round(sum(p.numel() for p in model.parameters()) / 1e6, 2)
    result: dict = {"model": name, "device": device, "params_m": params_m, "model_args": model_args or {}}
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        result["device_name"] = torch.cuda.get_device_name()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux: KiB)
        result["device_name"] = platform.processor() or platform.machine()
        result["threads"] = torch.get_num_threads()
    with torch.no_grad():
        for batch in (1, 8):
            x = torch.randn(batch, 3, 480, 640, device=device)
            model(x)  # warm-up
            _sync(device)
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                model(x)
                _sync(device)
                times.append(time.perf_counter() - start)
            result[f"infer_b{batch}_img_s"] = round(batch / statistics.median(times), 2)
    if device == "cuda":
        result["infer_peak_mb"] = round((torch.cuda.max_memory_allocated() - base) / 2**20, 1)
    else:
        result["infer_peak_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base, 1)

    model.train()
    loss = MultiTaskLoss(build_task_losses(model.tasks))
    opt = torch.optim.AdamW(model.parameters(), 1e-4, fused=True)
    h, w = train_size
    g = torch.Generator().manual_seed(0)
    normals = torch.randn(train_batch, 3, h, w, generator=g)
    batch = {
        "image": torch.randn(train_batch, 3, h, w, generator=g).to(device),
        "depth": (torch.rand(train_batch, 1, h, w, generator=g) * 5 + 0.5).to(device),
        "normals": unit_vectors(normals).to(device),
        "semseg": torch.randint(0, 14, (train_batch, h, w), generator=g).to(device),
    }
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            terms = loss(model(batch["image"]), batch)
        opt.zero_grad()
        terms["total"].backward()
        opt.step()
        _sync(device)
        if i > 0:
            times.append(time.perf_counter() - start)
    result["train_step_s"] = round(statistics.median(times), 3)
    result["train_setting"] = f"{h}x{w} batch {train_batch} precision {precision}"
    result["torch"] = torch.__version__
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=DEFAULT_MODELS)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-size", default="240x320")
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--precision", default="32", choices=["32", "bf16"], help="of the training step")
    parser.add_argument(
        "--model-arg", action="append", default=[], metavar="KEY=VALUE", help="a model option (value read as YAML)"
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.train_size.split("x"))
    model_args = {}
    for item in args.model_arg:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--model-arg expects KEY=VALUE, got {item!r}")
        model_args[key] = yaml.safe_load(value)
    if args.one:
        result = measure(args.one, args.device, args.repeats, size, args.train_batch, args.precision, model_args)
        print(json.dumps(result), flush=True)
        return
    for name in args.models:
        cmd = [sys.executable, __file__, "--one", name, "--device", args.device, "--repeats", str(args.repeats),
               "--train-size", args.train_size, "--train-batch", str(args.train_batch), "--precision", args.precision]
        cmd += [f"--model-arg={item}" for item in args.model_arg]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = proc.stdout.strip().splitlines()[-1] if proc.returncode == 0 and proc.stdout.strip() else None
        print(line or json.dumps({"model": name, "error": proc.stderr.strip().splitlines()[-1:]}), flush=True)


if __name__ == "__main__":
    main()
