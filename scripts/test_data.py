"""Writing an ONNX backend test data set (test_data_set_0/{input,output}_K.pb), shared by the fixture generators."""
from __future__ import annotations

import os

from onnx import numpy_helper


def write_test_data_set(ds: str, inputs: dict, outputs: list) -> None:
    """`inputs`: name -> array; `outputs`: (name, array) pairs in the model's output order."""
    os.makedirs(ds, exist_ok=True)
    for k, (n, v) in enumerate(inputs.items()):
        with open(os.path.join(ds, f"input_{k}.pb"), "wb") as f:
            f.write(numpy_helper.from_array(v, n).SerializeToString())
    for k, (n, v) in enumerate(outputs):
        with open(os.path.join(ds, f"output_{k}.pb"), "wb") as f:
            f.write(numpy_helper.from_array(v, n).SerializeToString())
