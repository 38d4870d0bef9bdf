"""Checks that kdcl's safetensors are PyTorch state dicts: trains a small
model with `kdcl train`, then recomputes its test accuracy with numpy
alone, using PyTorch's conventions (nn.Sequential index names; Conv2d
weights [out, in, kh, kw] applied as cross-correlation; Linear weights
[out, in], y = x W^T + b; Flatten of [C, H, W] in C order) and the
architectures of examples/pytorch/models.py.  A wrong name, shape, layout
or dtype gives a different accuracy (or an error) here.

    python3 tests/pytorch_layout.py KDCL_EXE WORKDIR
"""
import gzip
import json
import os
import struct
import subprocess
import sys

import numpy as np

DATA = "/usr/share/datasets/fashion-mnist"
MEAN, STD = 0.2860, 0.3530


def load_safetensors(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    body = raw[8 + n:]
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32", (name, t["dtype"])
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(body[a:b], "<f4").reshape(t["shape"])
    return out


def idx(path):
    raw = gzip.open(path).read()
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw[4 + 4 * ndim:], np.uint8).reshape(dims)


def conv2d(x, w, b, pad):
    """PyTorch nn.Conv2d (stride 1): cross-correlation, w [O, I, kh, kw]."""
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    kh, kw = w.shape[2:]
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
    # win [B, I, H', W', kh, kw]
    return np.einsum("bihwkl,oikl->bohw", win, w) + b[None, :, None, None]


def maxpool2(x):
    B, C, H, W = x.shape
    return x.reshape(B, C, H // 2, 2, W // 2, 2).max(axis=(3, 5))


def relu(x):
    return np.maximum(x, 0)


def linear(x, w, b):
    return x @ w.T + b


def lenet5(sd, x):
    x = maxpool2(relu(conv2d(x, sd["0.weight"], sd["0.bias"], 2)))
    x = maxpool2(relu(conv2d(x, sd["3.weight"], sd["3.bias"], 0)))
    x = x.reshape(x.shape[0], -1)
    x = relu(linear(x, sd["7.weight"], sd["7.bias"]))
    x = relu(linear(x, sd["9.weight"], sd["9.bias"]))
    return linear(x, sd["11.weight"], sd["11.bias"])


def main():
    exe, work = sys.argv[1], sys.argv[2]
    if not os.path.exists(os.path.join(DATA, "t10k-images-idx3-ubyte.gz")):
        print("Fashion-MNIST is not installed; skipped")
        return 77
    os.makedirs(work, exist_ok=True)
    cfg = os.path.join(work, "layout.yaml")
    weights = os.path.join(work, "layout.safetensors")
    summary = os.path.join(work, "layout.json")
    n_test = 1000
    with open(cfg, "w") as f:
        f.write("seed: 3\n"
                "data: {limit: 6000, test_limit: %d}\n"
                "model: {arch: lenet5, width: 0.5}\n"
                "train: {epochs: 3, lr: 0.05, momentum: 0.9}\n"
                "output: {weights: %s}\n" % (n_test, weights))
    subprocess.run([exe, "train", cfg, "--json", summary], check=True,
                   stdin=subprocess.DEVNULL)
    kdcl_acc = json.load(open(summary))["accuracy"]
    sd = load_safetensors(weights)
    names = sorted(sd)
    assert names == sorted("%d.%s" % (i, p) for i in (0, 3, 7, 9, 11)
                           for p in ("weight", "bias")), names
    assert sd["0.weight"].shape == (3, 1, 5, 5), sd["0.weight"].shape
    assert sd["3.weight"].shape == (8, 3, 5, 5), sd["3.weight"].shape
    assert sd["7.weight"].shape == (60, 200), sd["7.weight"].shape
    assert sd["11.weight"].shape == (10, 42), sd["11.weight"].shape
    x = idx(os.path.join(DATA, "t10k-images-idx3-ubyte.gz"))[:n_test]
    y = idx(os.path.join(DATA, "t10k-labels-idx1-ubyte.gz"))[:n_test]
    x = ((x.astype(np.float32) / 255 - MEAN) / STD)[:, None, :, :]
    acc = float((lenet5(sd, x).argmax(axis=1) == y).mean())
    print("kdcl accuracy %.4f, numpy (PyTorch layout) %.4f" % (kdcl_acc, acc))
    # Float rounding may flip a near-tie; a layout error costs tens of points.
    if abs(acc - kdcl_acc) > 2.0 / n_test or kdcl_acc < 0.5:
        print("FAIL: the weights do not reproduce kdcl's accuracy")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
