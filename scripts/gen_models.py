#!/usr/bin/env python3
"""Export small random-weight test models to .cache/models/<name>/:

  model.onnx                     (opset 17, weights inline; static shapes but for the models in DYNAMIC_AXES)
  test_data_set_0/input_K.pb     (TensorProto, fixed seed)
  test_data_set_0/output_0.pb    (reference computed with onnxruntime CPU)
  info.json                      (inputs, outputs, output std, op types)

Usage: gen_models.py [name ...]   (default: all). Models whose info.json
exists are skipped (info.json is written last). --force regenerates.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
import warnings

import numpy as np
import onnx
import onnxruntime as ort
from test_data import write_test_data_set

warnings.filterwarnings("ignore")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.init as init  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, ".cache", "models")
OPSET = 17


def calibrate_bn(model: nn.Module, shape, batches: int = 4) -> None:
    """Random BN affine params + running stats from random batches (see
    shared/notes/machine-facts.md), so random-weight outputs are not ~0."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    model.eval()
    with torch.no_grad():
        for bn in bns:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0.0, 0.1)
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average
            bn.train()
        for _ in range(batches):
            model(torch.randn(8, *shape[1:]))
    model.eval()


def torchvision_model(name: str, size: int = 224):
    torch.library.register_fake = lambda *a, **k: (lambda f: f)  # torchvision 0.28 + torch 2.13
    import torchvision

    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    shape = (1, 3, size, size)
    calibrate_bn(model, shape)
    x = np.random.RandomState(0).standard_normal(shape).astype(np.float32)
    return model, {"input": x}, ["output"]


class SuperResolutionNet(nn.Module):
    """From the PyTorch 'export a model to ONNX' super-resolution tutorial."""

    def __init__(self, upscale_factor: int, inplace: bool = False):
        super().__init__()
        self.relu = nn.ReLU(inplace=inplace)
        self.conv1 = nn.Conv2d(1, 64, (5, 5), (1, 1), (2, 2))
        self.conv2 = nn.Conv2d(64, 64, (3, 3), (1, 1), (1, 1))
        self.conv3 = nn.Conv2d(64, 32, (3, 3), (1, 1), (1, 1))
        self.conv4 = nn.Conv2d(32, upscale_factor ** 2, (3, 3), (1, 1), (1, 1))
        self.pixel_shuffle = nn.PixelShuffle(upscale_factor)
        init.orthogonal_(self.conv1.weight, init.calculate_gain("relu"))
        init.orthogonal_(self.conv2.weight, init.calculate_gain("relu"))
        init.orthogonal_(self.conv3.weight, init.calculate_gain("relu"))
        init.orthogonal_(self.conv4.weight)

    def forward(self, x):
        x = self.relu(self.conv1(x))
        x = self.relu(self.conv2(x))
        x = self.relu(self.conv3(x))
        return self.pixel_shuffle(self.conv4(x))


def super_resolution(size: int = 224):
    torch.manual_seed(0)
    model = SuperResolutionNet(upscale_factor=3).eval()
    x = np.random.RandomState(0).rand(1, 1, size, size).astype(np.float32)
    return model, {"input": x}, ["output"]


class BertLastHidden(nn.Module):
    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask):
        return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                         return_dict=True).last_hidden_state


def bert(seq: int = 128, valid: int = 100, positions: int = 128):
    torch.library.register_fake = lambda *a, **k: (lambda f: f)  # transformers imports torchvision (see above)
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                     intermediate_size=1024, vocab_size=1000, max_position_embeddings=positions)
    cfg._attn_implementation = "eager"  # plain MatMul/Softmax graph
    model = BertLastHidden(BertModel(cfg, add_pooling_layer=False)).eval()
    # realistic mask: `valid` tokens then padding
    rng = np.random.RandomState(0)
    ids = rng.randint(1, cfg.vocab_size, size=(1, seq)).astype(np.int64)
    ids[0, valid:] = 0  # [PAD]
    mask = np.zeros((1, seq), np.int64)
    mask[0, :valid] = 1
    return model, {"input_ids": ids, "attention_mask": mask}, ["last_hidden_state"]


class Gpt2Logits(nn.Module):
    def __init__(self, gpt2):
        super().__init__()
        self.gpt2 = gpt2

    def forward(self, input_ids):
        # the mask from the ids' shape: more Shape arithmetic, as exported decoders have
        return self.gpt2(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                         use_cache=False, return_dict=True).logits


def gpt2(layers: int = 12, seq: int = 16):
    """A GPT-2 decoder, exported with dynamic batch and sequence axes (DYNAMIC_AXES): the TorchScript exporter writes
    each layer's reshapes as Shape -> Gather -> Unsqueeze -> Concat chains (a quarter of its nodes are such
    arithmetic)."""
    torch.library.register_fake = lambda *a, **k: (lambda f: f)  # transformers imports torchvision (see above)
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=layers, n_embd=128, n_head=4, vocab_size=1000, n_positions=256,
                     bos_token_id=0, eos_token_id=0)
    cfg._attn_implementation = "eager"  # plain MatMul/Softmax graph
    model = Gpt2Logits(GPT2LMHeadModel(cfg)).eval()
    ids = np.random.RandomState(0).randint(0, cfg.vocab_size, size=(1, seq)).astype(np.int64)
    return model, {"input_ids": ids}, ["logits"]


class Gpt2WithPast(nn.Module):
    """GPT-2 with its key/value cache as inputs and outputs (legacy per-layer tensors), for one-token decoding."""

    def __init__(self, gpt2, layers: int):
        super().__init__()
        self.gpt2 = gpt2
        self.layers = layers

    def forward(self, input_ids, attention_mask, *past):
        from transformers.cache_utils import DynamicCache

        cache = DynamicCache()
        for i in range(self.layers):
            cache.update(past[2 * i], past[2 * i + 1], i)
        logits = self.gpt2(input_ids=input_ids, attention_mask=attention_mask, past_key_values=cache,
                           use_cache=True, return_dict=True).logits
        return (logits, *(t for layer in cache.layers for t in (layer.keys, layer.values)))


def gpt2_past(layers: int = 2, past: int = 3, seq: int = 2):
    """A 2-layer GPT-2 decoder with past key/values, exported with dynamic batch, sequence, past and total
    (= past + sequence, the attention mask's length) axes. The tracing exporter bakes some of the mask arithmetic at
    the traced sizes, so at other sizes it computes what ONNX Runtime computes, not what PyTorch does: the tests
    compare with ONNX Runtime on this model."""
    torch.library.register_fake = lambda *a, **k: (lambda f: f)  # transformers imports torchvision (see above)
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=layers, n_embd=128, n_head=4, vocab_size=1000, n_positions=256,
                     bos_token_id=0, eos_token_id=0)
    cfg._attn_implementation = "eager"
    model = Gpt2WithPast(GPT2LMHeadModel(cfg), layers).eval()
    rs = np.random.RandomState(0)
    inputs = {
        "input_ids": rs.randint(0, cfg.vocab_size, size=(1, seq)).astype(np.int64),
        "attention_mask": np.ones((1, past + seq), np.int64),
    }
    for i in range(layers):
        for kind in ("key", "value"):
            inputs[f"past_{kind}_{i}"] = rs.standard_normal((1, 4, past, 32)).astype(np.float32)
    outputs = ["logits", *(f"present_{kind}_{i}" for i in range(layers) for kind in ("key", "value"))]
    return model, inputs, outputs


class EmbeddingProjection(nn.Module):
    """A token embedding table bigger than WebGPU's default 128 MiB storage binding, then a projection."""

    def __init__(self, vocab: int, dim: int, out: int):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.proj = nn.Linear(dim, out)

    def forward(self, ids):
        return self.proj(self.emb(ids))


def big_embedding(vocab: int = 36000, dim: int = 1024, seq: int = 16):
    # 36000 x 1024 float32 = 140.6 MiB: over maxStorageBufferBindingSize's default (128 MiB), under maxBufferSize's
    torch.manual_seed(0)
    model = EmbeddingProjection(vocab, dim, 64).eval()
    ids = np.random.RandomState(0).randint(0, vocab, size=(1, seq)).astype(np.int64)
    ids[0, :5] = [0, vocab - 1, vocab // 2, 32767, 32768]  # both ends of the table, each side of the window boundary
    return model, {"input_ids": ids}, ["output"]


class LstmClassifier(nn.Module):
    """A text classifier: token embeddings, a 2-layer batch_first LSTM, a linear head on the last step."""

    def __init__(self, vocab: int = 1000, dim: int = 64, hidden: int = 128, classes: int = 10):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.lstm = nn.LSTM(dim, hidden, num_layers=2, batch_first=True)
        self.head = nn.Linear(hidden, classes)
        init.normal_(self.head.weight, std=0.5)  # logits of std O(1) (the default init gives ~0.04)

    def forward(self, ids):
        out, _ = self.lstm(self.emb(ids))
        return self.head(out[:, -1])


def lstm_classifier(seq: int = 32):
    torch.manual_seed(0)
    model = LstmClassifier().eval()
    ids = np.random.RandomState(0).randint(1, 1000, size=(1, seq)).astype(np.int64)
    return model, {"input_ids": ids}, ["logits"]


MODELS = {
    "resnet18": lambda: torchvision_model("resnet18"),
    "mobilenet_v2": lambda: torchvision_model("mobilenet_v2"),
    "squeezenet1_1": lambda: torchvision_model("squeezenet1_1"),
    "super_resolution": super_resolution,
    "bert": bert,
    "gpt2": gpt2,
    # the same architectures on small inputs, for slow executors (the PTX simulator in test/ptx.test.ts)
    "resnet18_small": lambda: torchvision_model("resnet18", 32),
    "mobilenet_v2_small": lambda: torchvision_model("mobilenet_v2", 32),
    "squeezenet1_1_small": lambda: torchvision_model("squeezenet1_1", 64),
    "super_resolution_small": lambda: super_resolution(24),
    "bert_small": lambda: bert(16, 12),
    # bert_small exported with dynamic batch and sequence axes (its Reshapes read sizes from Shape chains), with 512
    # positions: sequences up to 384 (the dynamic-shapes tests and bench:run-sizes)
    "bert_dynamic": lambda: bert(16, 12, positions=512),
    # resnet18_small exported with a dynamic batch axis
    "resnet18_dynamic": lambda: torchvision_model("resnet18", 32),
    # mobilenet_v2 exported with a dynamic batch axis (the model server's batching in npm run bench:serve)
    "mobilenet_v2_dynamic": lambda: torchvision_model("mobilenet_v2"),
    "gpt2_past": gpt2_past,
    # DenseNet-121's dense blocks concatenate up to 33 inputs (WebGPU binding limits); 64x64 keeps SwiftShader quick
    "densenet121": lambda: torchvision_model("densenet121", 64),
    # one weight over WebGPU's default 128 MiB binding size (about 150 MB on disk)
    "big_embedding": big_embedding,
    # exported to ONNX LSTM nodes (issue 17's text classifier; npm run bench)
    "lstm_classifier": lstm_classifier,
}
DYNAMIC_AXES = {
    "bert_dynamic": {n: {0: "batch", 1: "sequence"} for n in ("input_ids", "attention_mask", "last_hidden_state")},
    "gpt2": {n: {0: "batch", 1: "sequence"} for n in ("input_ids", "logits")},
    "resnet18_dynamic": {n: {0: "batch"} for n in ("input", "output")},
    "mobilenet_v2_dynamic": {n: {0: "batch"} for n in ("input", "output")},
    "gpt2_past": {
        "input_ids": {0: "batch", 1: "sequence"},
        "attention_mask": {0: "batch", 1: "total"},
        "logits": {0: "batch", 1: "sequence"},
        **{f"past_{k}_{i}": {0: "batch", 2: "past"} for i in range(2) for k in ("key", "value")},
        **{f"present_{k}_{i}": {0: "batch", 2: "total"} for i in range(2) for k in ("key", "value")},
    },
}


def export(model, inputs: dict, output_names, path: str, dynamic_axes=None) -> None:
    args = tuple(torch.from_numpy(v) for v in inputs.values())
    with torch.no_grad():
        try:
            torch.onnx.export(model, args, path, dynamo=False, opset_version=OPSET,
                              do_constant_folding=True, input_names=list(inputs),
                              output_names=output_names, dynamic_axes=dynamic_axes)
        except Exception as e:  # noqa: BLE001
            print(f"  dynamo=False export failed ({type(e).__name__}: {e}); trying dynamo=True")
            prog = torch.onnx.export(model, args, dynamo=True, opset_version=OPSET,
                                     input_names=list(inputs), output_names=output_names,
                                     optimize=True, external_data=False)
            prog.save(path, external_data=False)
    m = onnx.load(path)
    onnx.checker.check_model(m)
    # make sure everything is inline (no external data)
    onnx.save_model(m, path, save_as_external_data=False)


# Bumped when a model's recipe changes: a cached copy of another version is generated again.
RECIPE_VERSIONS = {"bert_dynamic": 2}


def generate(name: str, force: bool) -> None:
    d = os.path.join(OUT, name)
    info_path = os.path.join(d, "info.json")
    version = RECIPE_VERSIONS.get(name, 1)
    if not force and os.path.exists(info_path):
        with open(info_path) as f:
            cached = json.load(f).get("recipe", 1)
        if cached == version:
            print(f"{name}: present, skipped")
            return
    t0 = time.time()
    if os.path.exists(d):
        shutil.rmtree(d)
    os.makedirs(os.path.join(d, "test_data_set_0"))
    model, inputs, output_names = MODELS[name]()
    path = os.path.join(d, "model.onnx")
    export(model, inputs, output_names, path, DYNAMIC_AXES.get(name))

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    outs = sess.run(None, inputs)
    with torch.no_grad():
        ref = model(*(torch.from_numpy(v) for v in inputs.values()))
    ref = ref[0] if isinstance(ref, tuple) else ref
    torch_diff = float(np.abs(ref.numpy() - outs[0]).max())

    write_test_data_set(os.path.join(d, "test_data_set_0"), inputs,
                        [(o.name, v) for o, v in zip(sess.get_outputs(), outs)])

    m = onnx.load(path)
    info = {
        "opset": OPSET,
        "inputs": [{"name": n, "shape": list(v.shape), "dtype": str(v.dtype)}
                   for n, v in inputs.items()],
        "outputs": [{"name": o.name, "shape": list(v.shape), "dtype": str(v.dtype),
                     "std": float(v.std()), "mean": float(v.mean())}
                    for o, v in zip(sess.get_outputs(), outs)],
        "op_types": sorted({n.op_type for n in m.graph.node}),
        "nodes": len(m.graph.node),
        "torch_vs_ort_max_abs_diff": torch_diff,
        "recipe": version,
    }
    with open(os.path.join(d, "info.json"), "w") as f:
        json.dump(info, f, indent=1)
    std = info["outputs"][0]["std"]
    flag = "" if 0.05 <= std <= 10 else "  WARNING: output std out of O(0.1-1)"
    print(f"{name}: {os.path.getsize(path) / 1e6:.1f} MB, {info['nodes']} nodes, "
          f"output {info['outputs'][0]['shape']} std={std:.4g}, "
          f"|torch-ort|max={torch_diff:.2g}, {time.time() - t0:.1f}s{flag}")


def main(argv) -> int:
    force = "--force" in argv
    names = [a for a in argv if not a.startswith("--")] or list(MODELS)
    bad = [n for n in names if n not in MODELS]
    if bad:
        print(f"unknown model(s): {bad}; known: {list(MODELS)}", file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    for n in names:
        generate(n, force)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
