"""Time one training step in PyTorch on the CPU, the same recipe as
`kdcl bench --train`: forward, cross-entropy, backward, SGD (momentum 0.9,
weight decay 5e-4) at batch 128 on random 1x28x28 inputs; median of N
steps after 2 warm-up steps.  The last row is a distillation step as
`kdcl distill` runs the main job's: a frozen LeNet-5 teacher's forward
pass, then LeNet-5-half trained on hinton's loss (LOSSES.md, T = 2,
alpha = 0.5).

    python3 examples/pytorch/bench_step.py [THREADS] [N]
"""
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from models import lenet5, mlp

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 7
torch.set_num_threads(threads)
torch.manual_seed(1)
x = torch.randn(128, 1, 28, 28)
y = torch.randint(0, 10, (128,))


def hinton(s, t, labels, T=2.0, alpha=0.5):
    kd = F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1),
                  reduction="batchmean") * T * T
    return alpha * F.cross_entropy(s, labels) + (1 - alpha) * kd


teacher = lenet5().eval()
for name, model, kd in [("lenet5", lenet5(), False),
                        ("lenet5-half", lenet5(0.5), False),
                        ("mlp 784-1200-1200-10", mlp(), False),
                        ("mlp 784-32-10", mlp(hidden=(32,)), False),
                        ("kd lenet5->half hinton", lenet5(0.5), True)]:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9,
                          weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()
    times = []
    for r in range(reps + 2):
        t0 = time.perf_counter()
        opt.zero_grad()
        if kd:
            with torch.no_grad():
                t = teacher(x)
            loss = hinton(model(x), t, y)
        else:
            loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        if r >= 2:
            times.append(time.perf_counter() - t0)
    ms = statistics.median(times) * 1e3
    print("%-24s %8.2f ms %10.0f samples/s" % (name, ms, 128 / ms * 1e3))
