#!/usr/bin/env python3
"""Export torch.jit.script-ed modules with Python control flow to ONNX (Loop / If), into .cache/control-flow/<name>/:

  model.onnx   torch.onnx.export of the scripted module (the TorchScript-based exporter keeps loops and branches)

The test (test/control-flow.test.ts) feeds trip counts and limits that take each path and compares Kiln with ONNX
Runtime on the same file. Usage: gen_control_flow_models.py (existing models are kept; --force rewrites them).
"""
from __future__ import annotations

import os
import sys
import warnings

warnings.filterwarnings("ignore")

import onnx  # noqa: E402
import torch  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, ".cache", "control-flow")


class ForThenIf(torch.nn.Module):
    """A for loop whose trip count is an input, a residual from outside the loop, then a branch on the result."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, n: int):
        h = x
        for _ in range(n):
            h = torch.tanh(self.lin(h)) + x
        if h.sum() > 0:
            h = h * 2
        else:
            h = h - 1
        return h


class WhileBelow(torch.nn.Module):
    """A while loop on a data-dependent condition (and at most 20 iterations), counting its iterations."""

    def forward(self, x: torch.Tensor, limit: torch.Tensor):
        h = x
        i = torch.zeros((), dtype=torch.int64)
        while bool(h.abs().sum() < limit) and int(i) < 20:
            h = h * 1.5 + 0.1
            i = i + 1
        return h, i


MODELS = {
    "for_then_if": (ForThenIf, (torch.randn(2, 4), 3), ["x", "n"], ["y"]),
    "while_below": (WhileBelow, (torch.randn(3, 2), torch.tensor(10.0)), ["x", "limit"], ["h", "steps"]),
}


def main() -> None:
    force = "--force" in sys.argv
    torch.manual_seed(0)
    for name, (cls, args, inputs, outputs) in MODELS.items():
        path = os.path.join(OUT, name, "model.onnx")
        if os.path.exists(path) and not force:
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        module = torch.jit.script(cls().eval())
        tmp = path + ".tmp"
        torch.onnx.export(
            module, args, tmp, input_names=inputs, output_names=outputs, opset_version=17, dynamo=False
        )
        model = onnx.load(tmp)
        onnx.checker.check_model(model)
        os.replace(tmp, path)
        print(f"control-flow: {name}: {[n.op_type for n in model.graph.node]}")


if __name__ == "__main__":
    main()
