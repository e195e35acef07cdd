"""MemBench Algorithm 1: random-scan Gibbs sampling of trigger prompts.

The chain state is a sentence of ``L`` word slots (all [MASK] at the start). Each iteration picks
one slot uniformly at random, masks it, lets the masked LM propose its top-k words for the slot
(the current word and the empty slot are always kept among them), scores the k resulting prompts
with the diffusion model's memorization signal, and samples the new word from
``softmax(score / T)``. High-score prompts are the ones whose text pulls the noise prediction hard:
candidates for memorized-image triggers.

The sampling randomness is one ``numpy.random.Generator`` per chain whose state is logged after
every step; the shared latent of step ``i`` is seeded from (search seed, chain, i). So a chain is
a pure function of its config, and a killed run resumes into the very same chain.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from membench_eval.errors import DataError
from membench_eval.search.chainlog import LOG_VERSION, ChainLog, read_log

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline

    from membench_eval.search.mlm import MaskedLM

# (prompts, latent_seed) -> one score per prompt (higher = more memorization-like).
Scorer = Callable[[Sequence[str], int], np.ndarray]


@dataclass(frozen=True)
class ChainConfig:
    """Settings that define a chain. Defaults are the reference's (run_MCMC.py + README)."""

    length: int = 8
    top_k: int = 200
    temperature: float = 0.1
    seed: int = 0
    # Reference: a fresh shared latent for every step's candidates; False = one latent for the chain.
    resample_latent: bool = True
    # Keep [MASK] (the empty word) among the candidates, as the reference does.
    include_empty: bool = True
    # Algorithm 2 only: stop after ``early_stop_patience`` consecutive chosen scores below this.
    early_stop_threshold: float | None = None
    early_stop_patience: int = 3

    def __post_init__(self) -> None:
        if self.length < 1 or self.top_k < 1 or self.temperature <= 0 or self.early_stop_patience < 1:
            raise ValueError(f"invalid chain config {self}: need length >= 1, top_k >= 1, temperature > 0")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class ChainResult:
    """What a chain produced: its states and the best-scoring prompt among all candidates scored."""

    chain_id: str
    log_path: Path
    steps: list[dict[str, Any]]
    best_prompt: str
    best_score: float
    stopped_early: bool = False
    candidates: dict[str, list[float]] = field(default_factory=dict)

    @property
    def final_prompt(self) -> str:
        return self.steps[-1]["prompt"] if self.steps else ""


def softmax(scores: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(scores / T)`` in float64, shifted by the max so large scores cannot overflow."""
    z = np.asarray(scores, dtype=np.float64) / temperature
    z = z - z.max()
    p = np.exp(z)
    return p / p.sum()


def latent_seed_for(config: ChainConfig, chain_index: int, iteration: int) -> int:
    """Seed of the shared latent the candidates of ``iteration`` are scored on."""
    if not config.resample_latent:
        return int(config.seed)
    return int(np.random.SeedSequence([config.seed, chain_index, iteration]).generate_state(1, np.uint32)[0])


def _rng_state_json(rng: np.random.Generator) -> dict[str, Any]:
    return dict(rng.bit_generator.state)


def _restore_rng(state: dict[str, Any]) -> np.random.Generator:
    name = state.get("bit_generator", "PCG64")
    bitgen = getattr(np.random, name)()
    bitgen.state = state
    return np.random.Generator(bitgen)


class GibbsChain:
    """One resumable chain; ``run(n)`` brings it to ``n`` logged iterations."""

    def __init__(
        self,
        mlm: "MaskedLM",
        scorer: Scorer,
        config: ChainConfig,
        log_path: str | Path,
        *,
        chain_index: int = 0,
        init_slots: Sequence[int] | None = None,
        first_position: int | None = None,
        meta: dict[str, Any] | None = None,
    ):
        self.mlm, self.scorer, self.config = mlm, scorer, config
        self.log_path = Path(log_path)
        self.chain_index = int(chain_index)
        self.chain_id = self.log_path.stem
        slots = [mlm.mask_id] * config.length if init_slots is None else [int(i) for i in init_slots]
        if len(slots) != config.length:
            raise ValueError(f"init_slots has {len(slots)} slots, config.length is {config.length}")
        if first_position is not None and not 0 <= first_position < config.length:
            raise ValueError(f"first_position {first_position} outside 0..{config.length - 1}")
        self.init_slots = slots
        self.first_position = first_position
        self.meta = dict(meta or {})

    # -- identity -------------------------------------------------------------------------

    def _header(self) -> dict[str, Any]:
        return {
            "type": "header",
            "version": LOG_VERSION,
            "chain": self.chain_id,
            "chain_index": self.chain_index,
            "config": self.config.as_dict(),
            "mlm": self.mlm.spec,
            "prefix": self.mlm.prefix,
            "init_slots": self.init_slots,
            "init_prompt": self.mlm.decode(self.init_slots),
            "first_position": self.first_position,
            "meta": self.meta,
        }

    def _check_header(self, header: dict[str, Any]) -> None:
        mine = self._header()
        for key in ("config", "mlm", "prefix", "init_slots", "first_position", "chain_index"):
            if header.get(key) != mine[key]:
                raise DataError(
                    self.log_path, f"existing chain log was written with {key}={header.get(key)!r}, this run has "
                    f"{mine[key]!r}; use another --out directory or the same settings to resume", row=1, field=key,
                )

    # -- the chain --------------------------------------------------------------------------

    def run(self, steps: int, *, progress: bool = False) -> ChainResult:
        """Run (or resume) until ``steps`` iterations are logged; returns the whole chain."""
        from tqdm.auto import tqdm

        header, logged = read_log(self.log_path)
        log = ChainLog(self.log_path)
        if header is None:
            log.append(self._header())
            logged = []
        else:
            self._check_header(header)
        stopped = bool(logged and logged[-1].get("stopped"))
        if logged:
            slots = list(logged[-1]["slots"])
            rng = _restore_rng(logged[-1]["rng_state"])
            below = int(logged[-1].get("below_threshold_run", 0))
        else:
            slots = list(self.init_slots)
            rng = np.random.default_rng(np.random.SeedSequence([self.config.seed, self.chain_index]))
            below = 0
        start = len(logged)
        bar = tqdm(total=steps, initial=min(start, steps), desc=self.chain_id, unit="step", disable=not progress)
        for it in range(start, steps):
            if stopped:
                break
            record = self._step(it, slots, rng, below)
            slots, below, stopped = record["slots"], record["below_threshold_run"], record["stopped"]
            log.append(record)
            logged.append(record)
            bar.update(1)
        bar.close()
        return summarize_chain(self.chain_id, self.log_path, logged, self.mlm)

    def _step(self, iteration: int, slots: list[int], rng: np.random.Generator, below: int) -> dict[str, Any]:
        cfg, mlm = self.config, self.mlm
        if iteration == 0 and self.first_position is not None:
            position = self.first_position
        else:
            position = int(rng.integers(0, cfg.length))
        include = [slots[position]] + ([mlm.mask_id] if cfg.include_empty else [])
        if self.init_slots[position] != mlm.mask_id:
            include.append(self.init_slots[position])  # Algorithm 2: the original word stays reachable
        candidates = mlm.propose(slots, position, cfg.top_k, include=include)
        prompts = [mlm.decode(slots[:position] + [c] + slots[position + 1 :]) for c in candidates]
        latent_seed = latent_seed_for(cfg, self.chain_index, iteration)
        scores = np.asarray(self.scorer(prompts, latent_seed), dtype=np.float64)
        if scores.shape != (len(prompts),) or not np.isfinite(scores).all():
            raise ValueError(f"scorer returned {scores.shape} scores (finite: {np.isfinite(scores).all()}) for {len(prompts)} prompts")
        choice = int(rng.choice(len(candidates), p=softmax(scores, cfg.temperature)))
        new_slots = list(slots)
        new_slots[position] = candidates[choice]
        score = float(scores[choice])
        below_run = below + 1 if cfg.early_stop_threshold is not None and score < cfg.early_stop_threshold else 0
        return {
            "type": "step",
            "iteration": iteration,
            "position": position,
            "word": mlm.token(candidates[choice]),
            "token_id": candidates[choice],
            "slots": new_slots,
            "prompt": prompts[choice],
            "score": score,
            "latent_seed": latent_seed,
            "candidate_ids": candidates,
            "candidate_scores": [float(s) for s in scores],
            "below_threshold_run": below_run,
            "stopped": below_run >= cfg.early_stop_patience,
            "rng_state": _rng_state_json(rng),
        }


def candidate_prompts(step: dict[str, Any], mlm: "MaskedLM") -> list[tuple[str, float]]:
    """(prompt, score) of every candidate a logged step scored (rebuilt from the new state)."""
    slots, pos = list(step["slots"]), int(step["position"])
    out = []
    for cid, score in zip(step["candidate_ids"], step["candidate_scores"]):
        s = list(slots)
        s[pos] = int(cid)
        out.append((mlm.decode(s), float(score)))
    return out


def summarize_chain(chain_id: str, log_path: Path, steps: list[dict[str, Any]], mlm: "MaskedLM") -> ChainResult:
    """Best prompt over all scored candidates (as the reference picks it) and per-prompt scores."""
    scored: dict[str, list[float]] = {}
    for step in steps:
        for prompt, score in candidate_prompts(step, mlm):
            scored.setdefault(prompt, []).append(score)
    best_prompt, best_score = "", float("-inf")
    for prompt, values in scored.items():
        if prompt and max(values) > best_score:
            best_prompt, best_score = prompt, max(values)
    return ChainResult(
        chain_id=chain_id, log_path=log_path, steps=steps, best_prompt=best_prompt,
        best_score=best_score if best_prompt else float("nan"),
        stopped_early=bool(steps and steps[-1].get("stopped")), candidates=scored,
    )


def diffusion_scorer(
    pipe: "StableDiffusionPipeline", *, batch_size: int = 50, height: int | None = None, width: int | None = None
) -> Scorer:
    """The search's score: Wen's single-step signal on the step's shared latent."""
    from membench_eval.detection.signal import single_step_scores

    def score(prompts: Sequence[str], latent_seed: int) -> np.ndarray:
        return single_step_scores(pipe, prompts, seed=latent_seed, batch_size=batch_size, height=height, width=width)

    return score


def run_chains(
    mlm: "MaskedLM", scorer: Scorer, config: ChainConfig, out_dir: str | Path, *, chains: int, steps: int, progress: bool = True
) -> list[ChainResult]:
    """Algorithm 1 for ``chains`` independent chains, logs in ``out_dir/chains/chain_XXXX.jsonl``."""
    out = Path(out_dir) / "chains"
    results = []
    for c in range(chains):
        chain = GibbsChain(mlm, scorer, config, out / f"chain_{c:04d}.jsonl", chain_index=c)
        results.append(chain.run(steps, progress=progress))
    return results
