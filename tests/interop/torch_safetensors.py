#!/usr/bin/python3
"""Optional interoperability check with PyTorch (needs Debian's python3-torch).

  torch_safetensors.py load WEIGHTS SAMPLE_DIR   load tinygrad-cpp weights into torch's FashionCNN
                                                 with load_state_dict(strict=True); print the accuracy
                                                 on the sample and the logits of image 0
  torch_safetensors.py save OUT                  write a torch FashionCNN state_dict as safetensors

The safetensors format is simple enough that this script reads and writes it with
struct and json alone (Debian has no python3-safetensors).
"""
import gzip, json, struct, sys
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F

class FashionCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 5, padding=2); self.conv2 = nn.Conv2d(16, 32, 5, padding=2)
        self.fc1 = nn.Linear(32 * 7 * 7, 128); self.fc2 = nn.Linear(128, 10)
    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2); x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))

def read_safetensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n]); data = raw[8 + n:]
    meta = header.pop("__metadata__", {})
    tensors = {k: torch.from_numpy(np.frombuffer(data[v["data_offsets"][0]:v["data_offsets"][1]], dtype="<f4")
                                   .reshape(v["shape"]).copy()) for k, v in header.items()}
    return tensors, meta

def write_safetensors(path, tensors, meta):
    header, blobs, offset = {"__metadata__": meta}, [], 0
    for k in sorted(tensors):
        b = tensors[k].detach().numpy().astype("<f4").tobytes()
        header[k] = {"dtype": "F32", "shape": list(tensors[k].shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b); offset += len(b)
    text = json.dumps(header).encode(); text += b" " * ((8 - len(text) % 8) % 8)
    open(path, "wb").write(struct.pack("<Q", len(text)) + text + b"".join(blobs))

if __name__ != "__main__":
    pass
elif sys.argv[1] == "load":
    tensors, meta = read_safetensors(sys.argv[2])
    model = FashionCNN(); model.load_state_dict(tensors, strict=True); model.eval()
    images = np.frombuffer(gzip.open(sys.argv[3] + "/t10k-images-idx3-ubyte.gz").read()[16:], np.uint8)
    labels = np.frombuffer(gzip.open(sys.argv[3] + "/t10k-labels-idx1-ubyte.gz").read()[8:], np.uint8)
    x = (torch.from_numpy(images.reshape(-1, 1, 28, 28).astype(np.float32)) / 255 - 0.2860) / 0.3530
    with torch.no_grad(): logits = model(x)
    print("metadata:", meta.get("arch"), meta.get("classes"))
    print("accuracy: %.4f" % (logits.argmax(1).numpy() == labels).mean())
    print("logits[0]:", " ".join("%.4f" % v for v in logits[0].tolist()))
else:
    torch.manual_seed(7); model = FashionCNN()
    write_safetensors(sys.argv[2], model.state_dict(), {"arch": "FashionCNN", "from": "pytorch"})
    x = torch.zeros(1, 1, 28, 28)
    with torch.no_grad(): print("logits of a zero image:", " ".join("%.4f" % v for v in model(x)[0].tolist()))
