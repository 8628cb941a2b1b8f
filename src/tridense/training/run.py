"""``tridense train``: one run folder, from config to the tested best checkpoint.

Run folder::

    RUN/config.yaml              the resolved config (written once, atomically)
    RUN/checkpoints/best.ckpt    best by ``checkpoint.monitor``; last.ckpt: the latest validation (or epoch end)
    RUN/logs/tensorboard/        TensorBoard events;  RUN/logs/csv/metrics.csv: the same as CSV
    RUN/panels/step_*.png        input | prediction | ground truth | error of fixed validation samples
    RUN/metrics/test.json, .md   metrics of the BEST checkpoint on the test split
    RUN/summary.json             steps and batches (the module's counts), epochs, wall time, device, best score

A run is :func:`build_experiment` (data, model, loss, the module of ``method.name``) trained by the Trainer of
:func:`build_trainer`. ``--resume RUN`` continues from ``RUN/checkpoints/last.ckpt`` with ``RUN/config.yaml`` (and
its logs). Checkpoints are written at validations, and at the current step on Ctrl-C / SIGTERM (see
:mod:`tridense.training.interrupt`); with the same seed and deterministic settings a resumed run reaches the
same result as an uninterrupted one. ``trainer.max_time`` is a total over all invocations of a run.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn

from tridense import __version__
from tridense.checkpoints import load_weights, read_checkpoint
from tridense.data.io import atomic_write, write_json
from tridense.errors import ConfigError
from tridense.losses.multitask import MultiTaskLoss
from tridense.training.base import MethodModule
from tridense.training.build import build_loss, build_model_and_tasks, dataset_info, freeze
from tridense.training.callbacks import FrozenBatchNorm, PanelCallback, SafeCheckpointIO, palette_for
from tridense.training.config import Config, dump_config, load_config
from tridense.training.data import DenseDataModule
from tridense.training.interrupt import (
    ContinuingCSVLogger,
    InterruptCheckpoint,
    RunAnnouncer,
    finished_checkpoint,
    interrupted_as_error,
    parse_max_time,
)
from tridense.training.methods import method_class

RUN_DIR_ENV = "TRIDENSE_RUN_DIR"


def is_child_process() -> bool:
    """A process started by a DDP launcher for a rank other than 0."""
    return any(int(os.environ.get(k, "0") or 0) > 0 for k in ("LOCAL_RANK", "RANK", "NODE_RANK"))


def resolve_precision(precision: str, accelerator: str) -> str:
    """``auto``: bf16 (or fp16) mixed precision on a GPU; on the CPU bf16 where it has AMX tiles, else 32-bit.

    On a CPU with AMX (Intel Sapphire Rapids and later) oneDNN runs bf16 convolutions on the tile unit: a
    PAP-ResNet-18 training step of batch 8 at 96x128 takes 0.30 s instead of 0.44 s on two cores
    (``benchmarks/models.py --models pap --train-size 96x128 --precision bf16``, and ``32``).
    Elsewhere ``auto`` keeps float32: without the tile unit bf16 convolutions gain little or lose (not
    measured by this project, whose machines have AMX; ``trainer.precision=bf16-mixed`` forces it).
    """
    if precision != "auto":
        return precision
    if torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda"):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    if accelerator in ("auto", "cpu") and cpu_has_amx():
        return "bf16-mixed"
    return "32-true"


def cpu_has_amx() -> bool:
    """Whether this CPU has the AMX tile unit that makes bf16 convolutions fast (oneDNN)."""
    check = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(check and check() and torch.backends.mkldnn.is_available())


def _new_run_dir(cfg: Config) -> Path:
    if cfg.run_dir:
        return Path(cfg.run_dir)
    if os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.model.name}-{cfg.data.dataset}-{stamp}"


def prepare_run(
    cfg: Config | None, overrides: list[str], resume: str | Path | None, *, retest: bool = False
) -> tuple[Config, Path, Path | None]:
    """Resolve the run folder (new or resumed), write its config, and find the checkpoint to resume from.

    Resuming a run that stopped before its first checkpoint starts it again from step 0 with its config;
    resuming a finished run (``metrics/test.json`` exists) without overrides is refused unless ``retest``.
    """
    if resume is not None:
        run_dir = Path(resume)
        config_file = run_dir / "config.yaml"
        if not config_file.is_file():
            raise ConfigError(f"cannot resume {run_dir}: no config.yaml (is it a tridense run folder?)")
        cfg = load_config(config_file, overrides)
        cfg.trainer.max_time = parse_max_time(cfg.trainer.max_time)
        if retest:
            tested = finished_checkpoint(run_dir) or run_dir / "checkpoints" / "last.ckpt"
            read_checkpoint(tested)  # fails clearly if missing or unreadable
            return cfg, run_dir, tested
        if finished_checkpoint(run_dir) is not None and not overrides:
            raise ConfigError(
                f"run {run_dir} is finished (its test metrics are in {run_dir / 'metrics'}); to test its best "
                f"checkpoint again: tridense train --resume {run_dir} --retest; to train it further, resume with "
                "a larger limit, e.g. trainer.max_steps=N"
            )
        last = run_dir / "checkpoints" / "last.ckpt"
        if not last.is_file():
            print(f"{run_dir} has no checkpoint yet (it stopped before the first one): starting it from step 0")
            return cfg, run_dir, None
        read_checkpoint(last)  # fails clearly if the file is unreadable
        return cfg, run_dir, last
    assert cfg is not None
    cfg.trainer.max_time = parse_max_time(cfg.trainer.max_time)
    run_dir = _new_run_dir(cfg)
    if not is_child_process():
        if run_dir.exists() and any(run_dir.iterdir()):
            raise ConfigError(
                f"run folder {run_dir} exists and is not empty; resume it with --resume {run_dir} "
                "or choose another run_dir"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg.run_dir = str(run_dir)
        with atomic_write(run_dir / "config.yaml", mode="w") as handle:
            handle.write(dump_config(cfg))
    cfg.run_dir = str(run_dir)
    return cfg, run_dir, None


@dataclass
class Experiment:
    """Everything a run trains: data, model, loss and the method's LightningModule (``build_experiment``)."""

    datamodule: DenseDataModule
    module: MethodModule
    model: nn.Module
    loss: MultiTaskLoss
    #: Tasks trained and evaluated (those of the model that the dataset has).
    tasks: tuple[str, ...]
    #: Names of batch-norm modules left without trainable parameters (``init.freeze``).
    frozen_bn: list[str]
    #: What checkpoints keep under ``"tridense"``.
    info: dict[str, Any]


def build_experiment(cfg: Config, *, initialise: bool = True) -> Experiment:
    """Data, model (initialised from ``init.checkpoint`` when ``initialise``, then frozen), loss, and the
    module of ``method.name``; the task list is resolved once, by :func:`build_model_and_tasks`."""
    hha = bool((cfg.model.args or {}).get("hha", False))  # a model reading the HHA of the depth (GAD's +HHA)
    datamodule = DenseDataModule(cfg.data, seed=cfg.seed, tasks=cfg.data.tasks, hha=hha)
    train_set = datamodule.dataset(cfg.data.train_split, train=True)
    model, tasks = build_model_and_tasks(cfg, train_set)
    if cfg.init.checkpoint and initialise:
        report = load_weights(model, cfg.init.checkpoint, strict=cfg.init.strict)
        print(
            f"initialised {len(report['loaded'])} tensors from {cfg.init.checkpoint} "
            f"({len(report['missing'])} kept their initialisation, {len(report['skipped'])} skipped)"
        )
    frozen_bn = freeze(model, cfg.init.freeze)
    info = {
        "version": __version__,
        "config": cfg.to_dict(),
        "model_tasks": list(getattr(model, "tasks", tasks)),
        "tasks": list(tasks),
        "input_size": list(cfg.data.size) if cfg.data.size else None,
        **dataset_info(train_set),
    }
    loss = build_loss(cfg.loss, tasks, model_name=cfg.model.name)
    module = method_class(cfg.method.name).from_config(
        cfg, model=model, loss=loss, tasks=tasks, num_classes=train_set.num_classes, info=info
    )
    return Experiment(datamodule, module, model, loss, tasks, frozen_bn, info)


def _trainer_kwargs(cfg: Config, module: L.LightningModule) -> dict[str, Any]:
    t = cfg.trainer
    kwargs: dict[str, Any] = {
        # A manual-optimisation module counts its steps and stops itself (trainer.global_step counts every
        # optimizer.step(), e.g. twice per batch with two optimisers); see tridense.training.base.
        "max_steps": t.max_steps if module.automatic_optimization else -1,
        "max_epochs": t.max_epochs,
        "max_time": t.max_time,
        "accelerator": t.accelerator,
        "devices": t.devices,
        "num_nodes": t.num_nodes,
        "strategy": t.strategy,
        "precision": resolve_precision(t.precision, t.accelerator),
        "limit_val_batches": t.limit_val_batches,
        "log_every_n_steps": t.log_every_n_steps,
        "deterministic": t.deterministic,
        "enable_progress_bar": t.progress_bar,
        "use_distributed_sampler": False,  # EpochSampler shards by rank itself
        "num_sanity_val_steps": 0,
        # No gradient_clip_val: every method clips before each optimiser step (MethodModule), which also
        # works under manual optimisation.
    }
    if t.val_every_n_steps:
        kwargs["val_check_interval"] = t.val_every_n_steps
        kwargs["check_val_every_n_epoch"] = None
    else:
        kwargs["check_val_every_n_epoch"] = t.val_every_n_epochs
    return kwargs


class RunCallbacks(NamedTuple):
    """The callbacks of a run that :func:`train` reads after fitting."""

    best: ModelCheckpoint  # checkpoints/best.ckpt, by checkpoint.monitor
    last: ModelCheckpoint  # checkpoints/last.ckpt, at every validation / epoch end
    interrupt: InterruptCheckpoint  # checkpoints/last.ckpt at the current step on Ctrl-C / SIGTERM


def build_trainer(
    cfg: Config, experiment: Experiment, run_dir: Path, *, resume_step: int | None = None
) -> tuple[L.Trainer, RunCallbacks]:
    """The Trainer of a run, writing into ``run_dir`` (loggers, panels, progress bar), and its checkpoint
    callbacks. ``resume_step``: the Lightning step of the checkpoint a resumed run continues from (its logs
    continue after it)."""
    checkpoint_cb = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best",
        monitor=cfg.checkpoint.monitor,
        mode=cfg.checkpoint.mode,
        save_top_k=1,
        enable_version_counter=False,
        auto_insert_metric_name=False,
    )
    # last.ckpt at every validation / epoch end. (Lightning's save_last=True writes it only when the monitored
    # metric improved, so it was the best checkpoint, not the latest, and a resume went back to it.)
    last_cb = ModelCheckpoint(
        dirpath=run_dir / "checkpoints", filename="last", save_top_k=1, enable_version_counter=False
    )
    interrupt_cb = InterruptCheckpoint(run_dir / "checkpoints" / "last.ckpt")
    callbacks: list[L.Callback] = [
        checkpoint_cb,
        last_cb,
        interrupt_cb,
        RunAnnouncer(run_dir, cfg.trainer.max_time, cfg.trainer.max_steps),
    ]
    if cfg.trainer.progress_bar:
        callbacks.append(TQDMProgressBar(refresh_rate=10))
    if experiment.frozen_bn:
        callbacks.append(FrozenBatchNorm(experiment.frozen_bn))
    if cfg.eval.panel_samples > 0:
        val_set = experiment.datamodule.dataset(cfg.data.val_split, train=False)
        samples = [val_set[i] for i in range(min(cfg.eval.panel_samples, len(val_set)))]
        palette = palette_for(experiment.info["num_classes"], experiment.info.get("nyu40_ids"))
        callbacks.append(PanelCallback(samples, run_dir / "panels", palette, experiment.info.get("class_names")))
    tb_continue = {"purge_step": resume_step + 1} if resume_step is not None else {}  # drop events logged after it
    loggers = [
        TensorBoardLogger(run_dir / "logs", name="tensorboard", version="", default_hp_metric=False, **tb_continue),
        ContinuingCSVLogger(run_dir / "logs", name="csv", version="", resume_step=resume_step),
    ]
    trainer = L.Trainer(
        callbacks=callbacks,
        logger=loggers,
        plugins=[SafeCheckpointIO()],
        default_root_dir=run_dir,
        **_trainer_kwargs(cfg, experiment.module),
    )
    return trainer, RunCallbacks(checkpoint_cb, last_cb, interrupt_cb)


def train(
    cfg: Config | None = None,
    *,
    overrides: list[str] | None = None,
    resume: str | Path | None = None,
    retest: bool = False,
) -> Path:
    """Train, test the best checkpoint and write everything into the run folder; returns the folder.

    ``retest`` (with ``resume``): only test the finished run's best checkpoint again.
    """
    started = time.time()
    cfg, run_dir, resume_from = prepare_run(cfg, overrides or [], resume, retest=retest)
    os.environ[RUN_DIR_ENV] = str(run_dir)  # DDP children re-run the command and must find the same folder
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    experiment = build_experiment(cfg, initialise=resume_from is None)
    resuming = resume_from is not None and not retest
    resume_step = read_checkpoint(resume_from).get("global_step", 0) if resuming else None  # logs continue from it
    trainer, cbs = build_trainer(cfg, experiment, run_dir, resume_step=resume_step)
    module, datamodule = experiment.module, experiment.datamodule
    if retest:
        best = str(resume_from)
    else:
        with interrupted_as_error(cbs.interrupt, run_dir):
            trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
        best = cbs.best.best_model_path or cbs.last.best_model_path
        if not best:  # no validation ran (e.g. max_steps below trainer.val_every_n_steps): keep the final weights
            final = run_dir / "checkpoints" / "last.ckpt"
            trainer.save_checkpoint(final)
            best = str(final)
            if trainer.is_global_zero:
                print(
                    f"no validation ran before training ended at step {module.step} (trainer.val_every_n_steps="
                    f"{cfg.trainer.val_every_n_steps}): testing the final weights, saved to {final}"
                )
    steps, batches = module.step, module.batches  # testing the best checkpoint restores its counters
    trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False)
    if trainer.is_global_zero:
        write_results(
            run_dir, module.test_results, checkpoint=best, split=cfg.data.test_split, protocol=cfg.eval.protocol
        )
    if trainer.is_global_zero and not retest:  # a retest keeps the training summary
        summary = {
            "steps": steps,
            "batches": batches,
            "epochs": trainer.current_epoch,
            "seconds": round(time.time() - started, 1),
            "best_checkpoint": str(best),
            "best_score": None if cbs.best.best_model_score is None else float(cbs.best.best_model_score),
            "precision": str(trainer.precision),
            "device": str(trainer.strategy.root_device),
            "world_size": trainer.world_size,
            "torch_threads": torch.get_num_threads(),
        }
        write_json(run_dir / "summary.json", summary, overwrite=True)
    return run_dir


def results_table(results: dict[str, dict[str, Any]]) -> str:
    """Markdown table of {task: {metric: value}} (per-class lists left out)."""
    lines = ["| task | metric | value |", "|---|---|---|"]
    for task, metrics in results.items():
        for metric, value in metrics.items():
            if isinstance(value, list | tuple):
                continue
            lines.append(f"| {task} | {metric} | {value:.4f} |")
    return "\n".join(lines) + "\n"


def write_results(
    run_dir: Path, results: dict[str, Any], *, checkpoint: str | Path, split: str, protocol: str | None = None
) -> None:
    from tridense.training.module import score

    protocol = protocol or "custom"  # custom: the eval section's own settings (config.yaml)
    payload = {
        "checkpoint": str(checkpoint),
        "split": split,
        "protocol": protocol,
        "score": score(results),
        "results": results,
    }
    write_json(run_dir / "metrics" / "test.json", payload, overwrite=True)
    text = (
        f"# Test metrics\n\ncheckpoint: `{checkpoint}`, split: `{split}`, protocol: `{protocol}`, "
        f"score: {payload['score']:.4f}\n\n"
    )
    with atomic_write(run_dir / "metrics" / "test.md", mode="w", overwrite=True) as handle:
        handle.write(text + results_table(results))
