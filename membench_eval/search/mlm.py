"""Masked-language-model word proposals for the MCMC trigger-prompt search.

The search keeps a sentence of ``L`` word slots behind a fixed prefix ("Image of a", as in the
reference, which helps BERT propose image-caption words); at each step one slot is masked and the
MLM's top-k words for it become the candidates. The prefix is only MLM context: prompts given to
the diffusion model are the slots alone (decoded, with [MASK] slots dropped).

``load_masked_lm`` accepts a hub id (``bert-base-uncased``, the reference's model), a local
directory saved with ``save_pretrained``, ``mini-mlm`` for the trained word-level BERT shipped with
the mini suite (the mini's default; see ``mini_mlm``), or ``tiny:<suite>`` for a random-weight
word-level BERT built offline from a suite's prompts (tests; see ``tiny_mlm``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from membench_eval.errors import MissingWeightsError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DEFAULT_MLM = "bert-base-uncased"
DEFAULT_PREFIX = "Image of a"
# A token is a proposable word only if it has a letter or digit (bans punctuation and symbols).
_WORDLIKE = re.compile(r"[0-9a-zA-Z]")


def read_stop_words(path: str | Path) -> list[str]:
    """One stop word per line (blank lines and ``#`` comments ignored), as the reference's file."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [w.strip() for w in lines if w.strip() and not w.strip().startswith("#")]


@dataclass
class MaskedLM:
    """A tokenizer + masked LM pair with the search's banned-token policy applied."""

    tokenizer: "PreTrainedTokenizerBase"
    model: "PreTrainedModel"
    prefix: str = DEFAULT_PREFIX
    stop_words: Sequence[str] = ()
    ban_subwords: bool = True
    spec: str = ""
    _allowed: np.ndarray | None = field(default=None, init=False, repr=False)
    _prefix_ids: list[int] | None = field(default=None, init=False, repr=False)

    @property
    def mask_id(self) -> int:
        return int(self.tokenizer.mask_token_id)

    @property
    def vocab_size(self) -> int:
        return int(self.model.get_input_embeddings().weight.shape[0])

    def prefix_ids(self) -> list[int]:
        if self._prefix_ids is None:
            self._prefix_ids = list(self.tokenizer(self.prefix, add_special_tokens=False)["input_ids"]) if self.prefix else []
        return self._prefix_ids

    def allowed(self) -> np.ndarray:
        """Boolean mask over the vocabulary of words the search may propose.

        Banned: special tokens ([CLS], [SEP], [PAD], [UNK], [MASK], unused slots), WordPiece
        continuation pieces ('##...'), tokens without a letter or digit, and the stop words.
        """
        if self._allowed is None:
            vocab = self.tokenizer.convert_ids_to_tokens(list(range(self.vocab_size)))
            special = set(self.tokenizer.all_special_ids)
            stops = {w.lower() for w in self.stop_words}
            ok = np.ones(self.vocab_size, dtype=bool)
            for i, tok in enumerate(vocab):
                tok = tok or ""
                if (
                    i in special
                    or (tok.startswith("[") and tok.endswith("]"))
                    or (self.ban_subwords and tok.startswith("##"))
                    or not _WORDLIKE.search(tok)
                    or tok.lower() in stops
                ):
                    ok[i] = False
            if not ok.any():
                raise ValueError(f"masked LM {self.spec!r}: every token is banned; check the stop-word list")
            self._allowed = ok
        return self._allowed

    def n_allowed(self) -> int:
        return int(self.allowed().sum())

    def encode_words(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens (slots of an augmentation start prompt)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, slots: Sequence[int]) -> str:
        """The prompt a slot sequence stands for: [MASK] (empty) slots dropped, subwords joined."""
        ids = [int(i) for i in slots if int(i) != self.mask_id]
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=True).strip()

    def token(self, token_id: int) -> str:
        return str(self.tokenizer.convert_ids_to_tokens(int(token_id)))

    def propose(self, slots: Sequence[int], position: int, k: int, include: Iterable[int] = ()) -> list[int]:
        """The MLM's top-``k`` allowed words for slot ``position`` (masked), highest logit first.

        ``include`` ids (the slot's current word, [MASK] = "empty slot") are guaranteed to be
        among the candidates, replacing the lowest-ranked ones, as in the reference, so the chain
        can always stay where it is.
        """
        import torch

        slots = [int(s) for s in slots]
        slots[position] = self.mask_id
        prefix = self.prefix_ids()
        ids = [self.tokenizer.cls_token_id, *prefix, *slots, self.tokenizer.sep_token_id]
        device = next(self.model.parameters()).device
        with torch.inference_mode():
            logits = self.model(input_ids=torch.tensor([ids], device=device)).logits[0, 1 + len(prefix) + position].float()
        logits = logits.cpu().numpy().astype(np.float64)
        logits[~self.allowed()] = -np.inf
        k_eff = min(k, self.n_allowed())
        # Stable order: by logit descending, ties by token id (argsort is stable on -logits).
        top = [int(i) for i in np.argsort(-logits, kind="stable")[:k_eff]]
        extra = [int(i) for i in dict.fromkeys(include) if int(i) not in top]
        if extra:
            top = top[: max(0, k_eff - len(extra))] + extra
        return top


def default_mlm(suite_name: str) -> str:
    """The proposal model when none is given: the mini suite ships its own trained one
    (``bert-base-uncased`` is not available offline); other suites use the reference's BERT."""
    from membench_eval.search.mini_mlm import MINI_MLM_SPEC
    from membench_eval.suites.mini import MINI_SUITES

    return MINI_MLM_SPEC if suite_name in MINI_SUITES else DEFAULT_MLM


def load_masked_lm(
    spec: str = DEFAULT_MLM,
    *,
    device: str | None = None,
    prefix: str = DEFAULT_PREFIX,
    stop_words: Sequence[str] = (),
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
) -> MaskedLM:
    """Load the proposal model: a hub id, a local directory, ``mini-mlm`` (the mini suite's trained
    word-level BERT, checksum-verified) or ``tiny:<suite>`` (offline random tiny BERT)."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from membench_eval.search.mini_mlm import MINI_MLM_SPEC, load_mini_mlm

    if spec == MINI_MLM_SPEC:
        tokenizer, model = load_mini_mlm()
    elif spec.startswith("tiny:"):
        from membench_eval.search.tiny_mlm import tiny_mlm_for_suite

        tokenizer, model = tiny_mlm_for_suite(spec.split(":", 1)[1])
    else:
        try:
            tokenizer = AutoTokenizer.from_pretrained(spec, cache_dir=cache_dir, local_files_only=local_files_only)
            model = AutoModelForMaskedLM.from_pretrained(spec, cache_dir=cache_dir, local_files_only=local_files_only)
        except OSError as exc:
            raise MissingWeightsError(
                f"masked LM {spec!r} could not be loaded ({exc.__class__.__name__}); give a local directory "
                f"saved with save_pretrained, a hub id reachable from here, {MINI_MLM_SPEC} (the mini suite's shipped model), "
                f"or tiny:<suite> for an offline test model"
            ) from None
    if tokenizer.mask_token_id is None or tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
        raise ValueError(f"masked LM {spec!r}: tokenizer lacks [MASK]/[CLS]/[SEP] tokens (a BERT-style MLM is needed)")
    from membench_eval.runtime import select_device

    model.to(select_device(device)).eval()
    return MaskedLM(tokenizer=tokenizer, model=model, prefix=prefix, stop_words=tuple(stop_words), spec=spec)
