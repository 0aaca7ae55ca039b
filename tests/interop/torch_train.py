#!/usr/bin/python3
"""PyTorch's side of the training-time comparison in the README (needs python3-torch).

Trains the same FashionCNN with Adam 1e-3, batch 64 (the train_step workload) on 2 threads and
prints the test accuracy and wall time after every epoch.
Usage: torch_train.py [DATA_DIR] [EPOCHS]
"""
import gzip, sys, time
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F
sys.path.insert(0, __file__.rsplit("/", 1)[0])
from torch_safetensors import FashionCNN

data = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist"
epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 6
def load(prefix):
    x = np.frombuffer(gzip.open(f"{data}/{prefix}-images-idx3-ubyte.gz").read()[16:], np.uint8)
    y = np.frombuffer(gzip.open(f"{data}/{prefix}-labels-idx1-ubyte.gz").read()[8:], np.uint8)
    x = (torch.from_numpy(x.reshape(-1, 1, 28, 28).astype(np.float32)) / 255 - 0.2860) / 0.3530
    return x, torch.from_numpy(y.astype(np.int64))
torch.set_num_threads(2); torch.manual_seed(0)
xtr, ytr = load("train"); xte, yte = load("t10k")
model = FashionCNN(); opt = torch.optim.Adam(model.parameters(), 1e-3)
start = time.perf_counter()
for epoch in range(1, epochs + 1):
    model.train(); order = torch.randperm(len(xtr))
    for i in range(0, len(xtr), 64):
        idx = order[i:i + 64]; opt.zero_grad(); F.cross_entropy(model(xtr[idx]), ytr[idx]).backward(); opt.step()
    model.eval()
    with torch.no_grad(): acc = (model(xte).argmax(1) == yte).float().mean().item()
    print(f"epoch {epoch}: test accuracy {acc:.4f}, {time.perf_counter() - start:.1f} s", flush=True)
