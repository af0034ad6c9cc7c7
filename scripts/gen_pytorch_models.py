#!/usr/bin/env python3
"""Export small random-weight PyTorch models with torch.export, and as TorchScript, into .cache/pytorch/<name>/:

  model.pt2          torch.export.save of the ExportedProgram (as exported, or after run_decompositions())
  model.pt           (ts_* models) torch.jit.save of torch.jit.trace or torch.jit.script of the module
  input_K.npy        the inputs (fixed seed)
  output_K.npy       PyTorch's own outputs on them (eager module, eval mode)
  info.json          input names and shapes, output count, the ATen ops of the graph (written last)

Usage: gen_pytorch_models.py [name ...]   (default: all). Models whose info.json exists are skipped;
--force regenerates. Inputs are small (1x3x64x64) so the fixtures and the tests stay quick.
"""
from __future__ import annotations

import collections
import json
import os
import shutil
import sys
import warnings

import numpy as np

warnings.filterwarnings("ignore")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, ".cache", "pytorch")
SIZE = 64


def calibrate_bn(model: nn.Module, shape, batches: int = 4) -> None:
    """Random BN affine params + running stats from random batches (as scripts/gen_models.py does), so
    random-weight outputs are not ~0."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    model.eval()
    if not bns:
        return
    with torch.no_grad():
        for bn in bns:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0.0, 0.1)
            bn.reset_running_stats()
            bn.momentum = None
            bn.train()
        for _ in range(batches):
            model(torch.randn(8, *shape[1:]))
    model.eval()


def torchvision_model(name: str, size: int = SIZE):
    torch.library.register_fake = lambda *a, **k: (lambda f: f)  # torchvision 0.28 + torch 2.13
    import torchvision

    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    shape = (1, 3, size, size)
    calibrate_bn(model, shape)
    x = np.random.RandomState(0).standard_normal(shape).astype(np.float32)
    return model, (x,)


class Small(nn.Module):
    """Conv, relu6, cat, max-pool, flatten, linear; weights that share one storage (views with offsets), a
    non-contiguous buffer, a lifted constant tensor, two outputs."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(3, 4, 1, bias=False)
        self.fc = nn.Linear(12 * 8 * 8, 10)
        base = torch.randn(12)
        self.register_buffer("shift", base[4:8].view(4, 1, 1))  # offset 4 into a 12-element storage
        self.register_buffer("gain", base[8:12])  # the same storage as `shift`, offset 8
        self.register_buffer("tw", torch.randn(5, 2).t())  # [2, 5] with strides [1, 2]
        self.scale = torch.linspace(0.5, 1.5, 10)  # a plain tensor attribute: a lifted constant

    def forward(self, x):
        a = F.relu6(self.conv1(x))
        b = torch.relu(self.conv2(x) + self.shift)
        c = torch.cat([a, b], dim=1)
        c = F.max_pool2d(c, 2)
        y = self.fc(torch.flatten(c, 1)) * self.scale
        y = y.view(2, 5) + self.tw
        return y, a.mean(dim=(2, 3)) * (self.gain.sum() + 3.0)


def small():
    torch.manual_seed(0)
    model = Small().eval()
    x = np.random.RandomState(1).standard_normal((1, 3, 16, 16)).astype(np.float32)
    return model, (x,)


class TinyGPT(nn.Module):
    """Token and position embeddings, pre-norm causal self-attention (scaled_dot_product_attention) and a GELU MLP,
    a padding mask applied with masked_fill, a selected first token and a sliced rest: the ATen ops of a small
    transformer."""

    def __init__(self, vocab: int = 50, d: int = 32, heads: int = 4, seq: int = 8):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(seq, d)
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.heads = heads

    def forward(self, ids, mask):
        b, t = ids.shape
        x = self.tok(ids) + self.pos(torch.arange(t))
        q, k, v = self.qkv(self.ln1(x)).split(x.shape[-1], dim=-1)
        q, k, v = (z.view(b, t, self.heads, -1).transpose(1, 2) for z in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, -1))
        x = x + self.out(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))
        x = x.masked_fill(mask.unsqueeze(-1) == 0, 0.0)
        first, rest = x[:, 0], x[:, 1:].mean(1)
        return torch.where(first > 0, first, rest), x


def tiny_gpt():
    torch.manual_seed(0)
    model = TinyGPT().eval()
    rs = np.random.RandomState(3)
    ids = rs.randint(0, 50, size=(2, 8)).astype(np.int64)
    mask = np.ones((2, 8), np.int64)
    mask[1, 5:] = 0
    return model, (ids, mask)


class AtenMix(nn.Module):
    """The ATen ops tiny_gpt does not reach: chunk, unbind, index_select, ne and the logical ops, where with a
    Python number on either side, zeros/ones/new_ones, any/all, attention with a bool and a float mask, a strided
    slice and a negative select."""

    def __init__(self):
        super().__init__()
        self.register_buffer("idx", torch.tensor([2, 0, 1]))
        self.register_buffer("mask", torch.rand(6, 6) > 0.3)

    def forward(self, x):
        a, b = x.chunk(2, dim=-1)
        u = x.unbind(1)
        keep = (a > 0).logical_or(b < -0.5).logical_xor(a.ne(b)).logical_and(a.abs() < 1.5)
        w = torch.where(keep, a, 0.5) + torch.where(keep, -1.0, b)
        z = torch.zeros(2, 4, 6, 4) + torch.ones_like(a) + a.new_ones(4)
        q = x[..., ::2]
        by_bool = F.scaled_dot_product_attention(q, q, x, attn_mask=self.mask)
        by_float = F.scaled_dot_product_attention(q, q, x, attn_mask=self.mask.logical_not().float() * -1e4, scale=0.3)
        flags = keep.all(-1).float() + keep.any(-1).float()
        return w + z, u[-1] + u[0], x.index_select(2, self.idx), by_bool + by_float, flags, x.select(1, -1)


def aten_mix():
    torch.manual_seed(0)
    x = np.random.RandomState(4).standard_normal((2, 4, 6, 8)).astype(np.float32)
    return AtenMix().eval(), (x,)


class AtenMix2(nn.Module):
    """More ATen families: unary math, remainder/fmod/floor_divide on floats and integers, prod/logsumexp/var/std,
    argmax/max.dim/min, cumsum, stack/flip/pad/repeat/tril/triu, pixel_shuffle, group_norm, nearest and bilinear
    upsampling, baddbmm."""

    def __init__(self):
        super().__init__()
        self.gn = nn.GroupNorm(4, 8)

    def forward(self, x, n):
        v = x[0, 0]  # [6, 6]
        unary = torch.sign(v) + F.elu(v, 0.7) + F.selu(v) + F.softplus(v) + torch.log1p(v.abs()) + torch.expm1(v * 0.1)
        div = torch.remainder(v, 0.7) + torch.fmod(v, 0.7) + torch.floor_divide(v, 0.3)
        ints = torch.remainder(n, 3) + torch.floor_divide(n, -4) + torch.fmod(n, 3) + (~(n > 0)).long()
        stats = v.prod(1) * 1e-3 + v.logsumexp(0) + v.var(1) + v.std(0, correction=0)
        values, indices = v.max(1)
        picks = v.argmax() + v.argmax(0, keepdim=True) + indices + v.min().long()
        shaped = torch.stack([v, v.flip(1), v.tril(-1) + v.triu(2)], 1).cumsum(2)
        padded = F.pad(x, (1, 2, 0, 1)) + 0 * F.pad(x, (2, 2, 2, 2), mode="reflect")[..., 1:8, :9]
        rep = F.pad(x, (1, 2, 0, 1), mode="replicate").repeat(1, 1, 2, 1)
        up = F.interpolate(x, scale_factor=2, mode="nearest") + F.pixel_shuffle(torch.cat([x, -x, x * 2, x], 1), 2)
        lin = F.interpolate(x, size=(9, 7), mode="bilinear") + F.interpolate(x, size=(9, 7), mode="bilinear", align_corners=True)
        bmm = torch.baddbmm(x[0], x[1], x[0].transpose(1, 2), beta=0.5, alpha=2.0)
        return unary, div, ints, stats, values, picks, shaped, padded, rep, up, lin, self.gn(x), bmm


def aten_mix2():
    torch.manual_seed(0)
    rs = np.random.RandomState(5)
    x = rs.standard_normal((2, 8, 6, 6)).astype(np.float32)
    n = rs.randint(-20, 20, size=(2, 5)).astype(np.int64)
    return AtenMix2().eval(), (x, n)


class DynamicAttention(nn.Module):
    """Self-attention whose batch and sequence sizes are symbolic: view/reshape take sizes computed from the
    input's shape (aten.sym_size, operator.mul), and a second input shares both dims."""

    def __init__(self):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(16, 16)
        self.proj = nn.Linear(16, 16)

    def forward(self, x, bias):
        b, t, _ = x.shape
        q, k, v = (m(x).view(b, t, 2, 8).transpose(1, 2) for m in (self.q, self.k, self.v))
        a = torch.softmax(q @ k.transpose(2, 3) * 8**-0.5, dim=-1) @ v
        y = self.proj(a.transpose(1, 2).reshape(b * t, 16)).view(b, t, 16)
        return y + bias.unsqueeze(-1)


def dynamic_attention():
    """Exported at batch 2, sequence 5 with both dims dynamic; the saved inputs and outputs are at 3 x 7."""
    torch.manual_seed(0)
    model = DynamicAttention().eval()
    rs = np.random.RandomState(2)
    example = (rs.standard_normal((2, 5, 16)).astype(np.float32), rs.standard_normal((2, 5)).astype(np.float32))
    run = (rs.standard_normal((3, 7, 16)).astype(np.float32), rs.standard_normal((3, 7)).astype(np.float32))
    batch, seq = torch.export.Dim("batch", min=1, max=16), torch.export.Dim("seq", min=2, max=64)
    dynamic = {"x": {0: batch, 1: seq}, "bias": {0: batch, 1: seq}}
    return model, example, {"dynamic_shapes": dynamic, "run_inputs": run}


class DynamicBlock(nn.Module):
    """A pre-norm transformer block over token ids whose batch and sequence are dynamic: position ids from
    arange(seq), a causal scaled_dot_product_attention, a GELU MLP, the last token (a negative select) and the mean
    of the others (a slice to the end)."""

    def __init__(self, vocab: int = 40, d: int = 16, heads: int = 2, max_seq: int = 32):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(max_seq, d)
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.heads = heads

    def forward(self, ids):
        b, t = ids.shape
        x = self.tok(ids) + self.pos(torch.arange(t))
        q, k, v = self.qkv(self.ln1(x)).chunk(3, dim=-1)
        q, k, v = (z.view(b, t, self.heads, -1).transpose(1, 2) for z in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, -1))
        x = x + self.out(F.gelu(self.fc(self.ln2(x))))
        return x, x[:, -1], x[:, 1:].mean(1)


def dynamic_block():
    """Exported at batch 2, sequence 5 with batch in 1..8 and sequence in 3..32 (the mean over the tokens after the
    first needs two of them); run at three other sizes."""
    torch.manual_seed(0)
    rs = np.random.RandomState(10)
    ids = lambda b, t: rs.randint(0, 40, size=(b, t)).astype(np.int64)  # noqa: E731
    batch, seq = torch.export.Dim("batch", min=1, max=8), torch.export.Dim("seq", min=3, max=32)
    return DynamicBlock().eval(), (ids(2, 5),), {
        "dynamic_shapes": {"ids": {0: batch, 1: seq}},
        "run_sets": [(ids(1, 3),), (ids(3, 7),), (ids(2, 32),)],
    }


class CondModel(nn.Module):
    """torch.cond on a tensor's values (a higher-order op whose branches are subgraphs): Kiln refuses it by name."""

    def forward(self, x):
        return torch.cond(x.sum() > 0, lambda x: x * 2.0, lambda x: x - 1.0, (x,))


class WhileModel(nn.Module):
    """torch.while_loop doubling x three times: Kiln refuses it by name."""

    def forward(self, x):
        from torch._higher_order_ops.while_loop import while_loop

        _, y = while_loop(lambda i, y: i < 3, lambda i, y: (i + 1, y * 2.0), (torch.zeros((), dtype=torch.int64), x))
        return y


def control_flow(model):
    return model.eval(), (np.random.RandomState(13).standard_normal((2, 3)).astype(np.float32),)


def dynamic_cnn():
    """SmallCNN (below) exported at batch 2 with batch in 1..16; run at batch 1, 3 and 5."""
    model, (x,) = small_cnn()
    rs = np.random.RandomState(11)
    sets = [(rs.standard_normal((b, 3, 16, 16)).astype(np.float32),) for b in (1, 3, 5)]
    return model, (x,), {"dynamic_shapes": {"x": {0: torch.export.Dim("batch", min=1, max=16)}}, "run_sets": sets}


MODELS = {
    "resnet18": lambda: torchvision_model("resnet18"),
    "mobilenet_v2": lambda: torchvision_model("mobilenet_v2"),
    "efficientnet_b0": lambda: torchvision_model("efficientnet_b0"),
    "small": small,
    "dynamic_attention": dynamic_attention,
    "tiny_gpt": tiny_gpt,
    "aten_mix": aten_mix,
    "aten_mix2": aten_mix2,
    "dynamic_cnn": dynamic_cnn,
    "dynamic_block": dynamic_block,
    "cond": lambda: control_flow(CondModel()),
    "while_loop": lambda: control_flow(WhileModel()),
    "half_cnn": lambda: half_cnn(),
    "bfloat16_head": lambda: bfloat16_head(),
}


def generate(name: str, decompose: bool, force: bool) -> None:
    tag = f"{name}_decomposed" if decompose else name
    d = os.path.join(OUT, tag)
    if os.path.exists(os.path.join(d, "info.json")) and not force:
        return
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    model, example, *extra = MODELS[name]()
    dynamic = extra[0] if extra else {}
    # models with dynamic shapes are exported at an example size and run at another
    inputs = dynamic.get("run_inputs", example)
    with torch.no_grad():
        ep = torch.export.export(
            model, tuple(torch.from_numpy(x) for x in example), dynamic_shapes=dynamic.get("dynamic_shapes"))
        if decompose:
            ep = ep.run_decompositions()
        torch.export.save(ep, os.path.join(d, "model.pt2"))
        outs = model(*(torch.from_numpy(x) for x in inputs))
    outs = outs if isinstance(outs, tuple) else (outs,)
    for i, x in enumerate(inputs):
        np.save(os.path.join(d, f"input_{i}.npy"), x)
    for i, o in enumerate(outs):
        np.save(os.path.join(d, f"output_{i}.npy"), o.detach().numpy())
    # models with dynamic shapes may be run at several sizes: set_K/ holds the inputs and outputs of each
    for k, run in enumerate(dynamic.get("run_sets", [])):
        os.makedirs(os.path.join(d, f"set_{k}"))
        with torch.no_grad():
            res = model(*(torch.from_numpy(x) for x in run))
        res = res if isinstance(res, tuple) else (res,)
        for i, x in enumerate(run):
            np.save(os.path.join(d, f"set_{k}", f"input_{i}.npy"), x)
        for i, o in enumerate(res):
            np.save(os.path.join(d, f"set_{k}", f"output_{i}.npy"), o.detach().numpy())
    ops = collections.Counter(str(n.target) for n in ep.graph.nodes if n.op == "call_function")
    info = {
        "inputs": [[s.arg.name, list(x.shape)] for s, x in zip(
            [s for s in ep.graph_signature.input_specs if s.kind.name == "USER_INPUT"], inputs)],
        "outputs": len(outs),
        "symbols": {str(k): [int(v.lower), int(v.upper) if v.upper.is_finite else None]
                    for k, v in ep.range_constraints.items()},
        "sets": [[list(x.shape) for x in run] for run in dynamic.get("run_sets", [])],
        "decomposed": decompose,
        "torch": torch.__version__,
        "ops": dict(sorted(ops.items())),
    }
    with open(os.path.join(d, "info.json.part"), "w") as f:
        json.dump(info, f, indent=1)
    os.replace(os.path.join(d, "info.json.part"), os.path.join(d, "info.json"))
    print(f"gen_pytorch_models: {tag}: {sum(ops.values())} nodes, {len(ops)} ops", file=sys.stderr)


class SmallCNN(nn.Module):
    """Conv, batch norm, relu, max and average pooling, linear: the layers of a small image classifier."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def small_cnn():
    torch.manual_seed(0)
    model = SmallCNN()
    calibrate_bn(model, (1, 3, 16, 16))
    x = np.random.RandomState(6).standard_normal((2, 3, 16, 16)).astype(np.float32)
    return model, (x,)


class Block(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.fc = nn.Linear(d, d)

    def forward(self, x):
        return x + self.scaled(torch.tanh(self.fc(x)))

    @torch.jit.export
    def scaled(self, x):
        return x * 0.5


class ScriptedStatic(nn.Module):
    """torch.jit.script control flow over static values: a for loop over range(attribute), a loop over a
    ModuleList, an if on a shape, a while loop with a counter, a list built with append and indexed, an exported
    method other than forward, F.relu (a scripted function call), a constant attribute, a default argument."""

    __constants__ = ["repeat"]

    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([Block(6) for _ in range(2)])
        self.proj = nn.Linear(6, 6)
        self.repeat = 2

    def forward(self, x, scale: float = 2.0):
        for _ in range(self.repeat):
            x = self.proj(x)
        for block in self.blocks:
            x = block(x)
        if x.shape[-1] == 6 and x.dim() == 2:
            x = F.relu(x) * scale
        else:
            x = x - 1.0
        outs = []
        k = 0
        while k < 3:
            outs.append(x * float(k))
            k += 1
        return outs[-1] + outs[1], torch.cat(outs, 0)


def scripted_static():
    torch.manual_seed(0)
    x = np.random.RandomState(7).standard_normal((3, 6)).astype(np.float32)
    return ScriptedStatic().eval(), (x,)


class ScriptedDataDependent(nn.Module):
    """A branch on a tensor's values: Kiln must refuse it (E_UNSUPPORTED_OP)."""

    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return x


def scripted_data_dependent():
    x = np.random.RandomState(8).standard_normal((2, 3)).astype(np.float32)
    return ScriptedDataDependent().eval(), (x,)


def half_cnn():
    """SmallCNN in float16 (model.half()): half storages, inputs and outputs; PyTorch computes in half too."""
    model, (x,) = small_cnn()
    return model.half(), (x.astype(np.float16),)


class BFloat16Head(nn.Module):
    """bfloat16 weights inside a float32 model: the input cast to bfloat16 (a dtype argument), a bfloat16 linear and
    layer norm, the result cast back to float32."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(12, 8).to(torch.bfloat16)
        self.ln = nn.LayerNorm(8).to(torch.bfloat16)
        self.out = nn.Linear(8, 4)

    def forward(self, x):
        h = self.ln(torch.relu(self.fc(x.to(torch.bfloat16))))
        return self.out(h.float())


def bfloat16_head():
    torch.manual_seed(0)
    x = np.random.RandomState(12).standard_normal((3, 12)).astype(np.float32)
    return BFloat16Head().eval(), (x,)


class QuantizedLinear(nn.Module):
    """torch.ao.quantization eager mode, converted: QuantStub -> quantized Linear (qint8 weight, per-tensor) ->
    DeQuantStub, plus a qint8 buffer read through dequantize(): quantized storages and the quantize / linear /
    dequantize path."""

    def __init__(self):
        super().__init__()
        from torch.ao.quantization import DeQuantStub, QuantStub

        self.q, self.fc, self.dq = QuantStub(), nn.Linear(6, 4), DeQuantStub()
        self.register_buffer("qbuf", torch.quantize_per_tensor(torch.randn(4), 0.05, 3, torch.qint8))

    def forward(self, x):
        return self.dq(self.fc(self.q(x))) + self.qbuf.dequantize()


def quantized_linear():
    from torch.ao.quantization import convert, get_default_qconfig, prepare

    torch.manual_seed(0)
    torch.backends.quantized.engine = "qnnpack"
    model = QuantizedLinear().eval()
    model.qconfig = get_default_qconfig("qnnpack")  # per-tensor weights, quint8 activations
    prepare(model, inplace=True)
    with torch.no_grad():
        model(torch.randn(16, 6))  # calibration
    convert(model, inplace=True)
    x = np.random.RandomState(14).standard_normal((3, 6)).astype(np.float32)
    return model, (x,)


def bert_encoder():
    """A small transformers BERT (2 layers, hidden 32): embeddings with buffered token types, attention with a padding
    mask, pooler; traced, it returns a dict."""
    torch.library.register_fake = lambda *a, **k: (lambda f: f)
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                     vocab_size=100, max_position_embeddings=16, attn_implementation="eager")
    rs = np.random.RandomState(9)
    ids = rs.randint(0, 100, size=(2, 8)).astype(np.int64)
    mask = np.ones((2, 8), np.int64)
    mask[1, 6:] = 0
    return BertModel(cfg).eval(), (ids, mask)


TORCHSCRIPT = {
    "ts_mobilenet_v2": (lambda: torchvision_model("mobilenet_v2", size=32), "trace"),
    "ts_bert": (bert_encoder, "trace"),
    "ts_small_cnn": (small_cnn, "trace"),
    "ts_tiny_gpt": (tiny_gpt, "trace"),
    "ts_resnet18": (lambda: torchvision_model("resnet18", size=32), "trace"),
    "ts_efficientnet_b0": (lambda: torchvision_model("efficientnet_b0"), "trace"),
    "ts_scripted": (scripted_static, "script"),
    "ts_data_dependent": (scripted_data_dependent, "script"),
    "ts_half_cnn": (half_cnn, "trace"),
    "ts_bfloat16_head": (bfloat16_head, "trace"),
    "ts_quantized_linear": (quantized_linear, "trace"),
}


def generate_torchscript(name: str, force: bool) -> None:
    d = os.path.join(OUT, name)
    if os.path.exists(os.path.join(d, "info.json")) and not force:
        return
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    make, mode = TORCHSCRIPT[name]
    model, inputs = make()
    args = tuple(torch.from_numpy(x) for x in inputs)
    with torch.no_grad():
        # strict=False lets a traced forward return a dict (transformers' model outputs)
        module = torch.jit.trace(model, args, strict=False) if mode == "trace" else torch.jit.script(model)
        torch.jit.save(module, os.path.join(d, "model.pt"))
        outs = model(*args)
    outs = outs.to_tuple() if hasattr(outs, "to_tuple") else outs if isinstance(outs, tuple) else (outs,)
    for i, x in enumerate(inputs):
        np.save(os.path.join(d, f"input_{i}.npy"), x)
    for i, o in enumerate(outs):
        np.save(os.path.join(d, f"output_{i}.npy"), o.detach().numpy())
    names = [a.debugName().split(".")[0] for a in list(module.graph.inputs())[1:]]
    info = {
        "inputs": [[n, list(x.shape)] for n, x in zip(names, inputs)],
        "outputs": len(outs),
        "mode": mode,
        "torch": torch.__version__,
    }
    with open(os.path.join(d, "info.json.part"), "w") as f:
        json.dump(info, f, indent=1)
    os.replace(os.path.join(d, "info.json.part"), os.path.join(d, "info.json"))
    print(f"gen_pytorch_models: {name}: torch.jit.{mode}", file=sys.stderr)


# models whose fixture also holds model.onnx, the same module through torch.onnx.export: `npm run bench` times
# Kiln's .pt2 import against its ONNX import of it (the same kernels are expected)
ONNX_TWINS = ("resnet18", "efficientnet_b0")


def generate_onnx_twin(name: str, force: bool) -> None:
    d = os.path.join(OUT, name)
    path = os.path.join(d, "model.onnx")
    if os.path.exists(path) and not force:
        return
    model, example, *_ = MODELS[name]()  # seeded: the weights of model.pt2
    with torch.no_grad():
        torch.onnx.export(model, tuple(torch.from_numpy(x) for x in example), path + ".part", dynamo=False,
                          opset_version=17, do_constant_folding=True)
    os.replace(path + ".part", path)
    print(f"gen_pytorch_models: {name}: model.onnx", file=sys.stderr)


LEGACY = ("small", "tiny_gpt")


def generate_legacy(name: str, force: bool) -> None:
    """<name>_legacy: the older .pt2 layout torch 2.1 .. 2.5 wrote (torch/_export/__init__.py save()): the
    ExportedProgram JSON at the archive root next to torch.save archives of the state dict and the constants, and a
    version entry. The local torch no longer writes it; the entries are what torch._export.serde.serialize gives for
    the current export of the same model, which is what that save() zipped. The JSON is today's schema (8.x), not
    the 3.x .. 7.x of those releases."""
    import zipfile

    from torch._export.serde.schema import SCHEMA_VERSION
    from torch._export.serde.serialize import serialize

    tag = f"{name}_legacy"
    d = os.path.join(OUT, tag)
    if os.path.exists(os.path.join(d, "info.json")) and not force:
        return
    generate(name, False, False)
    src = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    art = serialize(torch.export.load(os.path.join(src, "model.pt2")))
    with zipfile.ZipFile(os.path.join(d, "model.pt2"), "w") as z:
        z.writestr("serialized_exported_program.json", art.exported_program)
        z.writestr("serialized_state_dict.pt", art.state_dict)
        z.writestr("serialized_constants.pt", art.constants)
        z.writestr("serialized_example_inputs.pt", art.example_inputs)
        z.writestr("version", ".".join(map(str, SCHEMA_VERSION)))
    for f in os.listdir(src):
        if f.endswith(".npy"):
            shutil.copy(os.path.join(src, f), os.path.join(d, f))
    with open(os.path.join(src, "info.json")) as f:
        info = json.load(f)
    info["layout"] = "legacy"
    with open(os.path.join(d, "info.json.part"), "w") as f:
        json.dump(info, f, indent=1)
    os.replace(os.path.join(d, "info.json.part"), os.path.join(d, "info.json"))
    print(f"gen_pytorch_models: {tag}: the legacy layout", file=sys.stderr)


def main(argv) -> int:
    force = "--force" in argv
    names = [a for a in argv if not a.startswith("--")] or [*MODELS, *TORCHSCRIPT]
    for n in names:
        if n not in MODELS and n not in TORCHSCRIPT:
            print(f"unknown model {n}; known: {', '.join([*MODELS, *TORCHSCRIPT])}", file=sys.stderr)
            return 2
    for n in names:
        if n in TORCHSCRIPT:
            generate_torchscript(n, force)
            continue
        for decompose in (False, True):
            generate(n, decompose, force)
        if n in LEGACY:
            generate_legacy(n, force)
        if n in ONNX_TWINS:
            generate_onnx_twin(n, force)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
