"""The mini suite's proposal masked LM (``mlm/``, spec ``mini-mlm``): a small trained word-level BERT.

Why: the MCMC trigger-prompt search (MemBench Algorithm 1) takes every step's candidate words from
a masked LM's top-k (k = 200). The reference uses ``bert-base-uncased``, which cannot be had
offline; the random-weight ``tiny:mini`` BERT knows only the mini's ~150 words, fewer than k, so
every step scored the whole vocabulary and the proposal step did nothing. This stage trains a real
``transformers.BertForMaskedLM`` so that the top-k is a ranking by context.

Data: the COCO val2017 captions (read from the shared data at build time, never copied into this
tree), with every image whose COCO id is divisible by 10 held out (its 5 captions are the
validation split); plus the mini suite's own texts (training captions, trigger and general
prompts), repeated up to a tenth of the training texts so their words are learned: every word the mini model was trained on can be
proposed. A quarter of the COCO training captions get the search's context "image of" in front
(the search feeds ``[CLS] image of a <slots> [SEP]``).

Vocabulary: word level, split as ``tiny_mlm.split_words`` splits (BertNormalizer lower-case +
BertPreTokenizer): the words seen at least twice in the COCO training split, plus every word of
the extra texts; any other word is ``[UNK]``. Training: standard BERT masking (15% of tokens; 80%
[MASK], 10% random, 10% kept; ``DataCollatorForLanguageModeling``), AdamW, cosine schedule,
batches of similar length (``get_length_grouped_indices``: less padding) and the output layer
applied to the masked positions only (the same loss, half the CPU time). No checkpoint selection:
the validation split is only measured, never used to choose.

Measured on the validation split the way the search uses the model (one word masked at a time):
top-1 / top-10 / top-200 accuracy and perplexity, against a unigram baseline (the training split's
word frequencies). The figures are taken on the shipped files (fp16 safetensors loaded back as
fp32) and written to ``mlm/metrics.json``.

Run: ``python benchmark_data/mini/mlm_stage.py`` (about 15 minutes on one CPU thread). Re-run it
whenever the mini's captions or prompts change: the vocabulary follows them.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(REPO) not in sys.path:  # run as a script from a source checkout
    sys.path.insert(0, str(REPO))

from membench_eval.fetch.download import file_sha256
from membench_eval.search.tiny_mlm import SPECIAL_TOKENS, nested_strings, split_words

if TYPE_CHECKING:
    import numpy as np
    import torch
    from transformers import BertForMaskedLM, BertTokenizer

MLM_DIR = HERE / "mlm"
WEIGHTS_FILE = "model.safetensors"
CHECKSUMS_FILE = "checksums.json"
METRICS_FILE = "metrics.json"
# Small: the 4.4k x 128 word table (tied with the output layer) is about a third of the weights.
CONFIG: dict[str, Any] = {
    "hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 512,
    "max_position_embeddings": 128,
}
MAX_LENGTH = 64  # tokens incl. [CLS]/[SEP]; COCO's longest caption has 54 words
MIN_COUNT = 2
VAL_MODULUS = 10  # COCO images with id % 10 == 0 are the validation split
PREFIX = "image of"
PREFIX_SHARE = 0.25
EXTRA_SHARE = 0.1  # the mini texts' share of training texts, about (repeated to reach it, never below once)
KS = (1, 10, 200)
PROBES = ("a cup of [MASK] on a table", "a man riding a [MASK]", "a [MASK] sitting on a couch",
          "a plate of [MASK] and vegetables", "astronaut eileen collins in her orange flight [MASK]")


def default_coco_file() -> Path:
    """``$MEMBENCH_DATA_DIR/coco/...`` or the checkout's ``../shared/data/coco/...`` (as the tests)."""
    data = Path(os.environ.get("MEMBENCH_DATA_DIR", REPO.parent / "shared" / "data"))
    return data / "coco" / "captions_val2017.json"


def mini_texts(mini_dir: Path = HERE) -> list[str]:
    """The mini's own texts: every training caption, trigger prompt, held-out paraphrase (held out
    from the diffusion model, not from the search's language model) and general prompt."""

    texts = nested_strings(json.loads((mini_dir / "training_captions.json").read_text(encoding="utf-8")))
    for name in ("trigger_prompts.csv", "paraphrase_prompts.csv"):
        with (mini_dir / name).open(newline="", encoding="utf-8") as f:
            texts += [row["prompt"] for row in csv.DictReader(f)]
    texts += [t.strip() for t in (mini_dir / "general_prompts.txt").read_text(encoding="utf-8").splitlines() if t.strip()]
    return texts


def coco_split(coco_file: Path) -> tuple[list[str], list[str]]:
    """(training, validation) captions; validation = every image with ``id % VAL_MODULUS == 0``."""
    annotations = json.loads(coco_file.read_text(encoding="utf-8"))["annotations"]
    train = [a["caption"].strip() for a in annotations if a["image_id"] % VAL_MODULUS]
    val = [a["caption"].strip() for a in annotations if not a["image_id"] % VAL_MODULUS]
    return train, val


def build_vocabulary(coco_train: Sequence[str], extra_texts: Sequence[str]) -> tuple[list[str], dict[str, int]]:
    """Special tokens, then (sorted) COCO training words seen >= ``MIN_COUNT`` times and every
    word of ``extra_texts``; plus the counts of the parts, for the record."""
    counts = Counter(w for ws in split_words(coco_train) for w in ws)
    coco_words = {w for w, c in counts.items() if c >= MIN_COUNT}
    extra_words = {w for ws in split_words(extra_texts) for w in ws}
    words = sorted((coco_words | extra_words | set(next(split_words([PREFIX + " a"])))) - set(SPECIAL_TOKENS))
    return SPECIAL_TOKENS + words, {"coco_words": len(coco_words), "extra_words": len(extra_words),
                                     "extra_words_not_in_coco": len(extra_words - coco_words)}


def build_tokenizer(vocab: Sequence[str]) -> "BertTokenizer":
    """A word-level ``BertTokenizer`` (WordPiece without '##' pieces: unknown words are [UNK])."""
    from transformers import BertTokenizer

    return BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True, model_max_length=MAX_LENGTH)


def unigram_log_probs(tokenizer: "BertTokenizer", texts: Sequence[str]) -> "np.ndarray":
    """Add-one-smoothed log frequencies of the tokens of ``texts`` over the whole vocabulary."""
    import numpy as np

    counts = np.ones(len(tokenizer), dtype=np.float64)
    for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
        np.add.at(counts, ids, 1)
    return np.log(counts / counts.sum())


def masked_word_eval(model: "BertForMaskedLM", tokenizer: "BertTokenizer", texts: Sequence[str],
                     unigram_logp: "np.ndarray", *, batch: int = 256) -> dict[str, Any]:
    """Every word of every text masked in turn ([UNK] targets skipped): the model's and the unigram
    baseline's top-k accuracy (``KS``) and perplexity on the same positions."""
    import numpy as np
    import torch

    unk, mask, pad = tokenizer.unk_token_id, tokenizer.mask_token_id, tokenizer.pad_token_id
    rows: list[tuple[list[int], int, int]] = []
    n_words = 0
    for ids in tokenizer(list(texts), truncation=True, max_length=MAX_LENGTH)["input_ids"]:
        for pos in range(1, len(ids) - 1):
            n_words += 1
            if ids[pos] != unk:
                rows.append(([*ids[:pos], mask, *ids[pos + 1:]], pos, ids[pos]))
    nll, rank = [], []
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(rows), batch):
            chunk = rows[start:start + batch]
            width = max(len(r[0]) for r in chunk)
            input_ids = torch.full((len(chunk), width), pad)
            attention = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, (ids, _, _) in enumerate(chunk):
                input_ids[i, : len(ids)] = torch.tensor(ids)
                attention[i, : len(ids)] = 1
            pos = torch.tensor([r[1] for r in chunk])
            target = torch.tensor([r[2] for r in chunk])
            hidden = model.bert(input_ids=input_ids, attention_mask=attention).last_hidden_state
            logp = torch.log_softmax(model.cls(hidden[torch.arange(len(chunk)), pos]).float(), dim=-1)
            own = logp[torch.arange(len(chunk)), target]
            nll.append(-own)
            rank.append((logp > own[:, None]).sum(dim=1))
    nll_m, rank_m = torch.cat(nll).numpy(), torch.cat(rank).numpy()
    targets = np.array([r[2] for r in rows])
    order = np.argsort(-unigram_logp, kind="stable")
    unigram_rank = np.empty_like(order)
    unigram_rank[order] = np.arange(len(order))

    def summary(ranks: np.ndarray, nlls: np.ndarray) -> dict[str, float]:
        out = {f"top{k}": round(float(np.mean(ranks < k)), 4) for k in KS}
        out["perplexity"] = round(float(np.exp(np.mean(nlls))), 2)
        return out

    return {"texts": len(texts), "positions": len(rows), "oov_rate": round(1 - len(rows) / max(n_words, 1), 4),
            "model": summary(rank_m, nll_m), "unigram": summary(unigram_rank[targets], -unigram_logp[targets]),
            "unigram_top1_word": tokenizer.convert_ids_to_tokens(int(order[0]))}


def masked_loss(model: "BertForMaskedLM", batch: dict[str, "torch.Tensor"]) -> "torch.Tensor":
    """``BertForMaskedLM``'s loss, with the output layer applied to the masked positions only
    (the 15% that have labels): the same value, half the step time on CPU."""
    import torch

    labels = batch["labels"]
    hidden = model.bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    chosen = labels != -100
    return torch.nn.functional.cross_entropy(model.cls(hidden[chosen]), labels[chosen])


def probe(model: "BertForMaskedLM", tokenizer: "BertTokenizer", text: str, k: int = 10) -> list[str]:
    """The model's top-``k`` words for the [MASK] of ``text`` (no special tokens or punctuation:
    what the search may propose)."""
    import torch

    enc = tokenizer(text, return_tensors="pt")
    at = int((enc["input_ids"][0] == tokenizer.mask_token_id).nonzero()[0, 0])
    with torch.inference_mode():
        logits = model(**enc).logits[0, at]
    special = set(tokenizer.all_special_ids)
    ranked = [tokenizer.convert_ids_to_tokens(int(i)) for i in logits.argsort(descending=True) if int(i) not in special]
    return [w for w in ranked if any(ch.isalnum() for ch in w)][:k]


def _save_fp16(model: "BertForMaskedLM", tokenizer: "BertTokenizer", folder: Path) -> None:
    """``save_pretrained`` (fp32 config: ``from_pretrained`` gives an fp32 model), then the weights
    rewritten as fp16 safetensors (half the bytes; the figures are measured on these)."""
    import torch
    from safetensors.torch import load_file, save_file

    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    weights = folder / WEIGHTS_FILE
    tensors = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in load_file(weights).items()}
    save_file(tensors, weights, metadata={"format": "pt"})
    for f in folder.iterdir():
        f.chmod(0o644)  # save_file writes 0600; shipped files are world-readable


def write_checksums(folder: Path) -> dict[str, str]:
    """sha256 of every shipped model/tokenizer file (not the checksum and metrics files)."""
    sums = {f.name: file_sha256(f) for f in sorted(folder.iterdir())
            if f.is_file() and f.name not in (CHECKSUMS_FILE, METRICS_FILE)}
    (folder / CHECKSUMS_FILE).write_text(json.dumps(sums, indent=1) + "\n")
    return sums


def _replace_folder(built: Path, out_dir: Path) -> None:
    """Move the finished build into ``out_dir``, replacing an earlier mini MLM there (never
    anything else: a non-empty folder without ``checksums.json`` is refused)."""
    if out_dir.exists():
        if any(out_dir.iterdir()) and not (out_dir / CHECKSUMS_FILE).is_file():
            raise SystemExit(f"{out_dir}: not a mini MLM folder (no {CHECKSUMS_FILE}); refusing to replace it")
        shutil.rmtree(out_dir)
    built.rename(out_dir)
    out_dir.chmod(0o755)


def train_mini_mlm(extra_texts: list[str], out_dir: Path, *, seed: int = 0, steps: int = 4000, batch: int = 128,
                   lr: float = 1e-3, coco_file: Path | None = None,
                   log: Callable[[str], object] = print) -> dict[str, Any]:
    """Train the mini MLM on COCO training captions + ``extra_texts``, save it (fp16) with its
    tokenizer into ``out_dir``, measure it there, and write ``checksums.json`` and ``metrics.json``."""
    import numpy as np
    import tokenizers
    import torch
    import transformers
    from transformers import (
        BertConfig,
        BertForMaskedLM,
        DataCollatorForLanguageModeling,
        get_cosine_schedule_with_warmup,
    )
    from transformers.trainer_pt_utils import get_length_grouped_indices

    t_start = time.time()
    coco_file = Path(coco_file or default_coco_file())
    if not coco_file.is_file():
        raise SystemExit(f"{coco_file}: COCO captions not found (set MEMBENCH_DATA_DIR or pass --coco)")
    coco_train, coco_val = coco_split(coco_file)
    vocab, vocab_parts = build_vocabulary(coco_train, extra_texts)
    tokenizer = build_tokenizer(vocab)
    rng = random.Random(seed)
    texts = [f"{PREFIX} {c}" if rng.random() < PREFIX_SHARE else c for c in coco_train]
    # A fixed share, not a fixed repeat count: v2's 2692 mini texts (mostly drawn-scene captions)
    # x 5 were 37% of training and cost COCO held-out top-1 0.535 -> 0.466 ("coffee" left the
    # top-20 for "a cup of [MASK]").
    repeats = max(1, round(EXTRA_SHARE * len(coco_train) / max(1, len(extra_texts))))
    texts += [t for t in extra_texts for _ in range(repeats)]
    enc = tokenizer(texts, truncation=True, max_length=MAX_LENGTH, return_special_tokens_mask=True,
                    return_token_type_ids=False)
    examples = [{k: enc[k][i] for k in ("input_ids", "attention_mask", "special_tokens_mask")} for i in range(len(texts))]
    unigram = unigram_log_probs(tokenizer, coco_train)
    log(f"mini MLM: vocabulary {len(vocab)} words ({vocab_parts}), {len(coco_train)} COCO training captions "
        f"+ {len(extra_texts)} extra texts x {repeats}, {len(coco_val)} validation captions")

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), pad_token_id=tokenizer.pad_token_id, **CONFIG)
    model = BertForMaskedLM(config)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, mask_replace_prob=0.8,
                                               random_replace_prob=0.1, seed=seed)
    optim = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = get_cosine_schedule_with_warmup(optim, num_warmup_steps=steps // 20, num_training_steps=steps)
    lengths = [len(e["input_ids"]) for e in examples]
    shuffle = torch.Generator().manual_seed(seed)
    order: list[int] = []
    history = []
    t0 = time.time()
    for step in range(1, steps + 1):
        model.train()
        while len(order) < batch:  # epochs of a seeded shuffle, batches of similar length (less padding)
            order += get_length_grouped_indices(lengths, batch, generator=shuffle)
        chosen, order = order[:batch], order[batch:]
        loss = masked_loss(model, collator([examples[i] for i in chosen]))
        optim.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        sched.step()
        if step % 500 == 0 or step == steps:
            val = masked_word_eval(model, tokenizer, coco_val[:300], unigram)
            history.append({"step": step, "loss": round(loss.item(), 4), "val300_top1": val["model"]["top1"],
                            "val300_perplexity": val["model"]["perplexity"]})
            log(f"mini MLM step {step}: loss {loss.item():.3f}, validation (300 captions) top-1 "
                f"{val['model']['top1']:.3f}, perplexity {val['model']['perplexity']:.1f} ({time.time() - t0:.0f} s)")
    train_seconds = time.time() - t0

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    built = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        _save_fp16(model, tokenizer, built)
        sums = write_checksums(built)
        # Measure what ships: the fp16 files as from_pretrained loads them (fp32).
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        shipped = AutoModelForMaskedLM.from_pretrained(built, local_files_only=True).eval()
        shipped_tok = AutoTokenizer.from_pretrained(built, local_files_only=True)
        assert next(shipped.parameters()).dtype == torch.float32
        validation = masked_word_eval(shipped, shipped_tok, coco_val, unigram)
        files = {f.name: f.stat().st_size for f in sorted(built.iterdir()) if f.is_file()}
        metrics = {
            "spec": "mini-mlm", "seed": seed, "steps": steps, "batch": batch, "lr": lr, "config": CONFIG,
            "parameters": int(sum(p.numel() for p in shipped.parameters())),
            "vocab_size": len(vocab), "vocabulary": {"coco_min_count": MIN_COUNT, **vocab_parts},
            "data": {"coco_file": coco_file.name, "coco_sha256": file_sha256(coco_file),
                     "coco_train_captions": len(coco_train), "coco_val_captions": len(coco_val),
                     "val_rule": f"image_id % {VAL_MODULUS} == 0", "extra_texts": len(extra_texts),
                     "extra_repeats": repeats, "extra_share": EXTRA_SHARE, "prefix": PREFIX, "prefix_share": PREFIX_SHARE},
            "validation": validation,
            "probes": {p: probe(shipped, shipped_tok, p) for p in PROBES},
            "history": history, "train_seconds": round(train_seconds, 1),
            "total_seconds": round(time.time() - t_start, 1), "threads": torch.get_num_threads(),
            "files": files, "folder_bytes": sum(files.values()), "sha256": sums,
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                         "tokenizers": tokenizers.__version__, "numpy": np.__version__},
        }
        metrics["folder_bytes"] += len(json.dumps(metrics, indent=1)) + 1  # metrics.json ships too (approx.)
        (built / METRICS_FILE).write_text(json.dumps(metrics, indent=1, ensure_ascii=False) + "\n")
        (built / METRICS_FILE).chmod(0o644)
        _replace_folder(built, out_dir)
    finally:
        if built.exists():
            shutil.rmtree(built)
    v = validation
    log(f"mini MLM: validation top-1 {v['model']['top1']:.3f} (unigram {v['unigram']['top1']:.3f}), top-10 "
        f"{v['model']['top10']:.3f} ({v['unigram']['top10']:.3f}), perplexity {v['model']['perplexity']:.1f} "
        f"({v['unigram']['perplexity']:.1f}); {metrics['folder_bytes'] / 2**20:.2f} MiB in {out_dir}")
    return metrics


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=MLM_DIR, help="output folder (default: benchmark_data/mini/mlm)")
    ap.add_argument("--coco", type=Path, default=None, help="captions_val2017.json (default: the shared data)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: the figures' setting)")
    ap.add_argument("--mini-dir", type=Path, default=HERE,
                    help="folder with the mini's training_captions.json, trigger_prompts.csv, general_prompts.txt")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    train_mini_mlm(mini_texts(args.mini_dir), args.out, seed=args.seed, steps=args.steps, coco_file=args.coco)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
