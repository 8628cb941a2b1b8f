"""A toy two-optimiser training method for the tests of the method seam: a tiny depth generator (registered as
the model ``toy_generator``) and a critic, trained in a minimax under manual optimisation (method
``toy_gan``), with the evaluation of ``dense``.

Imported, it registers both. Run as a script it is the ``tridense`` command with them registered
(``python tests/training/toy_gan.py train method.name=toy_gan ...``), so DDP children (which re-run the
command) and killed-and-resumed runs find them too.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict
from torch import nn

from tridense.losses.multitask import MultiTaskLoss
from tridense.models.registry import list_models, register_model
from tridense.training.config import Config, EvalConfig, OptimConfig
from tridense.training.methods import METHODS, register_method
from tridense.training.module import DenseModule


class ToyGenerator(nn.Module):
    """Image -> positive depth (B, 1, H, W): two 3x3 convolutions."""

    def __init__(self) -> None:
        super().__init__()
        self.tasks = ("depth",)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1))

    def forward(self, image: torch.Tensor) -> dict[str, Any]:
        return {"depth": F.softplus(self.body(image)) + 0.1}


class ToyCritic(nn.Module):
    """Depth map (B, 1, H, W) -> realness logit (B,)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Linear(4, 1)

    def forward(self, depth: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.conv(depth)).mean(dim=(2, 3)))[:, 0]  # (B, 4) -> (B,)


def toy_generator(
    *,
    encoder: str = "none",
    pretrained: bool | str = False,
    tasks: Sequence[str] | None = None,
    num_classes: int | None = None,
    **args: Any,
) -> ToyGenerator:
    """Test-only toy depth generator."""
    return ToyGenerator()


class ToyGANOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    critic_lr: float = 1e-3
    adversarial_weight: float = 0.1
    #: Seconds to sleep per step (lets a test kill the run mid-training).
    delay: float = 0.0
    #: Raise at this step (a crash in the middle of training).
    crash_at: int | None = None


class ToyGAN(DenseModule):
    """Generator (the model, with the dense loss plus an adversarial term) and critic, one step each per batch."""

    def __init__(
        self,
        model: nn.Module,
        loss: MultiTaskLoss,
        *,
        options: ToyGANOptions,
        optim: OptimConfig,
        evaluation: EvalConfig,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, loss, optim=optim, evaluation=evaluation, **kwargs)
        self.automatic_optimization = False
        self.critic = ToyCritic()
        self.options = options
        self.critic_optim = optim.model_copy(update={"lr": options.critic_lr, "encoder_lr": None, "groups": {}})
        self.clipped: list[tuple[int, float]] = []  # (optimiser index, gradient norm after clipping)

    @classmethod
    def from_config(cls, cfg: Config, **parts: Any) -> ToyGAN:
        return cls(
            parts["model"],
            parts["loss"],
            tasks=parts["tasks"],
            num_classes=parts["num_classes"],
            info=parts["info"],
            options=ToyGANOptions(**cfg.method.args),
            optim=cfg.optim,
            evaluation=cfg.eval,
            seed=cfg.seed,
            max_steps=cfg.trainer.max_steps,
        )

    def configure_optimizers(self) -> list[dict[str, Any]]:
        pairs = [
            self.optimizer_and_scheduler(self.model.named_parameters(), self.optim_cfg),
            self.optimizer_and_scheduler(self.critic.named_parameters(), self.critic_optim),
        ]
        return [{"optimizer": opt, "lr_scheduler": {"scheduler": sch, "interval": "step"}} for opt, sch in pairs]

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        if self.step == self.options.crash_at:
            raise RuntimeError(f"simulated crash at step {self.step}")
        self.seed_step()
        gen_opt, critic_opt = self.optimizers()
        gen_sched, critic_sched = self.lr_schedulers()
        fake = self.model(batch["image"])
        real = batch["depth"]
        ones = torch.ones(real.shape[0], device=real.device)
        zeros = torch.zeros_like(ones)
        noise = 0.01 * torch.randn_like(real)  # drawn from the step's seed: resumes must redraw it exactly

        critic_loss = F.binary_cross_entropy_with_logits(self.critic(real + noise), ones)
        critic_loss = critic_loss + F.binary_cross_entropy_with_logits(self.critic(fake["depth"].detach()), zeros)
        critic_opt.zero_grad()
        self.manual_backward(critic_loss)
        critic_opt.step()
        critic_sched.step()

        terms = self.loss(fake, batch)
        adversarial = F.binary_cross_entropy_with_logits(self.critic(fake["depth"]), ones)
        gen_opt.zero_grad()
        self.manual_backward(terms["total"] + self.options.adversarial_weight * adversarial)
        gen_opt.step()
        gen_sched.step()
        self.log_dict({"train/critic": critic_loss.detach(), "train/total": terms["total"].detach()})
        if self.options.delay:
            time.sleep(self.options.delay)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        super().on_before_optimizer_step(optimizer)
        index = [o.optimizer for o in self.optimizers()].index(optimizer)
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        self.clipped.append((index, float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))))


class ToyGeneratorOptions(BaseModel):
    """The toy generator takes no ``model.args``."""

    model_config = ConfigDict(extra="forbid")


if "toy_generator" not in list_models():
    register_model(options=ToyGeneratorOptions)(toy_generator)
if "toy_gan" not in METHODS:
    register_method("toy_gan", options=ToyGANOptions)(ToyGAN)


if __name__ == "__main__":
    from tridense.cli import main

    sys.exit(main())
