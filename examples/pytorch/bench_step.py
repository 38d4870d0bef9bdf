"""Time one training step in PyTorch on the CPU, the same recipe as
`kdcl bench --train`: forward, cross-entropy, backward, SGD (momentum 0.9,
weight decay 5e-4) at batch 128 on random 1x28x28 inputs; median of N
steps after 2 warm-up steps.

    python3 examples/pytorch/bench_step.py [THREADS] [N]
"""
import statistics
import sys
import time

import torch
import torch.nn as nn

from models import lenet5, mlp

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 7
torch.set_num_threads(threads)
torch.manual_seed(1)
x = torch.randn(128, 1, 28, 28)
y = torch.randint(0, 10, (128,))
for name, model in [("lenet5", lenet5()), ("lenet5-half", lenet5(0.5)),
                    ("mlp 784-1200-1200-10", mlp()),
                    ("mlp 784-32-10", mlp(hidden=(32,)))]:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9,
                          weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()
    times = []
    for r in range(reps + 2):
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        if r >= 2:
            times.append(time.perf_counter() - t0)
    ms = statistics.median(times) * 1e3
    print("%-24s %8.2f ms %10.0f samples/s" % (name, ms, 128 / ms * 1e3))
