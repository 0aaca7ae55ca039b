#!/usr/bin/python3
"""Reference timings of the photo workloads (README, Speed) in PyTorch eager on CPU.

Needs Debian's python3-torch, python3-torchvision, python3-numpy and python3-flatbuffers.
The SSD-MobileNetV2 is a PyTorch port of the TFLite file (tflite_torch.py beside this file);
VGG16 is torchvision's architecture with random weights (seed 0).
Prints lines in the same form as `tgc bench`: `NAME: X ms/iter`.
Usage: torch_ref_photo.py --tflite PATH [--threads N] [WORKLOAD...]
"""
import argparse, os, sys, time
import torch, torchvision
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tflite_torch import TFLiteNet

CAT = 8  # the label map's index of "Cat"

def workloads(net, vgg):
    x1 = torch.rand(1, 3, 300, 300) * 2 - 1
    x8 = torch.rand(8, 3, 300, 300) * 2 - 1
    v1 = torch.randn(1, 3, 224, 224)
    def score(x, mode="vanilla"):
        return net.forward(x, mode)[0][1][0, :, CAT].max()
    def photo_infer_b8():
        with torch.no_grad(): net.forward(x8)
    def photo_saliency_b1():
        x = x1.clone().requires_grad_(); torch.autograd.grad(score(x), x)
    def photo_guided_b1():
        x = x1.clone().requires_grad_(); torch.autograd.grad(score(x, "guided"), x)
    def photo_ascent_10it():
        x = torch.zeros(1, 3, 300, 300)
        for _ in range(10):
            x.requires_grad_(); g, = torch.autograd.grad(score(x) - 1e-3 * (x * x).sum(), x)
            x = (x + 0.1 * g).detach()
    def vgg16_saliency_b1():
        x = v1.clone().requires_grad_(); torch.autograd.grad(vgg(x)[0, 281], x)
    return {"photo_infer_b8": (photo_infer_b8, 3), "photo_saliency_b1": (photo_saliency_b1, 5),
            "photo_guided_b1": (photo_guided_b1, 5), "photo_ascent_10it": (photo_ascent_10it, 1),
            "vgg16_saliency_b1": (vgg16_saliency_b1, 3)}

if __name__ == "__main__":
    ap = argparse.ArgumentParser(); ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tflite", required=True); ap.add_argument("names", nargs="*"); args = ap.parse_args()
    torch.set_num_threads(args.threads); torch.manual_seed(0)
    net = TFLiteNet(args.tflite); vgg = torchvision.models.vgg16().eval()
    for name, (fn, n) in workloads(net, vgg).items():
        if args.names and name not in args.names: continue
        fn(); t = time.perf_counter()
        for _ in range(n): fn()
        print(f"{name}: {(time.perf_counter() - t) / n * 1e3:.3f} ms/iter", flush=True)
