"""Load a model kdcl saved (output.weights) into PyTorch unchanged and
measure its Fashion-MNIST test accuracy:

    kdcl distill examples/configs/fashion-lenet5.yaml \
        --set output.weights=student.safetensors
    python3 examples/pytorch/evaluate.py student.safetensors lenet5 0.5

ARCH is lenet5 (then WIDTH) or mlp (then the hidden widths, e.g. 1200,1200).
Needs torch and safetensors (pip install torch safetensors).
"""
import gzip
import sys

import numpy as np
import safetensors.torch as st
import torch

from models import lenet5, mlp

DATA = "/usr/share/datasets/fashion-mnist"


def idx(path):
    raw = gzip.open(path).read()
    nd = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(raw[4 + 4 * nd:], np.uint8).reshape(dims)


path, arch = sys.argv[1], sys.argv[2]
if arch == "lenet5":
    model = lenet5(float(sys.argv[3]) if len(sys.argv) > 3 else 1.0)
else:
    model = mlp(tuple(int(h) for h in sys.argv[3].split(",")))
model.load_state_dict(st.load_file(path), strict=True)
model.eval()
x = idx(DATA + "/t10k-images-idx3-ubyte.gz").astype(np.float32) / 255
y = torch.from_numpy(idx(DATA + "/t10k-labels-idx1-ubyte.gz").astype(np.int64))
x = torch.from_numpy((x - 0.2860) / 0.3530).unsqueeze(1)
with torch.no_grad():
    acc = (model(x).argmax(1) == y).float().mean().item()
print("PyTorch test accuracy %.2f%% (%d images)" % (100 * acc, len(y)))
