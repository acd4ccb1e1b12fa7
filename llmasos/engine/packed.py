"""Linear layers with weights pre-packed for oneDNN: the CPU matmul kernels run up to ~1.6x faster.

Rule: ``pack_linears(model)`` replaces every fp32 ``nn.Linear`` of a model on the CPU by a
``PackedLinear`` holding the same weights reordered once into oneDNN's blocked layout (what PyTorch's
own compiler does when it freezes a CPU model). Outputs equal the plain layer's up to float rounding.
Where this PyTorch build has no oneDNN (or the model is not fp32 on the CPU), nothing changes.
HFEngine uses this when the native step (engine/native.py, faster still) does not cover the model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

BATCH_HINT = 32  # the batch size oneDNN tunes the packed layout for; measured best from 1 to 64 rows


def packing_available() -> bool:
    ops = getattr(torch.ops, "mkldnn", None)
    return (torch.backends.mkldnn.is_available() and hasattr(ops, "_reorder_linear_weight")
            and hasattr(ops, "_linear_pointwise"))


class PackedLinear(nn.Module):
    """``y = x @ W.T + b`` with W held in oneDNN's packed layout (read-only: inference only)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        with torch.no_grad():
            weight = linear.weight.detach().contiguous()
            self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, BATCH_HINT)
        self.bias = None if linear.bias is None else linear.bias.detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, shape[-1]), self.packed, self.bias,
                                               "none", [], "")
        return y.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, packed=oneDNN"


def pack_linears(model: nn.Module) -> int:
    """Swap the model's fp32 CPU Linear layers for PackedLinear in place; return how many it holds."""
    if not packing_available():
        return 0
    swaps: list[tuple[Any, str, nn.Linear]] = []
    for parent in model.modules():
        for name, child in parent.named_children():
            if (type(child) is nn.Linear and child.weight.dtype == torch.float32
                    and child.weight.device.type == "cpu"):
                swaps.append((parent, name, child))
    for parent, name, child in swaps:
        setattr(parent, name, PackedLinear(child))
    return sum(isinstance(m, PackedLinear) for m in model.modules())


__all__ = ["PackedLinear", "pack_linears", "packing_available"]
