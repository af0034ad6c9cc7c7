#!/usr/bin/env python3
"""Write ONNX's backend node test cases (and the wheel's bundled pytorch/simple
model cases) into .cache/ in the standard layout:

  .cache/onnx-node/<case>/model.onnx
  .cache/onnx-node/<case>/test_data_set_N/{input,output}_K.pb

Tensor inputs/outputs are serialized TensorProtos; sequence / map / optional
values are written as SequenceProto / MapProto / OptionalProto exactly as
onnx/backend/test/cmd_tools.py (`generate-data`) does. Idempotent via a stamp
file holding the onnx version.
"""
from __future__ import annotations

import os
import shutil
import sys
import time
import warnings

import onnx
from onnx import TensorProto, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, ".cache")
ONNX_DATA = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
COPIED = {"pytorch-converted": "onnx-pytorch-converted",
          "pytorch-operator": "onnx-pytorch-operator",
          "simple": "onnx-simple"}


def stamp_ok(d: str) -> bool:
    p = os.path.join(d, ".stamp")
    return os.path.exists(p) and open(p).read().strip() == onnx.__version__


def write_stamp(d: str) -> None:
    with open(os.path.join(d, ".stamp"), "w") as f:
        f.write(onnx.__version__ + "\n")


def serialize_value(value, vinfo: onnx.ValueInfoProto) -> bytes:
    """Mirror of onnx.backend.test.cmd_tools.generate_data's per-value logic."""
    t = vinfo.type
    if t.HasField("map_type"):
        return numpy_helper.from_dict(value, vinfo.name).SerializeToString()
    if t.HasField("sequence_type"):
        return numpy_helper.from_list(value, vinfo.name).SerializeToString()
    if t.HasField("optional_type"):
        return numpy_helper.from_optional(value, vinfo.name).SerializeToString()
    if isinstance(value, TensorProto):
        return value.SerializeToString()
    return numpy_helper.from_array(value, vinfo.name).SerializeToString()


def gen_node_cases() -> None:
    out = os.path.join(CACHE, "onnx-node")
    if stamp_ok(out):
        print(f"onnx-node: up to date (onnx {onnx.__version__})")
        return
    t0 = time.time()
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    warnings.simplefilter("ignore", RuntimeWarning)  # expected inf/nan in case data
    from onnx.backend.test.case import node as node_cases
    cases = node_cases.collect_testcases(None)
    written, skipped, seen = 0, [], set()
    for case in cases:
        if case.name in seen:
            skipped.append((case.name, "duplicate name"))
            continue
        seen.add(case.name)
        try:
            files = {"model.onnx": case.model.SerializeToString()}
            g = case.model.graph
            for i, (inputs, outputs) in enumerate(case.data_sets):
                ds = f"test_data_set_{i}"
                for j, v in enumerate(inputs):
                    files[f"{ds}/input_{j}.pb"] = serialize_value(v, g.input[j])
                for j, v in enumerate(outputs):
                    files[f"{ds}/output_{j}.pb"] = serialize_value(v, g.output[j])
        except Exception as e:  # noqa: BLE001
            skipped.append((case.name, f"{type(e).__name__}: {e}"))
            continue
        cdir = os.path.join(out, case.name)
        for rel, data in files.items():
            p = os.path.join(cdir, rel)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "wb") as f:
                f.write(data)
        written += 1
    for name, why in skipped:
        print(f"  skipped {name}: {why}")
    write_stamp(out)
    print(f"onnx-node: {written} cases written, {len(skipped)} skipped "
          f"({len(cases)} collected) in {time.time() - t0:.1f}s")


def copy_bundled() -> None:
    for src, dst in COPIED.items():
        d = os.path.join(CACHE, dst)
        if stamp_ok(d):
            print(f"{dst}: up to date")
            continue
        if os.path.exists(d):
            shutil.rmtree(d)
        shutil.copytree(os.path.join(ONNX_DATA, src), d)
        write_stamp(d)
        n = sum(1 for e in os.scandir(d) if e.is_dir())
        print(f"{dst}: {n} cases copied")


def main() -> int:
    os.makedirs(CACHE, exist_ok=True)
    gen_node_cases()
    copy_bundled()
    return 0


if __name__ == "__main__":
    sys.exit(main())
