"""encdec_lens.hooks (named hook sites) and encdec_lens.ablation's gates, gradient importance and rank correlation.

Every check compares the hooks with something computed without them: the model's own outputs
(`output_attentions`, `output_hidden_states`), the layer norms applied by hand, plain PyTorch hooks, finite
differences. Tiny models as in test_circuits.py (non-zero biases and layer-norm gains), post-LN and pre-LN.
"""

import gc
import threading
import weakref

import pytest
import torch
import torch.nn.functional as F

from conftest import perturbed_model
from encdec_lens import ablation as ablation_lib
from encdec_lens import heads as head_names
from encdec_lens import inputs
from encdec_lens.hooks import HookedModel

SOURCE = [5, 17, 33, 8, 61, 2]
OTHER_SOURCE = [44, 9, 70, 2]
TARGET = [9, 40, 12, 77, 2]
SHORT_TARGET = [31, 2]


def make_model(**overrides):
    return perturbed_model(0.1, **overrides)


@pytest.fixture(params=[False, True], ids=["post_ln", "pre_ln"])
def model(request):
    return make_model(normalize_before=request.param)


def model_inputs(model, source=SOURCE, target=TARGET, **extra):
    example = inputs.make_example(model, None, source, target)
    input_ids, decoder_input_ids, _ = example.tensors()
    return dict(input_ids=input_ids, decoder_input_ids=decoder_input_ids, use_cache=False, **extra)


def plain_logits(model, source=SOURCE, target=TARGET, **extra):
    with torch.no_grad():
        return model(**model_inputs(model, source, target, **extra)).logits


def zero_hook(value, name):
    return torch.zeros_like(value)


def cross_z_sites(hooked, model):
    return [hooked.attention_site("cross", l, "z") for l in range(model.config.decoder_layers)]


# ------------------------------------------------------------------------------------------------ 1. names


def documented_names(n_enc, n_dec):
    """The sites of the module docstring's table, written out independently of the library."""
    names = set()
    for stack, n_layers, attns in (
        ("encoder", n_enc, ["self_attn"]),
        ("decoder", n_dec, ["self_attn", "encoder_attn"]),
    ):
        names |= {f"{stack}.embed_positions", f"{stack}.output"}
        for l in range(n_layers):
            p = f"{stack}.layers.{l}"
            names |= {f"{p}.resid_pre", f"{p}.ffn.out", f"{p}.resid_post"}
            for a in attns:
                names |= {f"{p}.{a}.pattern", f"{p}.{a}.z", f"{p}.{a}.out", f"{p}.resid_after_{a}"}
    return names


@pytest.mark.parametrize("normalize_before", [False, True], ids=["post_ln", "pre_ln"])
@pytest.mark.parametrize("n_enc,n_dec", [(2, 2), (3, 1), (1, 4)])
def test_one_hooked_model_per_model_with_exactly_the_documented_sites(normalize_before, n_enc, n_dec):
    model = make_model(normalize_before=normalize_before, encoder_layers=n_enc, decoder_layers=n_dec)
    hooked = HookedModel(model)
    names = hooked.hook_names
    assert len(names) == len(set(names))  # no duplicate
    assert set(names) == documented_names(n_enc, n_dec)
    # per encoder layer 7 sites, per decoder layer 11, and embed_positions + output for each stack
    assert len(names) == 7 * n_enc + 11 * n_dec + 4

    def hook_counts():
        return [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()]

    counts = hook_counts()
    assert sum(counts) == len(names)  # one permanent PyTorch hook per site
    again = HookedModel(model)
    assert again is hooked and again.model is model
    assert hook_counts() == counts  # made once: no second set of hooks
    other = make_model(normalize_before=normalize_before, encoder_layers=n_enc, decoder_layers=n_dec)
    assert HookedModel(other) is not hooked and HookedModel(other).model is other
    assert hook_counts() == counts  # hooking another model leaves this one alone
    assert HookedModel.attention_site("cross", 1, "z") == "decoder.layers.1.encoder_attn.z"
    assert HookedModel.attention_site("decoder", 0, "pattern") == "decoder.layers.0.self_attn.pattern"
    assert HookedModel.attention_site("encoder", 2, "out") == "encoder.layers.2.self_attn.out"


# ------------------------------------------------------------------------------------- 2. cache vs outputs


def test_run_with_cache_agrees_with_the_models_own_outputs(model):
    hooked = HookedModel(model)
    cfg = model.config
    n_enc, n_dec, h = cfg.encoder_layers, cfg.decoder_layers, cfg.decoder_attention_heads
    kw = model_inputs(model)
    with torch.no_grad():
        reference = model(**kw, output_attentions=True, output_hidden_states=True)
        out, cache = hooked.run_with_cache(**kw)
    assert set(cache) == set(hooked.hook_names)  # every site was reached (patterns requested automatically)
    assert out.cross_attentions is not None  # run_with_cache asked for the attention weights
    assert torch.equal(out.logits, reference.logits)
    assert all(not v.requires_grad for v in cache.values())

    # attention patterns: the model's returned weights, row-stochastic
    for l in range(n_enc):
        assert torch.equal(cache[f"encoder.layers.{l}.self_attn.pattern"], reference.encoder_attentions[l])
    for l in range(n_dec):
        assert torch.equal(cache[f"decoder.layers.{l}.self_attn.pattern"], reference.decoder_attentions[l])
        assert torch.equal(cache[f"decoder.layers.{l}.encoder_attn.pattern"], reference.cross_attentions[l])
    pattern = cache["decoder.layers.1.encoder_attn.pattern"]
    assert pattern.shape == (1, h, len(TARGET), len(SOURCE))
    torch.testing.assert_close(pattern.sum(-1), torch.ones(1, h, len(TARGET)))

    # residual stream: hidden_states[l + 1] leaves layer l (the last one before the final LayerNorm of pre-LN)
    for l in range(n_enc - 1):
        assert torch.equal(cache[f"encoder.layers.{l}.resid_post"], reference.encoder_hidden_states[l + 1])
        assert torch.equal(cache[f"encoder.layers.{l + 1}.resid_pre"], reference.encoder_hidden_states[l + 1])
    for l in range(n_dec - 1):
        assert torch.equal(cache[f"decoder.layers.{l}.resid_post"], reference.decoder_hidden_states[l + 1])
        assert torch.equal(cache[f"decoder.layers.{l + 1}.resid_pre"], reference.decoder_hidden_states[l + 1])
    assert torch.equal(cache["encoder.layers.0.resid_pre"], reference.encoder_hidden_states[0])
    assert torch.equal(cache["decoder.layers.0.resid_pre"], reference.decoder_hidden_states[0])
    last = cache[f"decoder.layers.{n_dec - 1}.resid_post"]
    if cfg.normalize_before:
        core = model.model
        assert torch.equal(core.decoder.layer_norm(last), reference.decoder_hidden_states[-1])
        assert not torch.allclose(last, reference.decoder_hidden_states[-1], atol=1e-3)
        assert torch.equal(
            core.encoder.layer_norm(cache[f"encoder.layers.{n_enc - 1}.resid_post"]),
            reference.encoder_last_hidden_state,
        )
    else:
        assert torch.equal(last, reference.decoder_hidden_states[-1])
        assert torch.equal(cache[f"encoder.layers.{n_enc - 1}.resid_post"], reference.encoder_last_hidden_state)
    assert torch.equal(cache["encoder.output"], reference.encoder_last_hidden_state)
    assert torch.equal(cache["decoder.output"], reference.decoder_hidden_states[-1])
    torch.testing.assert_close(model.lm_head(cache["decoder.output"]), reference.logits, rtol=0, atol=1e-6)

    # positional encodings: what the stack adds to the scaled token embeddings
    core = model.model
    enc_embed = core.encoder.embed_tokens(kw["input_ids"])  # the module applies sqrt(d_model)
    dec_embed = core.decoder.embed_tokens(kw["decoder_input_ids"])
    pe_enc, pe_dec = cache["encoder.embed_positions"], cache["decoder.embed_positions"]
    assert pe_enc.shape[-2:] == (len(SOURCE), cfg.d_model) and pe_dec.shape[-2:] == (len(TARGET), cfg.d_model)
    torch.testing.assert_close(enc_embed + pe_enc, reference.encoder_hidden_states[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(dec_embed + pe_dec, reference.decoder_hidden_states[0], rtol=0, atol=1e-6)


def test_z_is_the_input_of_w_o_and_out_its_output(model):
    """z compared with plain PyTorch hooks on out_proj, and with softmax(QK^T/√d_k) V recomputed for cross-attention."""
    hooked = HookedModel(model)
    cfg = model.config
    h, d_k = cfg.decoder_attention_heads, cfg.d_model // cfg.decoder_attention_heads
    seen = {}
    handles = []
    for family in head_names.FAMILIES:
        for l in range(head_names.grid_shape(model, family)[0]):
            attn = head_names.attention_module(model, family, l)
            key = (family, l)
            handles.append(
                attn.out_proj.register_forward_hook(
                    lambda m, args, output, key=key: seen.__setitem__(key, (args[0].detach(), output.detach()))
                )
            )
    try:
        with torch.no_grad():
            _, cache = hooked.run_with_cache(**model_inputs(model))
    finally:
        for handle in handles:
            handle.remove()
    assert len(seen) == 3 * 2
    for (family, l), (w_o_input, w_o_output) in seen.items():
        z = cache[hooked.attention_site(family, l, "z")]
        assert z.shape == (*w_o_input.shape[:2], h, d_k)
        assert torch.equal(z.reshape(w_o_input.shape), w_o_input)
        assert torch.equal(cache[hooked.attention_site(family, l, "out")], w_o_output)

    # head j of cross-attention: z[:, t, j] = sum_s pattern[:, j, t, s] V_j[:, s], V = W^V(encoder output)
    enc = cache["encoder.output"]
    for l in range(cfg.decoder_layers):
        attn = model.model.decoder.layers[l].encoder_attn
        with torch.no_grad():
            v = attn.v_proj(enc).view(*enc.shape[:2], h, d_k)  # (B, S, h, d_k)
        pattern = cache[hooked.attention_site("cross", l, "pattern")]  # (B, h, T, S)
        expected = torch.einsum("bhts,bshd->bthd", pattern, v)
        torch.testing.assert_close(cache[hooked.attention_site("cross", l, "z")], expected, rtol=0, atol=1e-6)


def test_cache_of_some_names_and_unknown_cache_keys(model):
    hooked = HookedModel(model)
    kw = model_inputs(model)
    names = ["decoder.layers.1.encoder_attn.z", "encoder.output"]
    with torch.no_grad():
        out, cache = hooked.run_with_cache(names, **kw)
        plain = model(**kw)
    assert set(cache) == set(names)
    assert out.cross_attentions is None  # no pattern asked for: the model was not asked for weights
    assert torch.equal(out.logits, plain.logits)
    with pytest.raises(KeyError, match="was not cached"):
        cache["decoder.layers.1.encoder_attn.pattern"]
    with torch.no_grad():
        _, only = hooked.run_with_cache(lambda name: name.endswith(".pattern"), **kw)
    assert len(only) == 3 * 2 and all(name.endswith(".pattern") for name in only)


# ----------------------------------------------------------------------------- 3. resid_after_* vs layers


def test_resid_after_sites_follow_the_layer_norm_placement(model):
    hooked = HookedModel(model)
    cfg = model.config
    with torch.no_grad():
        _, c = hooked.run_with_cache(**model_inputs(model))
        for stack, attns in (("encoder", ["self_attn"]), ("decoder", ["self_attn", "encoder_attn"])):
            for l, layer in enumerate(getattr(model.model, stack).layers):
                p = f"{stack}.layers.{l}"
                stream = c[f"{p}.resid_pre"]
                for a in attns:
                    after = stream + c[f"{p}.{a}.out"]
                    if not cfg.normalize_before:  # post-LN: LayerNorm(x + Sublayer(x))
                        after = getattr(layer, f"{a}_layer_norm")(after)
                    torch.testing.assert_close(c[f"{p}.resid_after_{a}"], after, rtol=0, atol=1e-6)
                    stream = c[f"{p}.resid_after_{a}"]
                post = stream + c[f"{p}.ffn.out"]
                if not cfg.normalize_before:
                    post = layer.final_layer_norm(post)
                torch.testing.assert_close(c[f"{p}.resid_post"], post, rtol=0, atol=1e-6)
                if cfg.normalize_before:  # the sub-layers read the normalised stream
                    x = layer.self_attn_layer_norm(c[f"{p}.resid_pre"])
                    torch.testing.assert_close(c[f"{p}.self_attn.out"], layer.self_attn(x)[0], rtol=0, atol=1e-6)
                    torch.testing.assert_close(
                        c[f"{p}.ffn.out"], layer.ffn(layer.final_layer_norm(stream)), rtol=0, atol=1e-6
                    )
                else:
                    torch.testing.assert_close(c[f"{p}.ffn.out"], layer.ffn(stream), rtol=0, atol=1e-6)


# --------------------------------------------------------------------------------- 4. hooks always removed


def test_hooks_are_removed_after_run_with_hooks_and_after_an_error(model):
    hooked = HookedModel(model)
    kw = model_inputs(model)
    plain = plain_logits(model)
    calls = []

    def zero_and_count(value, name):
        calls.append(name)
        return torch.zeros_like(value)

    site = hooked.attention_site("cross", 0, "z")
    with torch.no_grad():
        ablated = hooked.run_with_hooks([(site, zero_and_count)], **kw).logits
    assert calls == [site]
    assert not torch.allclose(ablated, plain, atol=1e-4)
    assert torch.equal(plain_logits(model), plain)
    assert calls == [site]  # not called again

    with pytest.raises(ZeroDivisionError, match="inside the block"):
        with hooked.hooks([(site, zero_and_count)]):
            inside = plain_logits(model)
            raise ZeroDivisionError("inside the block")
    assert calls == [site, site]
    assert torch.equal(inside, ablated)
    assert torch.equal(plain_logits(model), plain)

    def broken(value, name):
        calls.append(name)
        raise KeyError("hook failed")

    with pytest.raises(KeyError, match="hook failed"):
        hooked.run_with_hooks([(site, broken)], **kw)
    assert calls == [site] * 3
    assert torch.equal(plain_logits(model), plain)
    assert calls == [site] * 3


def test_nested_hook_blocks_add_up_and_unwind(model):
    hooked = HookedModel(model)
    plain = plain_logits(model)
    first, second = hooked.attention_site("cross", 0, "z"), hooked.attention_site("encoder", 1, "z")
    with hooked.hooks([(first, zero_hook)]):
        only_first = plain_logits(model)
        with hooked.hooks([(second, zero_hook)]):
            both = plain_logits(model)
        assert torch.equal(plain_logits(model), only_first)
    assert torch.equal(plain_logits(model), plain)
    with hooked.hooks([(first, zero_hook), (second, zero_hook)]):
        assert torch.equal(plain_logits(model), both)
    assert not torch.allclose(only_first, both, atol=1e-4) and not torch.allclose(only_first, plain, atol=1e-4)


# ------------------------------------------------------------------------------ 5. read-only, shape, names


@pytest.mark.parametrize(
    "site",
    [
        "decoder.layers.1.encoder_attn.pattern",
        "encoder.layers.0.self_attn.pattern",
        "decoder.layers.0.resid_after_encoder_attn",
        "encoder.layers.1.resid_after_self_attn",
        "decoder.layers.1.resid_after_self_attn",
        "encoder.embed_positions",
    ],
)
def test_read_only_sites_refuse_a_replacement(model, site):
    hooked = HookedModel(model)
    kw = model_inputs(model, output_attentions=True)  # pattern sites are only reached when weights are asked for
    plain = plain_logits(model, output_attentions=True)
    called = []

    def observe(value, name):
        called.append(name)

    with torch.no_grad():
        observed = hooked.run_with_hooks([(site, observe)], **kw).logits
    assert called == [site] and torch.equal(observed, plain)  # returning None is fine, and changes nothing
    with pytest.raises(RuntimeError, match="read-only"):
        hooked.run_with_hooks([(site, lambda value, name: value.clone())], **kw)
    assert torch.equal(plain_logits(model, output_attentions=True), plain)


@pytest.mark.parametrize(
    "site",
    [
        "decoder.layers.0.encoder_attn.z",
        "encoder.layers.1.resid_post",
        "decoder.output",
        "decoder.layers.1.ffn.out",
        "encoder.layers.0.self_attn.out",
        "decoder.layers.1.resid_pre",
    ],
)
def test_writable_sites_check_the_shape(model, site):
    hooked = HookedModel(model)
    kw = model_inputs(model)
    plain = plain_logits(model)
    with pytest.raises(ValueError, match="shape"):
        hooked.run_with_hooks([(site, lambda value, name: value[..., :-1])], **kw)
    with pytest.raises(ValueError, match="shape"):
        hooked.run_with_hooks([(site, lambda value, name: value.tolist())], **kw)
    # a returned tensor of the right shape is used (a shift that is not constant along d: a LayerNorm after a
    # pre-LN stack would undo a scale and a constant shift)
    with torch.no_grad():
        changed = hooked.run_with_hooks(
            [(site, lambda value, name: value + 0.3 * torch.arange(value.shape[-1], dtype=value.dtype))], **kw
        ).logits
    assert not torch.allclose(changed, plain, atol=1e-4)
    assert torch.equal(plain_logits(model), plain)


def test_unknown_site_names_are_refused_with_a_suggestion(model):
    hooked = HookedModel(model)
    kw = model_inputs(model)
    with pytest.raises(ValueError, match=r"did you mean \['decoder\.layers\.1\.resid_post'"):
        hooked.run_with_hooks([("decoder.layers.1.resid_psot", zero_hook)], **kw)
    with pytest.raises(ValueError, match="did you mean"):
        with hooked.hooks([("decoder.layers.0.cross_attn.z", zero_hook)]):
            pass
    with pytest.raises(ValueError, match="did you mean"):
        hooked.run_with_cache(["encoder.layers.1.self_attn.patern"], **kw)
    with pytest.raises(ValueError, match="is not a hook site"):  # layer 7 does not exist
        hooked.check_name("encoder.layers.7.self_attn.z")
    assert torch.equal(plain_logits(model), plain_logits(model))


# ------------------------------------------------------------------------------------------ 6. threads


def test_hooks_are_local_to_the_calling_context(model):
    hooked = HookedModel(model)
    plain = plain_logits(model)
    results, errors = {}, []
    barrier = threading.Barrier(2, timeout=30)

    def other_request():
        try:
            barrier.wait()  # the main thread is inside its `with` block now
            results["thread"] = plain_logits(model)
            barrier.wait()  # ... and still is
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)
            barrier.abort()

    thread = threading.Thread(target=other_request)
    with hooked.hooks([(site, zero_hook) for site in cross_z_sites(hooked, model)]):
        thread.start()
        barrier.wait()
        results["main"] = plain_logits(model)  # runs while the other thread runs its forward
        barrier.wait()
        thread.join(timeout=30)
        results["main_after_thread"] = plain_logits(model)
    assert not errors and not thread.is_alive()
    assert torch.equal(results["thread"], plain)
    # every cross head off: the decoder no longer reads the source
    ablated_other = hooked.run_with_hooks(
        [(s, zero_hook) for s in cross_z_sites(hooked, model)], **model_inputs(model, OTHER_SOURCE)
    ).logits
    assert not torch.allclose(results["main"], plain, atol=1e-4)
    torch.testing.assert_close(results["main"], ablated_other.detach(), rtol=0, atol=1e-6)
    assert torch.equal(results["main_after_thread"], results["main"])
    assert torch.equal(plain_logits(model), plain)


def test_two_threads_with_different_hooks_at_once(model):
    hooked = HookedModel(model)
    site_a, site_b = hooked.attention_site("cross", 1, "z"), hooked.attention_site("encoder", 0, "z")
    with hooked.hooks([(site_a, zero_hook)]):
        expected_a = plain_logits(model)
    with hooked.hooks([(site_b, zero_hook)]):
        expected_b = plain_logits(model)
    assert not torch.allclose(expected_a, expected_b, atol=1e-4)
    barrier = threading.Barrier(2, timeout=30)
    results, errors = {}, []

    def worker(key, site):
        try:
            with hooked.hooks([(site, zero_hook)]):
                barrier.wait()
                for i in range(3):
                    results[(key, i)] = plain_logits(model)
                barrier.wait()
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=("a", site_a)), threading.Thread(target=worker, args=("b", site_b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    for i in range(3):
        assert torch.equal(results[("a", i)], expected_a)
        assert torch.equal(results[("b", i)], expected_b)


# ---------------------------------------------------------------------------------------------- 7. gates


def test_all_ones_gates_reproduce_the_logits_bit_for_bit(model):
    plain = plain_logits(model)
    masks = {}
    for family in head_names.FAMILIES:
        n_layers, n_heads = head_names.grid_shape(model, family)
        for l in range(n_layers):
            masks[(family, l)] = torch.ones(n_heads)
    assert len(masks) == 3 * 2
    with ablation_lib.head_masks(model, masks):
        gated = plain_logits(model)
    assert torch.equal(gated, plain)
    # per-row gates (B, h) too, on a batch of two
    batch = model_inputs(model)
    batch = {k: (v.expand(2, -1) if torch.is_tensor(v) else v) for k, v in batch.items()}
    with torch.no_grad():
        plain2 = model(**batch).logits
        with ablation_lib.head_masks(model, {k: torch.ones(2, m.shape[0]) for k, m in masks.items()}):
            gated2 = model(**batch).logits
    assert torch.equal(gated2, plain2)
    # a gate of 0 on one row switches the head off in that row only
    gate = torch.ones(2, 4)
    gate[1, 2] = 0.0
    with torch.no_grad(), ablation_lib.head_masks(model, {("cross", 0): gate}):
        mixed = model(**batch).logits
    with ablation_lib.ablate_heads(model, [("cross", 0, 2)]):
        off = plain_logits(model)
    assert torch.equal(mixed[0], plain[0])
    torch.testing.assert_close(mixed[1], off[0], rtol=0, atol=1e-6)
    assert not torch.allclose(off, plain, atol=1e-4)
    with pytest.raises(RuntimeError, match="per-row head mask has 3 rows"):
        with ablation_lib.head_masks(model, {("cross", 0): torch.ones(3, 4)}):
            model(**batch)


# ------------------------------------------------------------------------------------- 8. gradient importance


def nll(model, example, gates=None):
    """The example's summed negative log-likelihood (float64), its heads scaled by `gates` {(family, layer): (h,)}."""
    input_ids, decoder_input_ids, labels = example.tensors()
    with torch.no_grad(), ablation_lib.head_masks(model, gates or {}):
        logits = model(input_ids=input_ids, decoder_input_ids=decoder_input_ids, use_cache=False).logits
    return float(F.cross_entropy(logits.transpose(1, 2), labels, reduction="sum"))


def finite_difference_importance(model, example, eps=1e-4):
    fd = {}
    for family in head_names.FAMILIES:
        n_layers, n_heads = head_names.grid_shape(model, family)
        for l in range(n_layers):
            values = []
            for head in range(n_heads):
                up, down = torch.ones(n_heads, dtype=torch.float64), torch.ones(n_heads, dtype=torch.float64)
                up[head], down[head] = 1 + eps, 1 - eps
                values.append(
                    abs(nll(model, example, {(family, l): up}) - nll(model, example, {(family, l): down})) / (2 * eps)
                )
            fd[(family, l)] = torch.tensor(values, dtype=torch.float64)
    return fd


def test_gradient_importance_matches_finite_differences(model):
    model.double()
    example = inputs.make_example(model, None, SOURCE, TARGET)
    grads = ablation_lib.gradient_importance(model, [example])
    fd = finite_difference_importance(model, example)
    assert set(grads) == set(fd) and len(grads) == 3 * 2
    scale = max(float(v.max()) for v in fd.values())
    assert scale > 1e-3  # the heads matter
    for key, expected in fd.items():
        assert grads[key].shape == (4,)
        torch.testing.assert_close(grads[key].double(), expected, rtol=1e-4, atol=1e-6 * scale, msg=str(key))
    assert not model.training
    # families
    only_cross = ablation_lib.gradient_importance(model, [example], families=("cross",))
    assert set(only_cross) == {("cross", 0), ("cross", 1)}
    for key, value in only_cross.items():
        torch.testing.assert_close(value, grads[key], rtol=1e-9, atol=0)
    with pytest.raises(ValueError, match="unknown head family"):
        ablation_lib.gradient_importance(model, [example], families=("self",))
    with pytest.raises(ValueError, match="at least one example"):
        ablation_lib.gradient_importance(model, [])


def test_gradient_importance_of_two_examples_is_the_mean_of_each(model):
    model.double()
    a = inputs.make_example(model, None, SOURCE, TARGET)
    b = inputs.make_example(model, None, OTHER_SOURCE, SHORT_TARGET)  # shorter source and target: padding
    ga = ablation_lib.gradient_importance(model, [a])
    gb = ablation_lib.gradient_importance(model, [b])
    together = ablation_lib.gradient_importance(model, [a, b])
    reverse = ablation_lib.gradient_importance(model, [b, a])
    one_at_a_time = ablation_lib.gradient_importance(model, [a, b], batch_size=1)
    assert set(together) == set(ga) == set(gb)
    differs = False
    for key in ga:
        mean = (ga[key] + gb[key]) / 2
        for result in (together, reverse, one_at_a_time):
            torch.testing.assert_close(result[key].double(), mean.double(), rtol=1e-5, atol=1e-8, msg=str(key))
        # |g_a| + |g_b| != |g_a + g_b|: a shared gate (no per-row gates) would not give the mean of each
        differs |= not torch.allclose(ga[key], gb[key], rtol=1e-2)
    assert differs


def test_gradient_importance_leaves_training_mode_and_gradients_alone(model):
    example = inputs.make_example(model, None, SOURCE, TARGET)
    model.train()
    ablation_lib.gradient_importance(model, [example])
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    model.eval()
    assert torch.equal(plain_logits(model), plain_logits(model))
    with torch.no_grad():
        assert torch.equal(HookedModel(model).run_with_hooks(**model_inputs(model)).logits, plain_logits(model))


# ----------------------------------------------------------------------------------- 9. rank correlation


def test_rank_correlation():
    values = [0.3, -1.0, 2.5, 0.0, 7.0]
    assert ablation_lib.rank_correlation(values, values) == pytest.approx(1.0)
    assert ablation_lib.rank_correlation(values, [2 * v + 5 for v in values]) == pytest.approx(1.0)  # monotone
    assert ablation_lib.rank_correlation(values, [-v for v in values]) == pytest.approx(-1.0)
    assert ablation_lib.rank_correlation([1, 2, 3, 4], [40, 30, 20, 10]) == pytest.approx(-1.0)
    # (computed in float32: 1e-6 is the precision to expect)
    # ties get their mean rank. a = [1, 2, 2, 3] -> ranks (1 = largest) [4, 2.5, 2.5, 1]; b -> [4, 2, 3, 1];
    # centred: [1.5, 0, 0, -1.5] and [1.5, -0.5, 0.5, -1.5]: rho = 4.5 / sqrt(4.5 * 5) = sqrt(0.9)
    assert ablation_lib.rank_correlation([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(0.9**0.5, abs=1e-6)
    # no ties, with the textbook formula 1 - 6 sum d^2 / (n (n^2 - 1)): d = [0, 1, -1, 1, -1] -> 1 - 24/120
    assert ablation_lib.rank_correlation([1, 2, 3, 4, 5], [1, 3, 2, 5, 4]) == pytest.approx(0.8, abs=1e-6)
    # ties on both sides: a ranks [1.5, 1.5, 3.5, 3.5], b ranks [1, 2.5, 2.5, 4]: centred dot 3 / sqrt(4 * 4.5)
    assert ablation_lib.rank_correlation([9, 9, 1, 1], [8, 5, 5, 0]) == pytest.approx(3 / (4 * 4.5) ** 0.5, abs=1e-6)
    assert ablation_lib.rank_correlation([1, 1, 1], [1, 2, 3]) == 0.0  # no ordering at all
    with pytest.raises(ValueError, match="same length"):
        ablation_lib.rank_correlation([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match=">= 2"):
        ablation_lib.rank_correlation([1], [1])


# --------------------------------------------------------------------------------------------- lifetime


def test_a_hooked_model_can_be_freed():
    model = make_model()
    HookedModel(model)
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


def test_a_model_of_another_architecture_is_refused_by_name():
    with pytest.raises(TypeError, match="Linear has no `config.normalize_before`"):
        HookedModel(torch.nn.Linear(2, 2))
