"""The model-family interface: the one place that knows what is inside a pipeline.

Why: the harness (engine, detection, attribution, attacks, search) and the bundled plugins need
the same few operations of a text-to-image model: encode prompts, one batched noise prediction,
the guidance vector (conditional minus unconditional prediction), a scheduler step, initial
latents from per-image generators, decode, the attention layers where processors can go, and
the model's identity for store keys. Each family (SD 1.x / 2.x now; SDXL, SD3, FLUX later)
implements them once over its own diffusers pipeline, so a new architecture is one module here.

``family_for(pipe)`` returns the (cached) family object of a pipeline; families register by the
diffusers pipeline class they wrap, which is also the ``_class_name`` of a saved pipeline's
``model_index.json`` (``models.loading.load_pipeline`` picks the family by it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    import numpy as np
    import torch

# What a denoiser predicts: the noise (SD 1.x, SD 2 base), v (SD 2 768-v), or a flow velocity (SD3, FLUX).
PredictionKind = Literal["epsilon", "v_prediction", "flow"]
# How text reaches an attention layer: cross-attention to the text (SD's attn2), or joint
# attention over image and text tokens together (MM-DiT), with the text tokens at ``text_tokens``,
# or text keys/values appended to the image's self-attention (DeepFloyd IF's added-KV attention).
AttentionRole = Literal["cross", "joint", "added_kv"]

_FAMILY_ATTR = "_membench_family"


@dataclass
class Conditioning:
    """Encoded prompts, one row per prompt: token embeddings plus whatever else a family's
    denoiser takes (pooled embeddings, an attention mask, extra ids). Rows line up over fields."""

    embeds: "torch.Tensor"
    pooled: "torch.Tensor | None" = None
    mask: "torch.Tensor | None" = None
    extra: dict[str, "torch.Tensor"] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.embeds.shape[0])

    def map(self, fn: Callable[["torch.Tensor"], "torch.Tensor"]) -> "Conditioning":
        """``fn`` applied to every tensor field (a cast, a device move, a row selection)."""
        return Conditioning(
            fn(self.embeds), None if self.pooled is None else fn(self.pooled),
            None if self.mask is None else fn(self.mask), {k: fn(v) for k, v in self.extra.items()},
        )

    def to(self, *args: Any, **kwargs: Any) -> "Conditioning":
        return self.map(lambda t: t.to(*args, **kwargs))

    def expand(self, rows: int) -> "Conditioning":
        """A one-row conditioning broadcast to ``rows`` rows (a view, as ``Tensor.expand``)."""
        return self.map(lambda t: t.expand(rows, *([-1] * (t.ndim - 1))))

    def chunk(self, size: int) -> list["Conditioning"]:
        """Consecutive pieces of at most ``size`` rows."""
        return [self.map(lambda t, s=start: t[s : s + size]) for start in range(0, len(self), size)]

    @staticmethod
    def cat(parts: Sequence["Conditioning"]) -> "Conditioning":
        """Rows of ``parts`` stacked in order (``[uncond, cond]`` for one guided batch)."""
        import torch

        first = parts[0]

        def stack(get: Callable[["Conditioning"], Any]) -> Any:
            return None if get(first) is None else torch.cat([get(p) for p in parts])

        return Conditioning(stack(lambda p: p.embeds), stack(lambda p: p.pooled), stack(lambda p: p.mask),
                            {k: torch.cat([p.extra[k] for p in parts]) for k in first.extra})


@dataclass
class Prediction:
    """One denoiser output and what it is (the scheduler's ``prediction_type``). ``variance``: a
    learned-variance model's variance channels (DeepFloyd IF), same rows as ``sample``; the
    family's ``step`` takes the conditional rows' (``step(..., variance=)``)."""

    sample: "torch.Tensor"
    kind: PredictionKind
    variance: "torch.Tensor | None" = None

    def pair(self) -> tuple["torch.Tensor", "torch.Tensor"]:
        """(unconditional, conditional) halves of a ``[uncond, cond]`` batch's prediction."""
        uncond, cond = self.sample.chunk(2)
        return uncond, cond


@dataclass(frozen=True)
class AttentionLayer:
    """An attention layer of the denoiser where a processor can be installed."""

    name: str  # its key in the denoiser's ``attn_processors``
    role: AttentionRole
    module: Any
    text_tokens: slice | None = None  # where the text tokens sit: in the joint sequence, or among added-KV keys

    @property
    def block(self) -> str:
        """The denoiser block it belongs to (``down_blocks.0``, ``mid_block``, ``up_blocks.1``, ...)."""
        parts = self.name.split(".")
        return parts[0] if parts[0] == "mid_block" else ".".join(parts[:2])


class ModelFamily:
    """One model architecture's operations over its diffusers pipeline (``self.pipe``).

    Subclasses set ``pipeline_classes`` (the diffusers class names they handle, as in
    ``model_index.json``) and implement every method; ``register_family`` makes them findable.
    ``offers``: the capability strings of ``models.capabilities`` the family has (what methods and
    detectors may need); ``text_encoders``: their names, for ``membench families``."""

    name: ClassVar[str] = ""
    pipeline_classes: ClassVar[tuple[str, ...]] = ()
    offers: ClassVar[frozenset[str]] = frozenset()
    text_encoders: ClassVar[tuple[str, ...]] = ()
    # What the family's models predict (several: per model, from the scheduler config).
    prediction_types: ClassVar[tuple[str, ...]] = ()
    # The model lines it serves, by name, with their hub ids: one row each in ``membench families``
    # (Realistic Vision is an SD 1.5 fine-tune: the SD family's code, its own line). Empty: ``name``.
    model_lines: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __init__(self, pipe: Any):
        self.pipe = pipe

    # --- loading --------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, folder: Any, dtype: "torch.dtype", **components: Any) -> Any:
        """The pipeline saved in ``folder`` (``save_pretrained`` layout), set up for MemBench;
        ``components`` (e.g. ``vae=``) replace the folder's own."""
        raise NotImplementedError

    # --- what the model is ----------------------------------------------------------------------

    @property
    def denoiser(self) -> "torch.nn.Module":
        """The network called once per step (the engine counts its forward rows)."""
        raise NotImplementedError

    @property
    def dtype(self) -> "torch.dtype":
        return self.denoiser.dtype

    @property
    def device(self) -> "torch.device":
        return self.denoiser.device

    @property
    def prediction_type(self) -> PredictionKind:
        """What the denoiser predicts; default: the scheduler's configured type (epsilon if unset)."""
        return self.pipe.scheduler.config.get("prediction_type", "epsilon")

    def identity(self) -> dict[str, str]:
        """The model's identity in store keys (``models.identity.model_identity``)."""
        from membench_eval.models.identity import model_identity

        return model_identity(self.pipe)

    def scheduler_identity(self) -> dict[str, Any]:
        from membench_eval.models.identity import scheduler_identity

        return scheduler_identity(self.pipe)

    # --- text -----------------------------------------------------------------------------------

    @property
    def tokenizer(self) -> Any:
        """The (first) text encoder's tokenizer: which tokens a prompt becomes."""
        return self.pipe.tokenizer

    def encode(self, prompts: Sequence[str], device: "torch.device | None" = None) -> Conditioning:
        """The prompts' conditioning (no unconditional rows)."""
        raise NotImplementedError

    def encode_for_guidance(self, prompts: Sequence[str], device: "torch.device | None" = None,
                            guidance: bool = True) -> tuple[Conditioning, Conditioning | None]:
        """(conditional, unconditional) conditioning as generation encodes it; the unconditional
        one (empty prompts, one row per prompt) only with ``guidance``."""
        raise NotImplementedError

    # --- sampling -------------------------------------------------------------------------------

    def predict(self, latents: "torch.Tensor", t: Any, cond: "Conditioning | torch.Tensor", *,
                timestep_cond: "torch.Tensor | None" = None) -> Prediction:
        """One batched denoiser call (rows of ``latents`` pair with rows of ``cond``; a bare
        tensor is taken as the token embeddings). Scaling the input is the caller's
        (``scheduler.scale_model_input``), so a method can use its own scheduler copy."""
        raise NotImplementedError

    def guidance_vector(self, latents: "torch.Tensor", t: Any, cond: "Conditioning | torch.Tensor",
                        uncond: "Conditioning | torch.Tensor") -> "torch.Tensor":
        """Conditional minus unconditional prediction at (scaled) ``latents``, from one call on
        ``[uncond, cond]`` rows: the signal of Wen et al.'s detector and of methods built on it.
        A one-row ``uncond`` is broadcast to every row."""
        import torch

        cond, uncond = self._as_conditioning(cond), self._as_conditioning(uncond)
        if len(uncond) == 1 and len(cond) > 1:
            uncond = uncond.expand(len(cond))
        eps_u, eps_c = self.predict(torch.cat([latents, latents]), t, Conditioning.cat([uncond, cond])).pair()
        return eps_c - eps_u

    def timestep_condition(self, guidance_scale: float, rows: int, device: "torch.device",
                           dtype: "torch.dtype") -> "torch.Tensor | None":
        """Extra timestep conditioning of guidance-distilled denoisers, else None."""
        return None

    @property
    def guidance_embedded(self) -> bool:
        """Whether guidance is an input of the denoiser (then there is no unconditional batch)."""
        return False

    def set_timesteps(self, scheduler: Any, num_inference_steps: int, device: "torch.device", height: int,
                      width: int) -> None:
        """The sampling schedule as the family's pipeline sets it (FLUX shifts it by the image size)."""
        scheduler.set_timesteps(num_inference_steps, device=device)

    def step_kwargs(self, generators: Any, eta: float = 0.0) -> dict[str, Any]:
        """Extra keyword arguments of ``scheduler.step`` (per-image generators, eta)."""
        raise NotImplementedError

    def step(self, scheduler: Any, prediction: "torch.Tensor", t: Any, latents: "torch.Tensor",
             **step_kwargs: Any) -> "torch.Tensor":
        """One scheduler step: the previous (less noisy) latents."""
        return scheduler.step(prediction, t, latents, **step_kwargs, return_dict=False)[0]

    def initial_latents(self, generators: Sequence["torch.Generator"], height: int, width: int, *,
                        dtype: "torch.dtype", device: "torch.device") -> "torch.Tensor":
        """Unscaled initial noise, one row per generator, as the family's pipeline draws it."""
        raise NotImplementedError

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """(channels, height, width) of the latents of a ``height`` x ``width`` image."""
        raise NotImplementedError

    @property
    def native_size(self) -> int:
        """The image size (pixels, square) the model was trained at."""
        raise NotImplementedError

    def decode(self, latents: "torch.Tensor", generators: Any = None) -> list["np.ndarray"]:
        """Float HxWx3 images in [0, 1], one per latent row."""
        raise NotImplementedError

    def decode_tensor(self, latents: "torch.Tensor") -> "torch.Tensor":
        """Decoded images as a differentiable NCHW tensor in about [-1, 1] (guidance through pixels)."""
        raise NotImplementedError

    # --- attention ------------------------------------------------------------------------------

    def attention_layers(self) -> list[AttentionLayer]:
        """The layers where text meets the image, in the denoiser's order."""
        raise NotImplementedError

    @contextlib.contextmanager
    def attention_processors(self, make: Callable[[AttentionLayer, Any], Any]) -> Iterator[None]:
        """Within the block, each text attention layer runs ``make(layer, its current processor)``
        (None keeps the current one); every processor is restored on exit."""
        raise NotImplementedError
        yield  # pragma: no cover

    def end_token_positions(self, prompts: Sequence[str]) -> list[int]:
        """Per prompt, the position of its end token in the (truncated) tokenization."""
        return [n - 1 for n in self.token_counts(prompts)]

    def token_counts(self, prompts: Sequence[str]) -> list[int]:
        """Per prompt, its token count including start and end tokens (truncated to the context)."""
        raise NotImplementedError

    # --- helpers --------------------------------------------------------------------------------

    @staticmethod
    def _as_conditioning(cond: "Conditioning | torch.Tensor") -> Conditioning:
        return cond if isinstance(cond, Conditioning) else Conditioning(cond)


_REGISTRY: dict[str, type[ModelFamily]] = {}


def register_family(cls: type[ModelFamily]) -> type[ModelFamily]:
    """Class decorator: ``cls`` handles the pipelines named in its ``pipeline_classes``."""
    for name in cls.pipeline_classes:
        _REGISTRY[name] = cls
    return cls


def registered_families() -> list[type[ModelFamily]]:
    """Every registered family class, once each, in registration order."""
    return list(dict.fromkeys(_registry().values()))


def _registry() -> dict[str, type[ModelFamily]]:
    """The registered families (the built-in ones register when ``membench_eval.models`` is
    imported, which importing this module always does first)."""
    return _REGISTRY


def family_class(class_name: str, *, source: str | None = None) -> type[ModelFamily]:
    """The family registered for a diffusers pipeline class name (a ``model_index.json``
    ``_class_name``); an error naming the class, its file and the supported classes otherwise."""
    from membench_eval.errors import MembenchError

    registry = _registry()
    if class_name not in registry:
        where = f"{source}: " if source else ""
        raise MembenchError(
            f"{where}pipeline class {class_name!r} has no model family in membench_eval.models "
            f"(supported: {', '.join(sorted(registry))})"
        )
    return registry[class_name]


def family_for(pipe: Any) -> ModelFamily:
    """The family object of an in-memory pipeline (by its class, or a registered base class),
    made once and kept on the pipeline."""
    family = pipe.__dict__.get(_FAMILY_ATTR) if hasattr(pipe, "__dict__") else None
    if family is not None:
        return family
    registry = _registry()
    for klass in type(pipe).__mro__:
        if klass.__name__ in registry:
            family = registry[klass.__name__](pipe)
            break
    else:
        raise TypeError(f"no model family in membench_eval.models handles a {type(pipe).__name__} "
                        f"(supported: {', '.join(sorted(registry))})")
    pipe.__dict__[_FAMILY_ATTR] = family
    return family
