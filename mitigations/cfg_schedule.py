"""Guidance schedule: no (or opposite) guidance before a transition point, ordinary CFG after it.

Jain, Kobayashi, Shibuya, Takida, Memon, Togelius, Mitsufuji. "Classifier-free guidance inside the
attraction basin may cause memorization". CVPR 2025. Checked against the public code
anubhav1997/mitigating_memorization (``generate_test_dataset_stp.py``: static transition point;
``generate_test_dataset_dtp.py``: dynamic transition point).

Early guidance pulls a memorized prompt's trajectory into the memorized image's attraction basin;
sampling without it first, then with ordinary CFG (scale g), leaves the basin's pull behind.

- ``mode="static"`` (STP): while the timestep ``t > transition`` the noise is
  ``eps_u + before * (eps_c - eps_u)``; from then on ``eps_u + g (eps_c - eps_u)``. The code's
  README runs ``before=0`` (unconditional only; the paper's "no guidance") with ``transition=500``,
  and opposite guidance ``before=-2`` with ``transition=650``.
- ``mode="dynamic"`` (DTP): the conditional prediction alone (scale 1, as the code) until the first
  strict local minimum of ``d_j = ||eps_c - eps_u||_2`` along the trajectory, found per image: at step
  j it fires when ``d_{j-1} < d_{j-2}`` and ``d_{j-1} < d_j`` (one step late, as the code; earliest
  at the third step); CFG from step j on, to the end. No minimum: no CFG at all. ``transition`` and
  ``before`` are unused.

Hyperparameters: ``mode``, ``transition`` (a timestep, 0..1000), ``before`` (the pre-transition
scale). Sweep: the transition timestep, 800 / 650 / 500 (the code's values are 650 and 500; 800 is
ours, a weaker point); ``strongest`` is the README's STP setting (500, no guidance before it).

Cost: none extra (2 x steps UNet evaluations per image, as base; the schedule only recombines).

Differences from the reference, documented: the reference's static script switches to a 200-step
grid when a timestep equals the transition exactly (t=500 is on its 50-step grid; 650 is not),
an artefact not copied here: sampling stays on the run's scheduler and step count (DDIM in
MemBench; the code used DPM-Solver++). The dynamic norm is per image (the code takes one norm over
the whole batch, which with several images per call mixes them). Records per image:
``schedule_transition_step`` (first step with CFG; null if never) and ``schedule_transition_timestep``.

Families (``needs``: cfg): the guidance combination is linear in the prediction, so it runs on
every family with an unconditional pass (epsilon, v or flow alike; IF: stage I); FLUX.1-dev without
true CFG reads n/a.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from membench_eval.errors import MitigationError
from membench_eval.mitigation import BatchContext, Mitigation

if TYPE_CHECKING:
    import torch
    from diffusers import StableDiffusionPipeline


class GuidanceSchedule(Mitigation):
    """Guidance ``before`` (static) or conditional-only (dynamic) until the transition, then CFG."""

    name = "cfg_schedule"
    needs = frozenset({"cfg"})
    paper = "Jain et al. 2025, Classifier-free guidance inside the attraction basin may cause memorization"
    sweep = {"transition": [800, 650, 500]}
    strongest = {"transition": 500}

    MODES: ClassVar[tuple[str, ...]] = ("static", "dynamic")

    mode: str = "static"
    transition: int = 500
    before: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in self.MODES:
            raise MitigationError(f"cfg_schedule: mode must be one of {', '.join(self.MODES)}, got {self.mode!r}")
        if not 0 <= self.transition <= 1000:
            raise MitigationError(f"cfg_schedule: transition is a timestep in 0..1000, got {self.transition}")

    def guidance(
        self,
        pipe: "StableDiffusionPipeline",
        step: int,
        timestep: int,
        latents: "torch.Tensor",
        eps_uncond: "torch.Tensor | None",
        eps_cond: "torch.Tensor",
        ctx: BatchContext,
    ) -> "torch.Tensor":
        import torch

        if eps_uncond is None:
            return eps_cond
        if step == 0:
            for record in ctx.records:
                record.update(schedule_transition_step=None, schedule_transition_timestep=None)
        scales = torch.full((eps_cond.shape[0],), ctx.guidance_scale, dtype=eps_cond.dtype, device=eps_cond.device)
        if self.mode == "static":
            if timestep > self.transition:
                scales.fill_(self.before)
            else:
                for record in ctx.records:
                    if record["schedule_transition_step"] is None:
                        record.update(schedule_transition_step=step, schedule_transition_timestep=timestep)
        else:
            started = self._dynamic_transitions(step, timestep, eps_uncond, eps_cond, ctx)
            scales = torch.where(started.to(scales.device), scales, torch.ones_like(scales))
        scales = scales.view(-1, *([1] * (eps_cond.dim() - 1)))
        return eps_uncond + scales * (eps_cond - eps_uncond)

    def _dynamic_transitions(
        self, step: int, timestep: int, eps_uncond: "torch.Tensor", eps_cond: "torch.Tensor", ctx: BatchContext
    ) -> "torch.Tensor":
        """Per image, whether CFG applies at this step (first strict local minimum of the norm seen)."""
        import torch

        history: list[list[float]] = ctx.__dict__.setdefault("_schedule_norms", [[] for _ in ctx.requests])
        norms = torch.linalg.vector_norm((eps_cond - eps_uncond).float().flatten(1), dim=1).tolist()
        started = []
        for i, d in enumerate(norms):
            record, seen = ctx.records[i], history[i]
            if record["schedule_transition_step"] is None and len(seen) >= 2 and seen[-1] < seen[-2] and seen[-1] < d:
                record.update(schedule_transition_step=step, schedule_transition_timestep=timestep)
            seen.append(d)
            started.append(record["schedule_transition_step"] is not None)
        return torch.tensor(started)
