"""One hook mechanism with named sites, after TransformerLens' `HookPoint`, for a model we do not own.

The model (`TransformerForConditionalGeneration`, or any model with its HF module names) is not changed: a
`HookedModel` puts one permanent PyTorch hook on each site's module, which does nothing unless a hook
function is active for that site *in the calling context*. Hook functions are activated with
`with hooked.hooks([(name, fn)])`, `run_with_hooks` or `run_with_cache`, and are always gone when the block
ends, even on an error. Active hooks live in a `contextvars.ContextVar`: a request on another thread (the
Space translating for someone else at the same moment) runs the same model with no hook at all, so the model
is neither copied nor locked.

A hook function is called as `fn(activation, name)`. On a writable site it may return a tensor of the same
shape to use instead (ablation, patching, gates); returning None leaves the activation as it is.

Sites, for every layer l (`hook_names` lists them for a model); (B, T, d) is batch, positions, d_model:

    {stack}.embed_positions                     (T, d)  the positional encoding added to the embeddings      read
    {stack}.layers.{l}.resid_pre                (B, T, d)  the residual stream entering layer l                write
    {stack}.layers.{l}.{attn}.pattern           (B, h, T_q, T_k)  attention probabilities softmax(QK^T/√d_k)   read
    {stack}.layers.{l}.{attn}.z                 (B, T, h, d_k)  each head's output, before W^O                  write
    {stack}.layers.{l}.{attn}.out               (B, T, d)  the attention sub-layer's output (after W^O)        write
    {stack}.layers.{l}.resid_after_{attn}       (B, T, d)  the residual stream after that sub-layer            read
    {stack}.layers.{l}.ffn.out                  (B, T, d)  the feed-forward sub-layer's output                 write
    {stack}.layers.{l}.resid_post               (B, T, d)  the residual stream leaving layer l                 write
    {stack}.output                              (B, T, d)  the stack's output (after the final LayerNorm of    write
                                                           a pre-LN model)

with {stack} "encoder" or "decoder" and {attn} "self_attn", plus "encoder_attn" (cross-attention) in the
decoder. `site_name` and `attention_site` write these names; every analysis asks them for its sites.
`pattern` sites are only filled when the model is asked for its attention weights (`run_with_cache` does
that); they are read-only because the weights are returned after use.
`resid_after_*` are read-only: in a post-LN model they are the sub-layer's LayerNorm output, in a pre-LN
model the input of the next LayerNorm.
"""

from __future__ import annotations

import contextvars
import difflib
import threading
import weakref
from types import MappingProxyType
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable

import torch

from .heads import STACKS, core_model, family_record, stack_families

HookFn = Callable[[torch.Tensor, str], "torch.Tensor | None"]


def site_name(stack: str, what: str, layer: int | None = None) -> str:
    """The name of a hook site (the module docstring's table): ("decoder", "resid_post", 2) ->
    "decoder.layers.2.resid_post"; a site of the whole stack has no layer: ("encoder", "output") -> "encoder.output"."""
    if stack not in STACKS:
        raise ValueError(f"unknown stack {stack!r}: use 'encoder' or 'decoder'.")
    return f"{stack}.{what}" if layer is None else f"{stack}.layers.{int(layer)}.{what}"


def attention_site(family: str, layer: int, what: str) -> str:
    """The site of one head family's attention in one layer: ("cross", 2, "z") -> decoder.layers.2.encoder_attn.z."""
    record = family_record(family)
    return site_name(record.stack, f"{record.attention}.{what}", layer)


@dataclass(frozen=True)
class _Site:
    name: str
    module: torch.nn.Module
    kind: str  # "input" (first positional input), "output" (output or output[0]), "weights" (output[1]),
    #            "heads" (out_proj's input viewed per head), "stack" (a ModelOutput's last_hidden_state)
    writable: bool
    num_heads: int = 0  # for "heads" sites


def _check_architecture(model) -> None:
    """Refuse, with what is missing, a model without this architecture's HF module names."""
    core = core_model(model)
    needed = [
        "config.normalize_before",
        "encoder.embed_positions",
        "encoder.layers",
        "decoder.embed_positions",
        "decoder.layers",
    ]
    for path in needed:
        target = core
        for part in path.split("."):
            target = getattr(target, part, None)
        if target is None:
            raise TypeError(
                f"HookedModel works on this project's encoder-decoder (TransformerForConditionalGeneration, loaded "
                f"with trust_remote_code=True, or converted from Marian): {type(model).__name__} has no `{path}`."
            )


def _sites(model) -> list[_Site]:
    _check_architecture(model)
    core = core_model(model)
    post_ln = not core.config.normalize_before
    sites = []
    for stack in STACKS:
        module = getattr(core, stack)
        families = stack_families(stack)
        sites.append(_Site(site_name(stack, "embed_positions"), module.embed_positions, "output", False))
        for l, layer in enumerate(module.layers):
            sites += _layer_sites(stack, l, layer, families, post_ln)
        sites.append(_Site(site_name(stack, "output"), module, "stack", True))
    return sites


def _layer_sites(stack: str, l: int, layer, families, post_ln: bool) -> list[_Site]:
    """The sites of one layer, in the order its sub-layers run."""
    norms = [getattr(layer, f.layer_norm) for f in families] + [layer.final_layer_norm]
    sites = [_Site(site_name(stack, "resid_pre", l), layer, "input", True)]
    for i, family in enumerate(families):
        attn = getattr(layer, family.attention)
        sites.append(_Site(attention_site(family.name, l, "pattern"), attn, "weights", False))
        sites.append(_Site(attention_site(family.name, l, "z"), attn.out_proj, "heads", True, attn.num_heads))
        sites.append(_Site(attention_site(family.name, l, "out"), attn, "output", True))
        # post-LN: LayerNorm(x + Sublayer(x)) is the stream; pre-LN: the stream enters the next LayerNorm
        after = site_name(stack, f"resid_after_{family.attention}", l)
        sites.append(_Site(after, norms[i] if post_ln else norms[i + 1], "output" if post_ln else "input", False))
    sites.append(_Site(site_name(stack, "ffn.out", l), layer.ffn, "output", True))
    sites.append(_Site(site_name(stack, "resid_post", l), layer, "output", True))
    return sites


class ActivationCache(dict):
    """Activations by site name (detached tensors), as `run_with_cache` returns them."""

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self:
            near = difflib.get_close_matches(name, list(self), n=3)
            raise KeyError(
                f"{name!r} was not cached"
                + (f"; cached names like it: {near}" if near else "")
                + ". Pass it in `names` to run_with_cache."
            )
        return super().__getitem__(name)


_INSTALL_LOCK = threading.Lock()
_HOOKED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class HookedModel:
    """Named hook sites on a loaded encoder-decoder: `HookedModel(model)` (one per model, made once)."""

    def __new__(cls, model):
        with _INSTALL_LOCK:
            hooked = _HOOKED.get(model)
            if hooked is None:
                hooked = super().__new__(cls)
                hooked._install(model)
                _HOOKED[model] = hooked
        return hooked

    def __init__(self, model):  # everything is done once, in `_install`
        pass

    @property
    def model(self):
        """The hooked model (held weakly: hooking a model never keeps it alive)."""
        return self._model()

    def _install(self, model) -> None:
        self._model = weakref.ref(model)
        self._active: contextvars.ContextVar = contextvars.ContextVar(
            f"encdec_lens_hooks_{id(self)}", default=MappingProxyType({})
        )  # read-only
        self._sites = {site.name: site for site in _sites(model)}
        for site in self._sites.values():
            if site.kind == "input" or site.kind == "heads":
                site.module.register_forward_pre_hook(self._pre_hook(site))
            else:
                site.module.register_forward_hook(self._post_hook(site))

    # --- names ----------------------------------------------------------------------------------------
    @property
    def hook_names(self) -> list[str]:
        return list(self._sites)

    def check_name(self, name: str) -> str:
        if name not in self._sites:
            near = difflib.get_close_matches(str(name), self.hook_names, n=3)
            raise ValueError(
                f"{name!r} is not a hook site of this model"
                + (f"; did you mean {near}?" if near else "")
                + " `HookedModel(model).hook_names` lists them all."
            )
        return name

    attention_site = staticmethod(attention_site)

    # --- the permanent hooks ----------------------------------------------------------------------------
    def _call(self, site: _Site, value: torch.Tensor):
        """Run the active hook functions of `site` on `value`; the value to use next, or None if unchanged."""
        fns = self._active.get().get(site.name)
        if not fns:
            return None
        changed = None
        for fn in fns:
            result = fn(value if changed is None else changed, site.name)
            if result is None:
                continue
            if not site.writable:
                raise RuntimeError(f"hook site {site.name!r} is read-only: its hook function must return None.")
            if not isinstance(result, torch.Tensor) or result.shape != value.shape:
                raise ValueError(
                    f"a hook on {site.name!r} returned {getattr(result, 'shape', type(result).__name__)};"
                    f" it must return a tensor of shape {tuple(value.shape)} or None."
                )
            changed = result
        return changed

    def _pre_hook(self, site: _Site):
        def hook(module, args):
            if not self._active.get() or not args:
                return None
            x = args[0]
            if site.kind == "heads":  # Concat(head_1..head_h): (B, T, d) -> (B, T, h, d_k)
                heads = x.view(*x.shape[:-1], site.num_heads, x.shape[-1] // site.num_heads)
                new = self._call(site, heads)
                return None if new is None else (new.reshape(x.shape), *args[1:])
            new = self._call(site, x)
            return None if new is None else (new, *args[1:])

        return hook

    def _post_hook(self, site: _Site):
        def hook(module, args, output):
            if not self._active.get():
                return None
            if site.kind == "stack":
                new = self._call(site, output.last_hidden_state)
                if new is not None:
                    output.last_hidden_state = new
                return output if new is not None else None
            if site.kind == "weights":
                if isinstance(output, tuple) and output[1] is not None:
                    self._call(site, output[1])
                return None
            value = output[0] if isinstance(output, tuple) else output
            new = self._call(site, value)
            if new is None:
                return None
            return (new, *output[1:]) if isinstance(output, tuple) else new

        return hook

    # --- activating hook functions ----------------------------------------------------------------------
    @contextmanager
    def hooks(self, fwd_hooks: Iterable[tuple[str, HookFn]] = ()):
        """Activate hook functions [(site name, fn), ...] inside the block, in this context only."""
        active = {name: list(fns) for name, fns in self._active.get().items()}
        for name, fn in fwd_hooks:
            active.setdefault(self.check_name(name), []).append(fn)
        token = self._active.set(active)
        try:
            yield self
        finally:
            self._active.reset(token)

    @contextmanager
    def caching(self, names: Iterable[str] | Callable[[str], bool] | None = None):
        """Record the activations of `names` (a list, a filter function, or None for every site) inside the
        block into the `ActivationCache` it yields. Later calls of the same site overwrite earlier ones."""
        cache = ActivationCache()
        if names is None:
            selected = self.hook_names
        elif callable(names):
            selected = [name for name in self.hook_names if names(name)]
        else:
            selected = [self.check_name(name) for name in names]

        def record(value, name):
            cache[name] = value.detach()

        with self.hooks([(name, record) for name in selected]):
            yield cache

    def run_with_hooks(self, fwd_hooks: Iterable[tuple[str, HookFn]] = (), **model_inputs):
        """`model(**model_inputs)` with the hook functions active (and none afterwards)."""
        with self.hooks(fwd_hooks):
            return self.model(**model_inputs)

    def run_with_cache(
        self,
        names: Iterable[str] | Callable[[str], bool] | None = None,
        fwd_hooks: Iterable[tuple[str, HookFn]] = (),
        **model_inputs,
    ):
        """`(model(**model_inputs), ActivationCache)`: the activations at `names` (None: every site).

        Attention patterns are requested from the model when a `pattern` site is among the names.
        """
        with self.hooks(fwd_hooks), self.caching(names) as cache:
            wants_patterns = any(name.endswith(".pattern") for name in self._active.get())
            if wants_patterns:
                model_inputs.setdefault("output_attentions", True)
            output = self.model(**model_inputs)
        return output, cache
