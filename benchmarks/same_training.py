"""Does a refactor train exactly what the code before it trained? Compare two source trees on one tiny run.

Trains the same config (default: the embedded default PAP, shrunk to 8 deterministic float32 steps) once with
each source tree (``PYTHONPATH=<tree>/src python -m tridense train``) and compares the best checkpoints tensor
by tensor and the test metrics::

    git worktree add /tmp/base 6b991e0
    python benchmarks/same_training.py --base /tmp/base --new . [--config configs/pap/table2_recon.yaml]

Prints the number of differing tensors and the largest metric difference; exits 1 when the weights differ.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

TINY = [
    "data.size=[32,48]",
    "data.batch_size=4",
    "data.num_workers=0",
    "data.split_args={train: {length: 16}, val: {length: 4}, test: {length: 4}}",
    "trainer.progress_bar=false",
    "trainer.precision=32-true",
    "trainer.val_every_n_steps=null",
    "eval.panel_samples=0",
    "trainer.max_steps=8",
    "trainer.deterministic=true",
]


def train(tree: Path, run_dir: Path, config: Path | None) -> None:
    """One tiny run with the sources (and the config file, relative to the tree) of ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "tridense", "train", *TINY, f"run_dir={run_dir}"]
    if config is not None:
        args[4:4] = ["--config", str(tree / config)]
    proc = subprocess.run(args, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"training with {tree} failed:\n{proc.stderr[-3000:]}")


def flat(results: dict, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in results.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}/"))
        elif isinstance(value, int | float):
            out[f"{prefix}{key}"] = float(value)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="source tree before the change")
    parser.add_argument("--new", type=Path, default=Path("."), help="source tree after the change")
    parser.add_argument("--config", type=Path, help="config file relative to each tree (default: the embedded default)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = {name: Path(tmp) / name for name in ("base", "new")}
        for name, tree in (("base", args.base), ("new", args.new)):
            train(tree.resolve(), runs[name], args.config)
        ckpt = {n: torch.load(r / "checkpoints" / "best.ckpt", weights_only=True) for n, r in runs.items()}
        a, b = ckpt["base"]["state_dict"], ckpt["new"]["state_dict"]
        differing = [k for k in a if k not in b or not torch.equal(a[k], b[k])]
        metrics = {n: flat(json.loads((r / "metrics" / "test.json").read_text())["results"]) for n, r in runs.items()}
        gaps = {k: abs(metrics["base"][k] - metrics["new"].get(k, float("nan"))) for k in metrics["base"]}
    worst = max(gaps.items(), key=lambda kv: kv[1]) if gaps else ("-", 0.0)
    print(f"tensors: {len(a)} base, {len(b)} new; differing: {len(differing)} {differing[:5]}")
    print(f"test metrics: largest difference {worst[1]:.3g} ({worst[0]})")
    return 1 if differing or set(a) != set(b) else 0


if __name__ == "__main__":
    sys.exit(main())
