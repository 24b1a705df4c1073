#!/usr/bin/env python
"""What writing a run's training state at the end of an epoch costs the training loop (the main thread).

A run keeps `checkpoint.pt` (weights, optimizer state, random states) after every epoch. The training loop pays
for taking a copy of that state; the file itself is written in a thread while the next epoch trains. For each
architecture, with AdamW's state, this times on the main thread:

- **fresh copy**: every tensor copied to newly allocated host memory (`.to('cpu', copy=True)`, what
  `torch.save(model.state_dict())` or a copy before a background write does), median of `--reps`;
- **`HostSnapshot`**: the copy into host buffers kept from epoch to epoch (`fashion_style.train.HostSnapshot`);
  on a GPU into pinned memory, queued without waiting (the time until `ready()` returns is printed apart);
- **write**: `torch.save` of the snapshot into a file (the thread's work), for reference.

Run: `python bench/checkpoint_bench.py [--device cuda] [--out FILE.json]` (about half a minute on two cores)."""
import argparse, json, os, platform, tempfile, time, warnings
import torch, timm
from fashion_style.train import HostSnapshot, _plain
from fashion_style.core import atomic_write


def training_state(arch:str, device)->dict:
    "Weights and AdamW state (after one step) of `arch` with 13 outputs"
    m = timm.create_model(arch, num_classes=13).to(device)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    m(torch.randn(2, 3, 64, 64, device=device)).sum().backward(); opt.step()
    return dict(model=m.state_dict(), opt=opt.state_dict())


def sync(device):
    if torch.device(device).type == 'cuda': torch.cuda.synchronize(device)


def median(xs): xs = sorted(xs); return xs[len(xs) // 2]


def time_copies(state, device, reps:int)->dict:
    nbytes = sum(t.numel() * t.element_size() for t in torch.utils._pytree.tree_flatten(state)[0] if isinstance(t, torch.Tensor))
    fresh = []
    for _ in range(reps):
        sync(device); t0 = time.perf_counter()
        c = torch.utils._pytree.tree_map(lambda t: t.detach().to('cpu', copy=True) if isinstance(t, torch.Tensor) else t, state)
        fresh.append(time.perf_counter() - t0); del c
    snap, queued, ready = HostSnapshot(), [], []
    for _ in range(reps + 1):  # the first take allocates the buffers: not counted
        sync(device); t0 = time.perf_counter()
        c = snap.take(state); t1 = time.perf_counter(); snap.ready(); t2 = time.perf_counter()
        queued.append(t1 - t0); ready.append(t2 - t0)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        with atomic_write(os.path.join(d, 'checkpoint.pt'), 'wb') as f: torch.save(_plain(c), f)
        write = time.perf_counter() - t0
    return dict(mb=round(nbytes / 1e6, 1), fresh_ms=round(1e3 * median(fresh), 1),
                snapshot_ms=round(1e3 * median(queued[1:]), 1), snapshot_ready_ms=round(1e3 * median(ready[1:]), 1),
                write_ms=round(1e3 * write, 1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--archs', nargs='+', default=['resnet18', 'densenet121'])
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--reps', type=int, default=5)
    ap.add_argument('--threads', type=int, default=1, help='torch CPU threads')
    ap.add_argument('--out', default=None, help='write the results as JSON here')
    a = ap.parse_args()
    torch.set_num_threads(a.threads); warnings.filterwarnings('ignore')
    dev = torch.device(a.device)
    where = torch.cuda.get_device_name(dev) if dev.type == 'cuda' else f'{os.cpu_count()}-core {platform.machine()} CPU'
    print(f"device: {where}, torch {torch.__version__}, {a.threads} thread(s); median of {a.reps} copies")
    res = dict(device=where, torch=torch.__version__, threads=a.threads, reps=a.reps, archs={})
    for arch in a.archs:
        r = res['archs'][arch] = time_copies(training_state(arch, dev), dev, a.reps)
        print(f"{arch:12s} training state {r['mb']:7.1f} MB: fresh copy {r['fresh_ms']:7.1f} ms | HostSnapshot "
              f"{r['snapshot_ms']:6.1f} ms on the loop's thread ({r['snapshot_ready_ms']:.1f} ms until ready) | "
              f"write in the thread {r['write_ms']:.0f} ms")
    if a.out:
        with atomic_write(a.out, 'w') as f: json.dump(res, f, indent=1)


if __name__ == '__main__': main()
