"""The one training loop of every strategy: the attacker trained over a plan's stages.

Defences are frozen and always in eval mode; the attacker's batch norm trains normally. Within a
stage: Adam, the learning rate decayed by ``lr_decay`` every ``lr_decay_every`` iterations,
minibatches drawn from in-memory tensors by a seeded generator. At the end of a stage the
regulariser sees the stage's loss (e.g. EWC estimates its Fisher); each new stage starts a fresh
optimiser and schedule on the carried-over attacker. The whole state is checkpointable, and a run
resumed from any iteration follows the same trajectory as an uninterrupted one.

A plan whose first stage equals another, one-stage plan (a transfer or lifelong trial and the
single-task trial on its first defence, with the same seed) trains that stage identically, so it
may start from that plan's final weights (``start_after_first_stage``) instead of training it again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch import nn

from trainables import metric_keys as keys
from trainables.losses import attack_loss
from trainables.regularisers import Regulariser, StageEnd
from trainables.settings import AttackSettings, LifelongSettings
from trainables.stages import Plan, Stage


@dataclass(frozen=True)
class LoopSettings:
    """What the stage loop runs with: the attack's schedule and the regulariser's importance
    estimate (declared in ``trainables.settings``), the trial's seed, and the runtime's
    numerics (bf16 autocast, on CUDA or a CPU with fast bf16; parameters, losses and the Fisher
    stay fp32)."""

    attack: AttackSettings = AttackSettings()
    lifelong: LifelongSettings = LifelongSettings()
    seed: int = 0
    amp: bool = False
    compile: bool = False  # torch.compile the attacker's training forward pass


@dataclass
class LoopCallbacks:
    """Hooks for the caller (a Ray trainable, a script, a test); every one is optional.

    ``on_log(metrics)`` at logging points; ``on_step(loop)`` after each step (checkpoints);
    ``on_stage_end(stages_done, loop)`` after a stage and its regulariser update (counted
    from 1: 1 after the first stage).
    """

    on_log: Callable[[dict], None] | None = None
    on_step: Callable[["StageLoop"], None] | None = None
    on_stage_end: Callable[[int, "StageLoop"], None] | None = None


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode and no gradients: a defence is a fixed target, its batch norm never updates."""
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


class StageLoop:
    """Trains ``attacker`` through ``plan.stages`` against ``defences`` (name -> frozen module)."""

    def __init__(self, attacker: nn.Module, defences: Mapping[str, nn.Module], plan: Plan,
                 regulariser: Regulariser, train_x: torch.Tensor, train_y: torch.Tensor,
                 settings: LoopSettings = LoopSettings()) -> None:
        self.attacker = attacker
        self.defences = {name: freeze(model) for name, model in defences.items()}
        missing = {d for s in plan.stages for d in s.defences} - set(self.defences)
        if missing:
            raise ValueError(f"plan names defences that were not given: {sorted(missing)}")
        self.plan, self.regulariser, self.settings = plan, regulariser, settings
        self.train_x, self.train_y = train_x, train_y
        self.device = train_x.device
        # On the data's device, so that drawing a batch never waits for the host.
        self.generator = torch.Generator(device=self.device).manual_seed(settings.seed)
        self.forward = (torch.compile(attacker, mode="max-autotune-no-cudagraphs")
                        if settings.compile else attacker)
        self.stage_index, self.iteration = 0, 0
        self.optimiser = self._new_optimiser()
        self._pending: list[torch.Tensor] = []

    @property
    def finished(self) -> bool:
        return self.stage_index >= len(self.plan.stages)

    @property
    def global_step(self) -> int:
        """Iterations done over all stages."""
        done = sum(s.iterations for s in self.plan.stages[: self.stage_index])
        return done + self.iteration

    def _new_optimiser(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.attacker.parameters(), lr=self.settings.attack.lr)

    def lr_at(self, iteration: int) -> float:
        """The stage's learning rate at ``iteration`` (step decay)."""
        s = self.settings.attack
        return s.lr * s.lr_decay ** (iteration // s.lr_decay_every)

    def stage_loss(self, stage: Stage) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor],
                                                    torch.Tensor]:
        """Per-sample attack loss ``(eta, x, y) -> (B,)`` of ``stage``."""
        s = self.settings.attack
        return partial(attack_loss, defences=[self.defences[d] for d in stage.defences],
                       alpha=s.alpha, margin_scale=s.margin_scale)

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.randint(len(self.train_x), (self.settings.attack.batch_size,),
                              generator=self.generator, device=self.device)
        return self.train_x[index], self.train_y[index]

    def _importance_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        s, importance = self.settings, self.settings.lifelong
        # A generator of their own, seeded by (seed, stage): the minibatch stream stays the same
        # whatever the regulariser, so plans that share a first stage share its whole state.
        seed = int(np.random.SeedSequence([s.seed, self.stage_index]).generate_state(1)[0])
        generator = torch.Generator(device=self.device).manual_seed(seed)
        order = torch.randperm(len(self.train_x), generator=generator,
                               device=self.device)[: importance.fisher_samples]
        return [(self.train_x[i], self.train_y[i])
                for i in order.split(importance.fisher_batch_size)]

    def step(self, loss_fn) -> None:
        """One optimisation step; keeps the logged values on the device (no host sync)."""
        x, y = self._batch()
        for group in self.optimiser.param_groups:
            group["lr"] = self.lr_at(self.iteration)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.settings.amp):
            loss = loss_fn(self.forward(x), x, y).mean()
        penalty = self.regulariser.penalty(self.attacker)
        total = loss if penalty is None else loss + penalty
        self.optimiser.zero_grad(set_to_none=True)
        total.backward()
        self.optimiser.step()
        self.regulariser.after_step(self.attacker)
        zero = torch.zeros((), device=self.device)
        self._pending.append(torch.stack([loss.detach(), (zero if penalty is None
                                                          else penalty.detach())]))

    def _log(self, on_log: Callable[[dict], None] | None) -> None:
        if on_log is None or not self._pending:
            self._pending = []
            return
        loss, penalty = torch.stack(self._pending).mean(dim=0).tolist()
        self._pending = []
        on_log({keys.STAGE_NUMBER: self.stage_index + 1, "iteration": self.iteration,
                keys.STEP: self.global_step,
                **dict(zip(keys.LOSSES, (loss, penalty, loss + penalty,
                                         self.lr_at(self.iteration - 1))))})

    def run(self, callbacks: LoopCallbacks | None = None) -> None:
        """Train until every stage is done, from wherever the state stands."""
        callbacks = callbacks or LoopCallbacks()
        self.attacker.train()
        while not self.finished:
            stage = self.plan.stages[self.stage_index]
            loss_fn = self.stage_loss(stage)
            if self.iteration == 0:
                # Before the first step, so that a path-integrating regulariser (SI) sees every
                # step from the stage's start. A resumed run that stopped mid-stage carries that
                # state in its checkpoint instead; one saved at a stage boundary starts it here.
                self.regulariser.stage_started(self.attacker)
            while self.iteration < stage.iterations:
                self.step(loss_fn)
                self.iteration += 1
                if self.iteration % self.settings.attack.log_every == 0 or \
                        self.iteration == stage.iterations:
                    self._log(callbacks.on_log)
                if callbacks.on_step and self.iteration < stage.iterations:
                    callbacks.on_step(self)
            self.regulariser.stage_ended(StageEnd(self.attacker, loss_fn,
                                                  self._importance_batches()))
            self.stage_index, self.iteration = self.stage_index + 1, 0
            self.optimiser = self._new_optimiser()
            self.attacker.train()
            if callbacks.on_stage_end:
                callbacks.on_stage_end(self.stage_index, self)

    def state_dict(self) -> dict:
        """Everything needed to continue exactly: weights, optimiser, regulariser, position,
        the sampler's RNG. Loads with ``torch.load(..., weights_only=True)``."""
        return {"attacker": self.attacker.state_dict(), "optimiser": self.optimiser.state_dict(),
                "regulariser": self.regulariser.state_dict(), "stage_index": self.stage_index,
                "iteration": self.iteration, "generator": self.generator.get_state()}

    def start_after_first_stage(self, first: dict) -> None:
        """Take the first stage as trained: ``first`` is the final ``state_dict`` of a one-stage
        plan equal to this plan's first stage, with the same seed and settings. ``run`` then goes
        on from the end of that stage (the regulariser's update and ``on_stage_end`` included)
        exactly as if this loop had trained it. Raises ``ValueError`` for a regulariser that
        needs the training path itself (SI), which a finished stage no longer has."""
        if self.regulariser.needs_path:
            raise ValueError(f"the {self.regulariser.name} regulariser accumulates along the "
                             "training path, so its first stage cannot be taken from another plan")
        if int(first["stage_index"]) != 1 or int(first["iteration"]) != 0:
            raise ValueError("not the final state of a one-stage plan: stage "
                             f"{first['stage_index']}, iteration {first['iteration']}")
        self.attacker.load_state_dict(first["attacker"])
        self.generator.set_state(first["generator"])
        self.stage_index, self.iteration = 0, self.plan.stages[0].iterations

    def load_state_dict(self, state: dict) -> None:
        self.attacker.load_state_dict(state["attacker"])
        self.optimiser = self._new_optimiser()
        self.optimiser.load_state_dict(state["optimiser"])
        self.regulariser.load_state_dict(state["regulariser"])
        self.stage_index, self.iteration = int(state["stage_index"]), int(state["iteration"])
        self.generator.set_state(state["generator"])
