"""Training a defence from scratch: Adam, class-balanced sampling, model selection on dev UAR."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from trainables.evaluation import predict
from trainables.metrics import uar
from trainables.settings import DefenceTrainingSettings


class DefenceTrainer:
    """Trains ``model`` on in-memory tensors; keeps the weights with the best dev UAR.
    Checkpointable at any evaluation point (``state_dict``/``load_state_dict``). ``seed`` draws
    the minibatches; ``amp``: bf16 autocast (the weights and the loss stay fp32)."""

    def __init__(self, model: nn.Module, train: tuple[torch.Tensor, torch.Tensor],
                 dev: tuple[torch.Tensor, torch.Tensor],
                 settings: DefenceTrainingSettings = DefenceTrainingSettings(), seed: int = 0,
                 amp: bool = False) -> None:
        self.model, self.settings, self.amp = model, settings, amp
        (self.x, self.y), self.dev = train, dev
        self.generator = torch.Generator(device=self.y.device).manual_seed(seed)
        counts = torch.bincount(self.y, minlength=int(self.y.max()) + 1).float()
        weights = (1.0 / counts.clamp(min=1))[self.y] if settings.balanced else \
            torch.ones(len(self.y), device=self.y.device)
        self.weights = weights / weights.sum()
        self.optimiser = torch.optim.Adam(model.parameters(), lr=settings.lr)
        self.iteration = 0
        self.best_uar = -1.0
        self.best_state = copy.deepcopy(model.state_dict())
        self.best_iteration = 0

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.multinomial(self.weights, self.settings.batch_size, replacement=True,
                                  generator=self.generator)
        x = self.x[index]
        if self.settings.noise_rms > 0:
            x = x + self._noise(x.shape)
        return x, self.y[index]

    def _noise(self, shape: torch.Size) -> torch.Tensor:
        """The training noise (``DefenceTrainingSettings.noise_rms``), drawn from the trainer's
        generator so that a resumed defence draws what it would have."""
        device, generator = self.x.device, self.generator
        scale = torch.rand(shape[0], device=device, generator=generator) * self.settings.noise_rms
        noisy = torch.rand(shape[0], device=device, generator=generator) \
            < self.settings.noise_probability
        noise = torch.randn(shape, device=device, generator=generator).abs_()
        return noise * (scale * noisy).view(-1, *[1] * (len(shape) - 1)).to(noise.dtype)

    def evaluate(self) -> float:
        self.model.eval()
        with torch.autocast(self.x.device.type, dtype=torch.bfloat16, enabled=self.amp):
            score = uar(self.dev[1].cpu().numpy(), predict(self.model, self.dev[0]))
        self.model.train()
        if score > self.best_uar:
            self.best_uar, self.best_iteration = score, self.iteration
            self.best_state = copy.deepcopy(self.model.state_dict())
        return score

    def run(self, on_eval: Callable[[dict, DefenceTrainer], None] | None = None) -> nn.Module:
        """Train to the end; returns the model with its best weights loaded."""
        self.model.train()
        running = torch.zeros((), device=self.x.device)
        while self.iteration < self.settings.iterations:
            x, y = self._batch()
            with torch.autocast(self.x.device.type, dtype=torch.bfloat16,
                                enabled=self.amp):
                loss = F.nll_loss(self.model(x).float(), y)
            self.optimiser.zero_grad(set_to_none=True)
            loss.backward()
            self.optimiser.step()
            running += loss.detach()
            self.iteration += 1
            if self.iteration % self.settings.eval_every == 0 or \
                    self.iteration == self.settings.iterations:
                steps = (self.iteration - 1) % self.settings.eval_every + 1
                metrics = {"iteration": self.iteration, "train_loss": running.item() / steps,
                           "dev_uar": self.evaluate(), "best_dev_uar": self.best_uar}
                running.zero_()
                if on_eval:
                    on_eval(metrics, self)
        self.model.load_state_dict(self.best_state)
        self.model.eval()
        return self.model

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimiser": self.optimiser.state_dict(),
                "iteration": self.iteration, "best_uar": self.best_uar,
                "best_state": self.best_state, "best_iteration": self.best_iteration,
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.iteration, self.best_uar = int(state["iteration"]), float(state["best_uar"])
        self.best_state, self.best_iteration = state["best_state"], int(state["best_iteration"])
        self.generator.set_state(state["generator"])
