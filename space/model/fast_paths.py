"""Faster ways to compute what `modeling_transformer.py` computes: the same values, cheaper on CPU.

`modeling_transformer.py` reads like the paper; what it does for speed alone lives here:

* `fast_dropout`: dropout (section 5.4) with a cheaper random mask on CPU;
* `eager_attention_is_faster`: when the plain matmul-softmax-matmul of equation 1 beats the fused attention
  kernels on CPU;
* `LogitsAndSmoothedLoss` (with `can_fuse_logits_and_loss`): the pre-softmax projection and the label-smoothed
  loss as one autograd step, with a cheaper backward.

Like its sibling it imports only torch, so every `save_pretrained` folder carries it flat as remote code
(`modeling_transformer.py` imports it relatively, and transformers copies relative imports with the model).
"""

import torch
import torch.nn.functional as F
from torch import nn


def fast_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Dropout (section 5.4): each element zeroed with probability p, the rest scaled by 1 / (1 - p).

    On CPU the mask comes from 15-bit random integers (kept where r >= round(p * 2^15)) instead of
    `F.dropout`'s Bernoulli sampling, which costs more; p is then exact to 1.5e-5, and the scale uses that p so
    the expected value of every element is unchanged. Elsewhere, and under torch.compile (whose inductor fuses
    `F.dropout`'s sampling), it is `F.dropout`.
    """
    if not training or p == 0.0:
        return x
    if p >= 1.0:
        return x * 0.0
    if x.device.type != "cpu" or torch.compiler.is_compiling():
        return F.dropout(x, p=p, training=True)
    threshold = round(p * 32768)
    keep = torch.empty(x.shape, dtype=torch.int16).random_() >= threshold  # random_ on int16: 0 .. 2^15 - 1
    return x * keep * (32768 / (32768 - threshold))


def eager_attention_is_faster(query: torch.Tensor, training: bool) -> bool:
    """Whether the plain attention (`eager_attention_forward`) should run instead of a fused kernel (sdpa).

    Both give the same result. On CPU the plain path costs less in two cases:
      * a decoding step (one new position per sequence): the fused kernel's set-up outweighs the attention;
      * autocast (bf16 mixed precision): the plain path's two matmuls run in bf16, while the fused CPU kernel's
        backward is a scalar loop, slow for sentences this short.
    `query` is (B, h, T, d_k).
    """
    if query.device.type != "cpu":
        return False
    decoding = query.shape[2] == 1 and not training
    return decoding or torch.is_autocast_enabled("cpu")


def can_fuse_logits_and_loss(lm_head: nn.Module, hidden: torch.Tensor, labels: torch.Tensor, training: bool) -> bool:
    """Whether `LogitsAndSmoothedLoss` computes this step's logits and loss: an eager training step whose output
    layer is a plain bias-free `nn.Linear` and whose labels, (B, T) like `hidden`'s first two dimensions, hold at
    least one real target token. Otherwise the model projects and computes the loss the ordinary way."""
    return (
        training
        and not torch.compiler.is_compiling()
        and labels.shape == hidden.shape[:2]
        and type(lm_head) is nn.Linear
        and lm_head.bias is None
        and bool((labels != -100).any())
    )


def loss_chunk_rows(logits: torch.Tensor) -> int:
    """Rows of the (N, V) loss computed at once: about 4 MB of fp32, so that the softmax over the vocabulary
    stays in the CPU's cache instead of making several passes over an N x V tensor in memory."""
    return max(1, (1 << 20) // logits.shape[-1])


class LogitsAndSmoothedLoss(torch.autograd.Function):
    """The pre-softmax projection (section 3.4) and the label-smoothed loss (section 5.4) as one autograd step.

    Forward: logits = h W^T for every position (returned, as always), and over the N real target positions
    (labels != -100) the mean of (1 - eps) * -log p(y) + eps * mean_v(-log p(v)), written as
    logsumexp(z) - (1 - eps) z_y - eps mean_v(z_v). The values are those of `F.linear` followed by
    `F.cross_entropy(..., label_smoothing=eps)` (`TransformerForConditionalGeneration.loss_from_logits`); only
    the backward is cheaper:
      * its gradient is one expression, softmax(z) - (1 - eps) onehot(y) - eps / V, over the N real rows,
        with no (B, T, V) log-probability or gradient tensor;
      * the two backward matmuls of the projection (for h and for W) skip the padding rows, which the loss
        ignores.
    If the returned logits are also used in something differentiated, their gradient is added exactly.

    Under autocast (mixed precision) the backward runs in the forward's autocast state, as `torch.amp.custom_bwd`
    does: its matmuls in bf16/fp16 too, while the softmax and the loss stay in fp32.
    """

    @staticmethod
    def forward(ctx, hidden, weight, labels, epsilon):
        ctx.set_materialize_grads(False)  # unused logits get no (B, T, V) zero gradient
        device = hidden.device.type
        ctx.autocast = (device, torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))
        logits = F.linear(hidden, weight)  # (B, T, V)
        flat_logits = logits.reshape(-1, logits.shape[-1])  # (B*T, V)
        rows = (labels.reshape(-1) != -100).nonzero().squeeze(1)  # the N real target positions
        target = labels.reshape(-1).index_select(0, rows)  # (N,)
        loss_dtype = torch.promote_types(logits.dtype, torch.float32)  # half precision: the loss in fp32
        lse, per_token = [], []
        for chunk, chunk_target in zip(rows.split(loss_chunk_rows(logits)), target.split(loss_chunk_rows(logits))):
            z = flat_logits.index_select(0, chunk).to(loss_dtype)  # (n, V)
            chunk_lse = torch.logsumexp(z, dim=-1)  # log of the softmax denominator
            lse.append(chunk_lse)
            per_token.append(
                chunk_lse - (1.0 - epsilon) * z.gather(1, chunk_target[:, None]).squeeze(1) - epsilon * z.mean(dim=-1)
            )
        lse = torch.cat(lse) if lse else flat_logits.new_zeros(0, dtype=loss_dtype)
        per_token = torch.cat(per_token) if per_token else lse
        ctx.save_for_backward(hidden, weight, rows, target, logits, lse)
        ctx.epsilon = epsilon
        return logits, per_token.mean()

    @staticmethod
    def backward(ctx, grad_logits, grad_loss):
        device, enabled, dtype = ctx.autocast
        with torch.autocast(device_type=device, dtype=dtype, enabled=enabled):
            return LogitsAndSmoothedLoss._backward(ctx, grad_logits, grad_loss)

    @staticmethod
    def _backward(ctx, grad_logits, grad_loss):
        hidden, weight, rows, target, logits, lse = ctx.saved_tensors
        flat_hidden = hidden.reshape(-1, hidden.shape[-1])  # (B*T, d_model)
        flat_logits = logits.reshape(-1, logits.shape[-1])  # (B*T, V)
        vocab = flat_logits.shape[-1]
        grad_hidden = grad_weight = None
        if grad_loss is not None:
            grad_weight = torch.zeros_like(weight, dtype=torch.promote_types(weight.dtype, torch.float32))
            grad_hidden = flat_hidden.new_zeros(flat_hidden.shape)
            scale = grad_loss / len(rows)
            step = loss_chunk_rows(logits)
            for start in range(0, len(rows), step):
                chunk, chunk_target = rows[start : start + step], target[start : start + step]
                # d loss / d z = (softmax(z) - eps / V - (1 - eps) onehot(y)) / N, for the real rows only
                z = flat_logits.index_select(0, chunk).to(lse.dtype)  # (n, V)
                grad_z = z.sub_(lse[start : start + step, None]).exp_().sub_(ctx.epsilon / vocab)
                grad_z.scatter_add_(1, chunk_target[:, None], grad_z.new_full((len(chunk), 1), ctx.epsilon - 1.0))
                grad_z = grad_z.mul_(scale).to(weight.dtype)  # (n, V)
                grad_weight += grad_z.t() @ flat_hidden.index_select(0, chunk)  # (V, d_model), fp32 accumulation
                grad_hidden.index_copy_(0, chunk, (grad_z @ weight).to(flat_hidden.dtype))
            grad_weight = grad_weight.to(weight.dtype)
        if grad_logits is not None:  # the logits were used elsewhere too: their gradient, over all rows
            flat_grad = grad_logits.reshape(-1, grad_logits.shape[-1])  # (B*T, V)
            more_hidden = (flat_grad @ weight).to(hidden.dtype)  # (B*T, d_model)
            more_weight = (flat_grad.t() @ flat_hidden).to(weight.dtype)  # (V, d_model)
            grad_hidden = more_hidden if grad_hidden is None else grad_hidden + more_hidden
            grad_weight = more_weight if grad_weight is None else grad_weight + more_weight
        if grad_hidden is not None:
            grad_hidden = grad_hidden.view_as(hidden)  # (B, T, d_model)
        return grad_hidden, grad_weight, None, None


__all__ = ["fast_dropout", "eager_attention_is_faster", "can_fuse_logits_and_loss", "LogitsAndSmoothedLoss"]
