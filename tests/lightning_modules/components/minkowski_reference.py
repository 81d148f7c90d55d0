"""A direct sparse (MinkowskiEngine-semantics) reference of the official VideoMAC encoders, for the tests.

It works on coordinate lists and feature matrices, never on masked dense maps, and it reads weights in the
MinkowskiEngine layout of a raw pre-training checkpoint, built here from the official code's structure
(models/resnetv2_sparse.py, models/convnextv2_sparse.py at commit 44558a1):

* a sparse tensor is ``(coords (n, 3) = (b, h, w) on its own grid, feats (n, C), grid (H, W))``;
* a conv kernel is [K², Cin, Cout] with kernel index ``i_h + k * i_w`` (the first spatial coordinate varies
  fastest); odd kernels are centred (offset ``i - k // 2``), even ones cover offsets ``0 .. k-1``; an output
  site reads the input at ``o * stride + offset`` (cross-correlation); missing inputs contribute nothing;
* stride-s output sites are the cells ``floor(c / s)`` of the active inputs; stride 1 keeps the input sites
  (submanifold); a 1x1 stride-1 kernel is stored (Cin, Cout), a depthwise one (K², C);
* LayerNorm / Linear act on the feature rows; GRN takes its norm over every row of the batch (``x.F``).
"""

import torch
import torch.nn.functional as F
from torch import Tensor

Sparse = tuple[Tensor, Tensor, tuple[int, int]]


def to_sparse(x: Tensor, visible: Tensor) -> Sparse:
    """Dense (B, C, H, W) and a (B, H, W) bool map -> the visible sites."""
    coords = visible.nonzero()  # (n, 3) = (b, h, w)
    return coords, x.permute(0, 2, 3, 1)[visible], tuple(x.shape[-2:])


def to_dense(t: Sparse, batch: int) -> Tensor:
    """Sparse -> (B, C, H, W) with zeros at missing sites."""
    coords, feats, (H, W) = t
    out = feats.new_zeros(batch, H, W, feats.shape[1])
    out[coords[:, 0], coords[:, 1], coords[:, 2]] = feats
    return out.permute(0, 3, 1, 2)


def conv(t: Sparse, kernel: Tensor, stride: int = 1, bias: Tensor | None = None, depthwise=False) -> Sparse:
    """ME convolution; ``kernel`` in the ME layout."""
    coords, feats, (H, W) = t
    if kernel.dim() == 2 and not depthwise:
        kernel = kernel.unsqueeze(0)  # stride-1 1x1: (Cin, Cout) -> (1, Cin, Cout)
    k = round(kernel.shape[0] ** 0.5)
    start = -(k // 2) if k % 2 else 0
    index = torch.full((int(coords[:, 0].max()) + 1, H, W), -1, dtype=torch.long)
    index[coords[:, 0], coords[:, 1], coords[:, 2]] = torch.arange(len(coords))
    out_coords = (
        coords
        if stride == 1
        else torch.unique(
            torch.stack([coords[:, 0], coords[:, 1] // stride, coords[:, 2] // stride], 1), dim=0
        )
    )
    grid = (H if stride == 1 else -(-H // stride), W if stride == 1 else -(-W // stride))
    cout = kernel.shape[-1]
    out = feats.new_zeros(len(out_coords), cout)
    for i_w in range(k):
        for i_h in range(k):
            r = out_coords[:, 1] * stride + start + i_h
            c = out_coords[:, 2] * stride + start + i_w
            ok = (r >= 0) & (r < H) & (c >= 0) & (c < W)
            src = torch.full_like(r, -1)
            src[ok] = index[out_coords[ok, 0], r[ok], c[ok]]
            hit = src >= 0
            w = kernel[i_h + k * i_w]
            out[hit] += feats[src[hit]] * w if depthwise else feats[src[hit]] @ w
    if bias is not None:
        out = out + bias.reshape(1, -1)
    return out_coords, out, grid


def pointwise(t: Sparse, fn) -> Sparse:
    """Apply a per-site function to the feature rows."""
    return t[0], fn(t[1]), t[2]


def layer_norm(t: Sparse, sd: dict, key: str) -> Sparse:
    """MinkowskiLayerNorm (eps 1e-6) on the feature rows."""
    return pointwise(
        t, lambda f: F.layer_norm(f, f.shape[-1:], sd[f"{key}.ln.weight"], sd[f"{key}.ln.bias"], 1e-6)
    )


def add(a: Sparse, b: Sparse) -> Sparse:
    """Sum of two sparse tensors on the same sites."""
    assert torch.equal(a[0], b[0]), "residual add on different site sets"
    return a[0], a[1] + b[1], a[2]


def stem(x: Tensor, visible_px: Tensor, sd: dict, p: str) -> Sparse:
    """Dense 4x4/s4 conv + channels-first LN, then only the visible cells (official ``x *= 1 - mask``)."""
    s = f"{p}stem." if f"{p}stem.0.weight" in sd else f"{p}downsample_layers.0."  # ResNet / ConvNeXt names
    y = F.conv2d(x, sd[f"{s}0.weight"], sd[f"{s}0.bias"], stride=4)
    w, b = sd[f"{s}1.weight"], sd[f"{s}1.bias"]
    y = F.layer_norm(y.permute(0, 2, 3, 1), w.shape, w, b, 1e-6).permute(0, 3, 1, 2)
    return to_sparse(y, visible_px[:, ::4, ::4])


def resnet_block(t: Sparse, sd: dict, p: str, stride: int, bottleneck: bool) -> Sparse:
    """Official BasicBlock / Bottleneck forward."""
    gelu = F.gelu
    if bottleneck:
        out = pointwise(layer_norm(conv(t, sd[f"{p}conv1.kernel"]), sd, f"{p}norm1"), gelu)
        out = pointwise(layer_norm(conv(out, sd[f"{p}conv2.kernel"], stride), sd, f"{p}norm2"), gelu)
        out = layer_norm(conv(out, sd[f"{p}conv3.kernel"]), sd, f"{p}norm3")
    else:
        out = pointwise(layer_norm(conv(t, sd[f"{p}conv1.kernel"], stride), sd, f"{p}norm1"), gelu)
        out = layer_norm(conv(out, sd[f"{p}conv2.kernel"]), sd, f"{p}norm2")
    res = t
    if f"{p}downsample.0.kernel" in sd:
        res = layer_norm(conv(t, sd[f"{p}downsample.0.kernel"], stride), sd, f"{p}downsample.1")
    return pointwise(add(out, res), gelu)


def resnet_forward(x: Tensor, visible_px: Tensor, sd: dict, depths, bottleneck: bool) -> Tensor:
    """The official SparseResNet forward on an ME-layout ``online_without_ddp`` dict."""
    t = stem(x, visible_px, sd, "encoder.")
    for li, n in enumerate(depths):
        for b in range(n):
            t = resnet_block(
                t, sd, f"encoder.layer{li + 1}.{b}.", 2 if (li > 0 and b == 0) else 1, bottleneck
            )
    return to_dense(t, x.shape[0])


def convnext_block(t: Sparse, sd: dict, p: str) -> Sparse:
    """Official sparse ConvNeXt-V2 block (batch-global GRN, as MinkowskiGRN on x.F)."""
    h = conv(t, sd[f"{p}dwconv.kernel"], 1, sd[f"{p}dwconv.bias"], depthwise=True)
    h = layer_norm(h, sd, f"{p}norm")
    h = pointwise(
        h, lambda f: F.gelu(F.linear(f, sd[f"{p}pwconv1.linear.weight"], sd[f"{p}pwconv1.linear.bias"]))
    )
    g = h[1].norm(p=2, dim=0, keepdim=True)
    n = g / (g.mean(dim=-1, keepdim=True) + 1e-6)
    h = pointwise(h, lambda f: sd[f"{p}grn.gamma"] * (f * n) + sd[f"{p}grn.beta"] + f)
    h = pointwise(h, lambda f: F.linear(f, sd[f"{p}pwconv2.linear.weight"], sd[f"{p}pwconv2.linear.bias"]))
    return add(t, h)


def convnext_forward(x: Tensor, visible_px: Tensor, sd: dict, depths) -> Tensor:
    """The official SparseConvNeXtV2 forward (with the per-stage ``norm{i}``) on an ME-layout dict."""
    t = stem(x, visible_px, sd, "encoder.")
    for i, n in enumerate(depths):
        if i > 0:
            p = f"encoder.downsample_layers.{i}."
            t = conv(layer_norm(t, sd, f"{p}0"), sd[f"{p}1.kernel"], 2, sd[f"{p}1.bias"])
        for j in range(n):
            t = convnext_block(t, sd, f"encoder.stages.{i}.{j}.")
        t = layer_norm(t, sd, f"encoder.norm{i}")
    return to_dense(t, x.shape[0])


def minkowski_resnet_state(depths, bottleneck: bool, gen: torch.Generator) -> dict[str, Tensor]:
    """Random ``online_without_ddp`` of ``mac_r18`` / ``mac_r50`` in the ME layout (plus decoder keys)."""
    shapes = {"encoder.stem.0.weight": (64, 3, 4, 4), "encoder.stem.0.bias": (64,)}
    shapes |= {"encoder.stem.1.weight": (64,), "encoder.stem.1.bias": (64,)}
    exp, cin = (4 if bottleneck else 1), 64
    for li, (planes, n) in enumerate(zip((64, 128, 256, 512), depths, strict=True)):
        for b in range(n):
            p, stride = f"encoder.layer{li + 1}.{b}.", (2 if li > 0 and b == 0 else 1)
            if bottleneck:
                convs = [(cin, planes), (9, planes, planes), (planes, planes * 4)]  # 1x1 at stride 1: 2-D
            else:
                convs = [(9, cin, planes), (9, planes, planes)]
            for j, s in enumerate(convs):
                shapes[f"{p}conv{j + 1}.kernel"] = s
                width = s[-1]
                shapes |= {f"{p}norm{j + 1}.ln.weight": (width,), f"{p}norm{j + 1}.ln.bias": (width,)}
            if b == 0 and (stride != 1 or cin != planes * exp):
                shapes[f"{p}downsample.0.kernel"] = (
                    (cin, planes * exp) if stride == 1 else (1, cin, planes * exp)
                )
                shapes |= {
                    f"{p}downsample.1.ln.weight": (planes * exp,),
                    f"{p}downsample.1.ln.bias": (planes * exp,),
                }
            cin = planes * exp
    return random_state(shapes | decoder_shapes(cin), gen)


def minkowski_convnext_state(depths, dims, gen: torch.Generator) -> dict[str, Tensor]:
    """Random ``online_without_ddp`` of ``mac_tiny`` / ``mac_small`` (any depths/dims) in the ME layout."""
    p = "encoder.downsample_layers."
    shapes = {f"{p}0.0.weight": (dims[0], 3, 4, 4), f"{p}0.0.bias": (dims[0],)}
    shapes |= {f"{p}0.1.weight": (dims[0],), f"{p}0.1.bias": (dims[0],)}
    for i in range(1, 4):
        shapes |= {f"{p}{i}.0.ln.weight": (dims[i - 1],), f"{p}{i}.0.ln.bias": (dims[i - 1],)}
        shapes |= {f"{p}{i}.1.kernel": (4, dims[i - 1], dims[i]), f"{p}{i}.1.bias": (1, dims[i])}
    for i, (n, c) in enumerate(zip(depths, dims, strict=True)):
        for j in range(n):
            q = f"encoder.stages.{i}.{j}."
            shapes |= {f"{q}dwconv.kernel": (49, c), f"{q}dwconv.bias": (1, c)}
            shapes |= {f"{q}norm.ln.weight": (c,), f"{q}norm.ln.bias": (c,)}
            shapes |= {f"{q}pwconv1.linear.weight": (4 * c, c), f"{q}pwconv1.linear.bias": (4 * c,)}
            shapes |= {f"{q}pwconv2.linear.weight": (c, 4 * c), f"{q}pwconv2.linear.bias": (c,)}
            shapes |= {f"{q}grn.gamma": (1, 4 * c), f"{q}grn.beta": (1, 4 * c)}
        shapes |= {f"encoder.norm{i}.ln.weight": (c,), f"encoder.norm{i}.ln.bias": (c,)}
    return random_state(shapes | decoder_shapes(dims[-1]), gen)


def decoder_shapes(cin: int, dim: int = 8) -> dict[str, tuple]:
    """A few of the official decoder / proj / pred / mask-token keys (convert_pth.py drops them)."""
    return {"proj.weight": (dim, cin, 1, 1), "proj.bias": (dim,), "mask_token": (1, dim, 1, 1),
            "decoder.0.dwconv.weight": (dim, 1, 7, 7), "pred.weight": (3072, dim, 1, 1)}  # fmt: skip


def random_state(shapes: dict[str, tuple], gen: torch.Generator) -> dict[str, Tensor]:
    """Float64 tensors; LN weights near 1 and small conv weights keep activations O(1) through deep stacks."""
    out = {}
    for k, s in shapes.items():
        v = torch.randn(s, generator=gen, dtype=torch.float64)
        if ".ln.weight" in k or k.endswith("stem.1.weight") or k.endswith("0.1.weight"):
            v = 1 + 0.1 * v
        elif k.endswith("kernel") or "linear.weight" in k:
            v = v / (s[0] * s[1] if len(s) == 3 else s[0]) ** 0.5
        out[k] = v
    return out
