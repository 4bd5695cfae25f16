"""Faster CPU forms of two layers of the conv VAE, with torch's own maths and state dicts.

Both are subclasses of the torch modules they replace, so parameters, state
dicts, checkpoints and forward hooks are unchanged; only how the forward is
computed differs, and only where it was measured to pay
(``benchmarks/training.py``, docs/benchmarks.md).

- :class:`OverlapAddConvTranspose2d`: the decoder's output layer, a k4 s2 p1
  transposed convolution to one channel. oneDNN runs it at about 10 GFLOP/s
  on CPU (6.4 ms of a 55 ms training step at batch 64, 32 -> 1 channels);
  as one matrix product of the input with the kernel followed by an
  overlap-add of the 16 taps it takes 2 ms. The backward is torch's own
  transposed-convolution backward, so gradients are computed exactly as
  before from the same inputs.
- :class:`TrainingReLU`: ReLU that rectifies in place while the module is in
  training mode (no new activation tensor per layer and step; the backward
  is the same threshold on the result, which is positive exactly where the
  input was), and out of place in eval mode, so hooks that record a
  convolution's own output during extraction never see it changed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# For a k4 s2 p1 transposed convolution, kernel row (or column) k sends input row i to output row
# 2 * (i + shift) + parity: TAPS[k] = (parity, shift). Output row y = 2 i - 1 + k.
TAPS: dict[int, tuple[int, int]] = {0: (1, -1), 1: (0, 0), 2: (1, 0), 3: (0, 1)}
#: The two kernel rows (or columns) that land on each output parity, the unshifted one first.
PARITY_TAPS: dict[int, tuple[int, int]] = {
    parity: tuple(sorted((k for k, (p, _) in TAPS.items() if p == parity), key=lambda k: TAPS[k][1] != 0))
    for parity in (0, 1)
}


def overlap_add_conv_transpose(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.conv_transpose2d(x, weight, bias, stride=2, padding=1)`` for a 4x4 kernel, as a product and an overlap-add.

    x: (B, C_in, H, W); weight: (C_in, C_out, 4, 4); bias: (C_out,) or None.
    Returns (B, C_out, 2H, 2W). ``cols = x @ weight`` gives every input
    pixel's 4x4 output patch per channel, (B, H, W, C_out, 4, 4); output
    pixel (2m + a, 2n + c) is the sum of the 4 patches' taps that land on it
    (two kernel rows per row parity a, two columns per parity c). Each of
    the 4 output phases starts from its unshifted tap (plus the bias) and
    adds the 3 shifted ones on the rows and columns they reach. Every output
    is a sum of the same 4 * C_in products as the convolution's, in another
    order (float32 rounding, ~1e-7 relative).
    """
    batch, channels_in, height, width = x.shape
    channels_out = weight.shape[1]
    pixels = x.permute(0, 2, 3, 1).reshape(batch * height * width, channels_in)  # (B H W, C_in)
    cols = torch.matmul(pixels, weight.reshape(channels_in, channels_out * 16))
    cols = cols.view(batch, height, width, channels_out, 4, 4)
    out = torch.empty(batch, height, 2, width, 2, channels_out, dtype=cols.dtype, device=cols.device)
    for row_parity, rows in PARITY_TAPS.items():
        for col_parity, cols_k in PARITY_TAPS.items():
            phase = out[:, :, row_parity, :, col_parity, :]  # (B, H, W, C_out)
            # rows[0] and cols_k[0] have shift 0: that tap covers the whole phase
            first = cols[:, :, :, :, rows[0], cols_k[0]]
            if bias is None:
                phase.copy_(first)
            else:
                torch.add(first, bias, out=phase)
            for kh in rows:
                for kw in cols_k:
                    if kh == rows[0] and kw == cols_k[0]:
                        continue
                    dm, dn = TAPS[kh][1], TAPS[kw][1]
                    target = phase[:, max(0, dm) : height + min(0, dm), max(0, dn) : width + min(0, dn)]
                    target += cols[:, max(0, -dm) : height + min(0, -dm), max(0, -dn) : width + min(0, -dn), :, kh, kw]
    if channels_out == 1:
        return out.view(batch, 1, 2 * height, 2 * width)  # contiguous: the strides oneDNN's backward is fastest with
    return out.view(batch, 2 * height, 2 * width, channels_out).permute(0, 3, 1, 2)  # channels_last


def _convolution_backward(grad, x, weight, needs, has_bias, stride, padding, dilation, transposed, output_padding,
                          groups):
    """(grad_x, grad_weight, grad_bias) of ``aten.convolution``: torch's backward for the first two, the bias's
    gradient apart as ``grad.sum((0, 2, 3))``.

    Asking oneDNN's backward for the bias gradient too cost 0.3-2.3 ms more per layer at batch 64 than the
    same backward without it plus the separate sum (9.1 vs 6.5 ms for the 32 -> 32 transposed convolution
    to 32 x 32); the sum is the same gradient summed in another order (float32 rounding).
    """
    grad_x, grad_weight, _ = torch.ops.aten.convolution_backward(
        grad, x, weight, None, list(stride), list(padding), list(dilation), transposed, list(output_padding), groups,
        [bool(needs[0]), bool(needs[1]), False],
    )
    grad_bias = grad.sum((0, 2, 3)) if has_bias and needs[2] else None
    return grad_x, grad_weight, grad_bias


class _Convolution(torch.autograd.Function):
    """``aten.convolution`` forward (torch's own); backward by :func:`_convolution_backward`."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, transposed, output_padding, groups):
        ctx.save_for_backward(x, weight)
        ctx.args = (bias is not None, stride, padding, dilation, transposed, output_padding, groups)
        return torch.ops.aten.convolution(x, weight, bias, list(stride), list(padding), list(dilation), transposed,
                                          list(output_padding), groups)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grads = _convolution_backward(grad, x, weight, ctx.needs_input_grad, *ctx.args)
        return (*grads, None, None, None, None, None, None)


def _autocast_on(x: torch.Tensor) -> bool:
    """Mixed precision is on for ``x``'s device: torch's own modules run (autocast casts their inputs and weights;
    the faster forms here compute in one dtype and would mix bfloat16 activations with float32 weights)."""
    return torch.is_autocast_enabled(x.device.type)


def _bias_apart_applies(module: nn.Module, x: torch.Tensor) -> bool:
    """CPU, a bias, and an input that needs its gradient: for the first convolution (images in, no input
    gradient) torch's fused backward measured faster (5.3 vs 7.3 ms), so it keeps it. Not under autocast."""
    return (x.device.type == "cpu" and x.dim() == 4 and module.bias is not None and module.padding_mode == "zeros"
            and isinstance(module.padding, tuple) and torch.is_grad_enabled() and x.requires_grad
            and not _autocast_on(x))


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` whose backward on CPU computes the bias gradient apart (:func:`_convolution_backward`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _bias_apart_applies(self, x):
            return _Convolution.apply(x, self.weight, self.bias, self.stride, self.padding, self.dilation, False,
                                      (0, 0), self.groups)
        return super().forward(x)


class ConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` whose backward on CPU computes the bias gradient apart (:func:`_convolution_backward`)."""

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if output_size is None and _bias_apart_applies(self, x):
            return _Convolution.apply(x, self.weight, self.bias, self.stride, self.padding, self.dilation, True,
                                      self.output_padding, self.groups)
        return super().forward(x, output_size)


class _OverlapAddConvTranspose(torch.autograd.Function):
    """Forward: :func:`overlap_add_conv_transpose`; backward: :func:`_convolution_backward`."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return overlap_add_conv_transpose(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        return _convolution_backward(grad, x, weight, ctx.needs_input_grad, ctx.has_bias, (2, 2), (1, 1), (1, 1),
                                     True, (0, 0), 1)


class OverlapAddConvTranspose2d(ConvTranspose2d):
    """``nn.ConvTranspose2d`` whose forward, for a k4 s2 p1 layer to one channel on CPU, is an overlap-add.

    Every other case (CUDA, other shapes or channel counts, ``output_size``)
    runs :class:`ConvTranspose2d`'s. One output channel only: measured at batch 64
    from 32 channels, 6.4 ms -> 2.0 ms; to 3 channels the overlap-add was
    slower than oneDNN (7.8 vs 6.5 ms), so RGB datasets keep torch's path.
    """

    def _overlap_add_applies(self, x: torch.Tensor) -> bool:
        return (
            x.device.type == "cpu" and x.dim() == 4 and x.dtype in (torch.float32, torch.float64)
            and self.out_channels == 1 and self.kernel_size == (4, 4) and self.stride == (2, 2)
            and self.padding == (1, 1) and self.dilation == (1, 1) and self.output_padding == (0, 0)
            and self.groups == 1 and self.padding_mode == "zeros" and not _autocast_on(x)
        )

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if output_size is None and self._overlap_add_applies(x):
            return _OverlapAddConvTranspose.apply(x, self.weight, self.bias)
        return super().forward(x, output_size)


class TrainingReLU(nn.ReLU):
    """ReLU in place in training mode, out of place in eval mode (see the module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x, inplace=self.training)


def with_torch_layers(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in which vaesim's layers are replaced by torch's own modules, same weights.

    The reference for benchmarks and tests (the loop a user would write with
    ``nn.Conv2d``, ``nn.ConvTranspose2d`` and ``nn.ReLU``), or for exporting
    the network to tools that expect torch's module types. Layout and device
    are kept.
    """
    import copy

    model = copy.deepcopy(model)
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, (Conv2d, ConvTranspose2d)):
                stock_type = nn.ConvTranspose2d if isinstance(child, nn.ConvTranspose2d) else nn.Conv2d
                stock = stock_type.__new__(stock_type)
                stock.__dict__.update(child.__dict__)  # same parameters and hyperparameters
            elif isinstance(child, TrainingReLU):
                stock = nn.ReLU()
            else:
                continue
            setattr(module, name, stock)
    return model
