#!/usr/bin/env python3
"""Quantized and half-precision variants of the test models (issue 16), made with ONNX Runtime's own tools from the
float32 models that gen_models.py wrote to .cache/models/<base>/:

  <base>_qdq    (mobilenet_v2 and resnet18 full size for the benchmark, their _small variants for the tests)
                onnxruntime.quantization.quantize_static, QDQ format, uint8 activations, int8 per-channel weights,
                calibrated on random inputs (fixed seed)
  <base>_dynq   onnxruntime.quantization.quantize_dynamic (MatMulInteger / DynamicQuantizeLinear)
  <base>_fp16   onnxruntime.transformers.float16.convert_float_to_float16, float16 inputs and outputs

each with test_data_set_0 (the base model's input, cast for fp16; the output computed by onnxruntime CPU on the
same file) and info.json, as gen_models.py writes them.

Usage: gen_quantized_models.py [name ...]   (default: all below). --force regenerates.
"""
from __future__ import annotations

import json
import os
import shutil
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from test_data import write_test_data_set

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, ".cache", "models")

VARIANTS = {
    "mobilenet_v2_small_qdq": ("mobilenet_v2_small", "qdq"),
    "mobilenet_v2_qdq": ("mobilenet_v2", "qdq"),
    "resnet18_small_qdq": ("resnet18_small", "qdq"),
    "resnet18_qdq": ("resnet18", "qdq"),
    "bert_small_dynq": ("bert_small", "dynq"),
    "resnet18_small_fp16": ("resnet18_small", "fp16"),
}


def base_inputs(base: str) -> dict:
    d = os.path.join(OUT, base)
    if not os.path.exists(os.path.join(d, "info.json")):
        raise SystemExit(f"{base} is missing: run scripts/gen_models.py {base} first")
    m = onnx.load(os.path.join(d, "model.onnx"), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    names = [i.name for i in m.graph.input if i.name not in inits]
    ds = os.path.join(d, "test_data_set_0")
    return {n: numpy_helper.to_array(onnx.load_tensor(os.path.join(ds, f"input_{k}.pb"))) for k, n in enumerate(names)}


class RandomReader:
    """Calibration data: a few random batches shaped like the model's inputs (fixed seed)."""

    def __init__(self, inputs: dict, n: int = 8):
        rng = np.random.default_rng(0)
        self.batches = [
            {k: (rng.standard_normal(v.shape).astype(v.dtype) if v.dtype.kind == "f" else v) for k, v in inputs.items()}
            for _ in range(n)
        ]

    def get_next(self):
        return self.batches.pop() if self.batches else None


def generate(name: str, force: bool) -> None:
    base, kind = VARIANTS[name]
    d = os.path.join(OUT, name)
    if not force and os.path.exists(os.path.join(d, "info.json")):
        print(f"{name}: present, skipped")
        return
    inputs = base_inputs(base)
    src = os.path.join(OUT, base, "model.onnx")
    if os.path.exists(d):
        shutil.rmtree(d)
    os.makedirs(os.path.join(d, "test_data_set_0"))
    path = os.path.join(d, "model.onnx")
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if kind in ("qdq", "dynq"):
        pre = os.path.join(d, "pre.onnx")
        quant_pre_process(src, pre, skip_symbolic_shape=True)
        if kind == "qdq":
            quantize_static(pre, path, RandomReader(inputs), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        else:
            quantize_dynamic(pre, path, weight_type=QuantType.QInt8)
        os.remove(pre)
    else:
        from onnxruntime.transformers.float16 import convert_float_to_float16

        m16 = convert_float_to_float16(onnx.load(src), keep_io_types=False)
        onnx.save_model(m16, path)
        inputs = {k: (v.astype(np.float16) if v.dtype == np.float32 else v) for k, v in inputs.items()}

    m = onnx.load(path)
    if m.ir_version > 9:  # onnxruntime's Python wheel rejects newer IR versions
        m.ir_version = 9
        onnx.save_model(m, path)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    outs = sess.run(None, inputs)
    write_test_data_set(os.path.join(d, "test_data_set_0"), inputs,
                        [(o.name, v) for o, v in zip(sess.get_outputs(), outs)])
    info = {
        "base": base,
        "kind": kind,
        "inputs": [{"name": n, "shape": list(v.shape), "dtype": str(v.dtype)} for n, v in inputs.items()],
        "outputs": [{"name": o.name, "shape": list(v.shape), "dtype": str(v.dtype),
                     "std": float(np.asarray(v, np.float64).std())} for o, v in zip(sess.get_outputs(), outs)],
        "op_types": sorted({n.op_type for n in m.graph.node}),
        "nodes": len(m.graph.node),
    }
    with open(os.path.join(d, "info.json"), "w") as f:
        json.dump(info, f, indent=1)
    print(f"{name}: {os.path.getsize(path) / 1e6:.2f} MB, {info['nodes']} nodes, ops {info['op_types']}")


def main(argv) -> int:
    force = "--force" in argv
    names = [a for a in argv if not a.startswith("--")] or list(VARIANTS)
    bad = [n for n in names if n not in VARIANTS]
    if bad:
        print(f"unknown model(s): {bad}; known: {list(VARIANTS)}", file=sys.stderr)
        return 2
    for n in names:
        generate(n, force)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
