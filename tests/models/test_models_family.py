"""The model-family interface (``membench_eval.models``): the family is chosen by the pipeline's
class, and its operations are the pipeline's own."""

from __future__ import annotations

import json
import shutil

import pytest

torch = pytest.importorskip("torch")

from membench_eval.errors import MembenchError  # noqa: E402
from membench_eval.models import Conditioning, family_for, load_pipeline  # noqa: E402
from membench_eval.models.sd import StableDiffusionFamily  # noqa: E402
from membench_eval.models.tiny import build_random_tiny_pipeline  # noqa: E402


@pytest.fixture(scope="module")
def pipe():
    torch.set_num_threads(1)
    return build_random_tiny_pipeline(seed=3, sample_size=32)


@pytest.fixture(scope="module")
def saved(pipe, tmp_path_factory):
    path = tmp_path_factory.mktemp("family") / "tiny"
    pipe.save_pretrained(path)
    return path


def test_saved_pipeline_loads_into_the_family_of_its_model_index_class(saved):
    assert json.loads((saved / "model_index.json").read_text())["_class_name"] == "StableDiffusionPipeline"
    loaded = load_pipeline(str(saved), device="cpu")
    family = family_for(loaded)
    assert isinstance(family, StableDiffusionFamily)
    assert family_for(loaded) is family  # made once per pipeline
    assert family.identity()["model"] == "local"


def test_unknown_pipeline_class_is_a_clear_error(saved, tmp_path):
    copy = tmp_path / "other"
    shutil.copytree(saved, copy)
    index = copy / "model_index.json"
    data = json.loads(index.read_text())
    data["_class_name"] = "NoSuchDiffusionPipeline"
    index.write_text(json.dumps(data))
    with pytest.raises(MembenchError) as err:
        load_pipeline(str(copy), device="cpu")
    message = str(err.value)
    assert "NoSuchDiffusionPipeline" in message and str(index) in message and "StableDiffusionPipeline" in message


def test_an_object_of_no_family_is_refused():
    with pytest.raises(TypeError, match="no model family"):
        family_for(object.__new__(type("Elsewhere", (), {})))


def test_prediction_kind_follows_the_scheduler_config():
    from diffusers import DDIMScheduler

    v_pipe = build_random_tiny_pipeline(seed=4, sample_size=32)
    v_pipe.scheduler = DDIMScheduler.from_config(v_pipe.scheduler.config, prediction_type="v_prediction")
    family = family_for(v_pipe)
    assert family.prediction_type == "v_prediction"
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert family.predict(latents, 999, family.encode(["a cat"])).kind == "v_prediction"
    assert family_for(build_random_tiny_pipeline(seed=4, sample_size=32)).prediction_type == "epsilon"


def test_predict_is_the_unet_call_and_guidance_vector_the_difference_of_the_two_predictions(pipe):
    family = family_for(pipe)
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        cond = family.encode(["a red car", "an old map of the sea"])
        uncond = family.encode([""])
        eps_c = family.predict(latents, 999, cond).sample
        assert torch.equal(eps_c, pipe.unet(latents, 999, encoder_hidden_states=cond.embeds).sample)
        eps_u = family.predict(latents, 999, uncond.expand(2)).sample
        vector = family.guidance_vector(latents, 999, cond, uncond)
        both = family.predict(torch.cat([latents, latents]), 999, Conditioning.cat([uncond.expand(2), cond]))
    u, c = both.pair()
    assert torch.equal(vector, c - u)  # exactly the one batched [uncond, cond] call
    torch.testing.assert_close(vector, eps_c - eps_u, rtol=1e-4, atol=1e-5)  # = separate calls, up to batch rounding
    assert vector.abs().sum() > 0


def test_encoding_is_the_pipelines_own(pipe):
    family = family_for(pipe)
    prompts = ["a red car", "a very long prompt " * 30]
    with torch.no_grad():
        cond, uncond = family.encode_for_guidance(prompts, torch.device("cpu"), True)
        ref_c, ref_u = pipe.encode_prompt(prompts, torch.device("cpu"), 1, True)
        assert torch.equal(cond.embeds, ref_c) and torch.equal(uncond.embeds, ref_u)
        assert torch.equal(family.encode(prompts).embeds, ref_c)
        assert family.encode_for_guidance(prompts, torch.device("cpu"), False)[1] is None
    tok = pipe.tokenizer
    assert family.token_counts(prompts) == [len(tok(p, truncation=True, max_length=77).input_ids) for p in prompts]
    assert family.end_token_positions(prompts)[1] == 76  # truncated to the 77-token context


def test_attention_layers_are_the_unets_cross_attention_modules(pipe):
    family = family_for(pipe)
    layers = family.attention_layers()
    attn2 = [(n, m) for n, m in pipe.unet.named_modules() if n.endswith(".attn2")]
    assert attn2 and [(layer.name.rsplit(".", 1)[0], layer.module) for layer in layers] == attn2
    assert all(layer.role == "cross" and layer.text_tokens is None for layer in layers)
    assert {layer.block for layer in layers} == {"down_blocks.0", "mid_block", "up_blocks.1"}
    assert all(layer.name in pipe.unet.attn_processors for layer in layers)


def test_attention_processors_are_installed_on_the_text_layers_and_restored(pipe):
    family = family_for(pipe)
    before = dict(pipe.unet.attn_processors)
    marker = object()
    with family.attention_processors(lambda layer, current: marker if layer.block == "mid_block" else None):
        inside = pipe.unet.attn_processors
        changed = {k for k in before if inside[k] is not before[k]}
        assert changed == {layer.name for layer in family.attention_layers() if layer.block == "mid_block"}
        assert all(inside[k] is marker for k in changed)
    assert all(pipe.unet.attn_processors[k] is v for k, v in before.items())


def test_conditioning_rows_concatenate_chunk_and_broadcast():
    one = Conditioning(torch.zeros(1, 3, 2), pooled=torch.zeros(1, 2))
    many = Conditioning(torch.ones(4, 3, 2), pooled=torch.ones(4, 2), extra={"ids": torch.arange(4)})
    assert len(one.expand(4)) == 4 and one.expand(4).pooled.shape == (4, 2)
    both = Conditioning.cat([one.expand(4), Conditioning(many.embeds, many.pooled)])
    assert len(both) == 8 and torch.equal(both.embeds[4:], many.embeds) and both.mask is None
    assert [len(c) for c in many.chunk(3)] == [3, 1] and torch.equal(many.chunk(3)[1].extra["ids"], torch.tensor([3]))


def test_initial_latents_and_decode_are_the_pipelines(pipe):
    from diffusers.utils.torch_utils import randn_tensor

    family = family_for(pipe)
    gens = [torch.Generator().manual_seed(s) for s in (5, 6)]
    latents = family.initial_latents(gens, 32, 32, dtype=torch.float32, device=torch.device("cpu"))
    ref = randn_tensor((2, 4, 8, 8), generator=[torch.Generator().manual_seed(s) for s in (5, 6)], dtype=torch.float32)
    assert torch.equal(latents, ref)
    with torch.no_grad():
        images = family.decode(latents)
        tensor = family.decode_tensor(latents)
    assert len(images) == 2 and images[0].shape == (32, 32, 3) and 0 <= images[0].min() <= images[0].max() <= 1
    assert tensor.shape == (2, 3, 32, 32)
    assert family.native_size == 32 and family.latent_shape(32, 32) == (4, 8, 8)
