"""PyTorch definitions matching kdcl's built-in architectures.

kdcl saves and loads safetensors with these modules' state-dict names
(nn.Sequential indices), so weights move both ways:

    import torch, safetensors.torch as st
    from models import lenet5
    m = lenet5(width=0.5)
    m.load_state_dict(st.load_file("student.safetensors"))   # kdcl -> torch
    st.save_file(m.state_dict(), "teacher.safetensors")       # torch -> kdcl

Inputs are [B, 1, 28, 28] images normalised as (x/255 - 0.2860) / 0.3530.
"""
import torch.nn as nn


def lenet5(width=1.0, classes=10):
    """kdcl arch: lenet5 (width 0.5 is LeNet-5-half)."""
    w = lambda n: max(1, round(n * width))
    return nn.Sequential(
        nn.Conv2d(1, w(6), 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(w(6), w(16), 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(w(16) * 25, w(120)), nn.ReLU(),
        nn.Linear(w(120), w(84)), nn.ReLU(),
        nn.Linear(w(84), classes))


def mlp(hidden=(1200, 1200), dropout=0.0, inputs=784, classes=10):
    """kdcl arch: mlp (hidden widths; dropout after each ReLU when > 0)."""
    layers = [nn.Flatten()]
    for h in hidden:
        layers += [nn.Linear(inputs, h), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        inputs = h
    layers.append(nn.Linear(inputs, classes))
    return nn.Sequential(*layers)
