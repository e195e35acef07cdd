"""Ren et al.'s cross-attention processor, proved on fake batches against diffusers' default.

The miniature model's text encoder has no BOS attention sink, so Ren's effect on mini is reported
as measured (tests/mitigations/test_mitigations_mini.py); the mechanism itself is proved here.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from diffusers.models.attention_processor import Attention, AttnProcessor, AttnProcessor2_0  # noqa: E402

from membench_eval.errors import MitigationError  # noqa: E402
from membench_eval.mitigation import BatchContext, ImageRequest  # noqa: E402
from tests.mitigation_files import load_module  # noqa: E402

ren = load_module("ren")
N_IMAGES, QUERIES, TOKENS, TEXT_DIM = 3, 16, 77, 24


def _layer() -> Attention:
    torch.manual_seed(0)
    return Attention(query_dim=32, cross_attention_dim=TEXT_DIM, heads=4, dim_head=8).eval()


def _batch(rows: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(rows, QUERIES, 32, generator=g)
    # A large BOS key, like CLIP's attention sink, so the rescale has something to act on.
    text = torch.randn(rows, TOKENS, TEXT_DIM, generator=g)
    text[:, 0] *= 4
    return hidden, text


def _run(processor, layer, hidden, text):
    with torch.no_grad():
        return processor(layer, hidden, encoder_hidden_states=text)


@pytest.mark.parametrize("default", [AttnProcessor(), AttnProcessor2_0()], ids=["AttnProcessor", "AttnProcessor2_0"])
def test_identity_setting_equals_default_processor(default):
    layer = _layer()
    hidden, text = _batch(2 * N_IMAGES)
    ours = ren.BOSRescaleCrossAttnProcessor(1.0, [TOKENS] * N_IMAGES)
    torch.testing.assert_close(_run(ours, layer, hidden, text), _run(default, layer, hidden, text), rtol=1e-5, atol=1e-5)


def test_only_conditional_half_changes():
    """diffusers stacks [uncond, cond]: rows N..2N-1 change, rows 0..N-1 stay (not the reference's 1::2)."""
    layer = _layer()
    hidden, text = _batch(2 * N_IMAGES)
    default = _run(AttnProcessor(), layer, hidden, text)
    out = _run(ren.BOSRescaleCrossAttnProcessor(1.3, [5, 9, 77]), layer, hidden, text)
    torch.testing.assert_close(out[:N_IMAGES], default[:N_IMAGES], rtol=1e-5, atol=1e-5)
    for row in range(N_IMAGES, 2 * N_IMAGES):
        assert (out[row] - default[row]).abs().max() > 1e-3, f"conditional row {row} unchanged"


def test_bos_rescale_alone_changes_conditional_rows():
    """No padding to mask (length 77): the change comes from the BOS logit alone, and grows with c."""
    layer = _layer()
    hidden, text = _batch(2 * N_IMAGES)
    default = _run(AttnProcessor(), layer, hidden, text)
    diffs = []
    for c in (1.1, 1.3):
        out = _run(ren.BOSRescaleCrossAttnProcessor(c, [TOKENS] * N_IMAGES), layer, hidden, text)
        torch.testing.assert_close(out[:N_IMAGES], default[:N_IMAGES], rtol=1e-5, atol=1e-5)
        diffs.append((out[N_IMAGES:] - default[N_IMAGES:]).abs().mean().item())
    assert 0 < diffs[0] < diffs[1]


def test_bos_rescale_matches_hand_computed_attention():
    """One conditional row, one head computed by hand: softmax over logits with logit[0] * c."""
    layer = _layer()
    hidden, text = _batch(2)
    out = _run(ren.BOSRescaleCrossAttnProcessor(1.3, [6]), layer, hidden, text)
    with torch.no_grad():
        q = layer.to_q(hidden[1]).view(QUERIES, 4, 8).transpose(0, 1)
        k = layer.to_k(text[1]).view(TOKENS, 4, 8).transpose(0, 1)
        v = layer.to_v(text[1]).view(TOKENS, 4, 8).transpose(0, 1)
        logits = q @ k.transpose(1, 2) * 8**-0.5
        logits[..., 0] *= 1.3
        logits[..., 6:] = float("-inf")
        heads = logits.softmax(-1) @ v
        expected = layer.to_out[0](heads.transpose(0, 1).reshape(QUERIES, 32))
    torch.testing.assert_close(out[1], expected, rtol=1e-5, atol=1e-5)


def test_padding_after_end_token_is_ignored_by_conditional_rows():
    """Changing the text embeddings past each prompt's length changes nothing in its row."""
    layer = _layer()
    hidden, text = _batch(2 * N_IMAGES)
    lengths = [4, 10, 30]
    processor = ren.BOSRescaleCrossAttnProcessor(1.2, lengths)
    before = _run(processor, layer, hidden, text)
    noisy = text.clone()
    for image, length in enumerate(lengths):
        noisy[N_IMAGES + image, length:] += 5 * torch.randn_like(noisy[N_IMAGES + image, length:])
    after = _run(processor, layer, hidden, noisy)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    # ...whereas the unconditional rows still attend to every token.
    noisy[0, 40:] += 5
    assert (_run(processor, layer, hidden, noisy)[0] - before[0]).abs().max() > 1e-3


def test_without_guidance_every_row_is_conditional():
    layer = _layer()
    hidden, text = _batch(N_IMAGES)
    default = _run(AttnProcessor(), layer, hidden, text)
    out = _run(ren.BOSRescaleCrossAttnProcessor(1.3, [8] * N_IMAGES, guidance=False), layer, hidden, text)
    for row in range(N_IMAGES):
        assert (out[row] - default[row]).abs().max() > 1e-3


def test_batch_size_mismatch_is_a_clear_error():
    layer = _layer()
    hidden, text = _batch(5)
    with pytest.raises(MitigationError, match="5 rows, expected 6"):
        _run(ren.BOSRescaleCrossAttnProcessor(1.3, [8] * N_IMAGES), layer, hidden, text)
    # The layout comes from the engine's ctx.do_classifier_free_guidance, not from the row count.
    with pytest.raises(MitigationError, match="6 rows, expected 3"):
        _run(ren.BOSRescaleCrossAttnProcessor(1.3, [8] * N_IMAGES, guidance=False), layer, *_batch(2 * N_IMAGES))


def test_processor_lengths_come_from_the_prompts_actually_encoded():
    from membench_eval.models.tokenizer import build_clip_tokenizer

    class Pipe:
        tokenizer = build_clip_tokenizer()

    prompts = ["a photo of a cat", "x " * 200]
    ctx = BatchContext(
        requests=[ImageRequest("p0", prompts[0], 0, 1), ImageRequest("p1", prompts[1], 0, 2)],
        prompts=prompts, num_inference_steps=2, guidance_scale=7.5, height=64, width=64, device=torch.device("cpu"),
    )
    processor = ren.RenCrossAttention(c=1.3).cross_attention_processor(Pipe(), ctx)
    assert processor.c == 1.3
    assert processor.token_lengths == [7, 77]  # BOS + 5 words + EOS; the long prompt is truncated to 77


def test_invalid_c_is_rejected():
    with pytest.raises(MitigationError, match="c must be > 0"):
        ren.RenCrossAttention(c=0.0)
