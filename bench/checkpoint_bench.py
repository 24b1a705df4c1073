#!/usr/bin/env python
"""What writing a run's training state at the end of an epoch costs the training loop (the main thread).

A run takes its state (weights, optimizer state, random states) after every epoch and writes it to
`checkpoint.safetensors` (at most once a minute by default: `train`'s `checkpoint_min_s`). The training loop pays
for taking a copy of that state; the file itself is written in a thread while the next epoch trains, but that
thread can still hold the loop up by holding Python's lock (the GIL). For each architecture, with AdamW's state,
this times on the main thread:

- **fresh copy**: every tensor copied to newly allocated host memory (`.to('cpu', copy=True)`, what
  `torch.save(model.state_dict())` or a copy before a background write does), median of `--reps`;
- **`HostSnapshot`**: the copy into host buffers kept from epoch to epoch (`fashion_style.train.HostSnapshot`);
  on a GPU into pinned memory, queued without waiting (the time until `ready()` returns is printed apart);
- **write**: the snapshot written as the run writes it (`write_safetensors`, in a thread) and, for reference, by
  `torch.save` (how earlier versions wrote `checkpoint.pt`);
- **loop held up**: how much longer a stand-in for the training loop (`--loop-ops` tiny tensor operations on the
  main thread, each one a call into torch as queuing a GPU kernel is) takes while each write runs in a thread
  than alone, median of `--reps`: the time a write holding the GIL takes from training.

Run: `python bench/checkpoint_bench.py [--device cuda] [--out FILE.json]` (about half a minute on two cores)."""
import argparse, json, os, platform, tempfile, threading, time, warnings
import torch, timm
from fashion_style.train import HostSnapshot, _plain, _pack
from fashion_style.core import atomic_write, write_safetensors


def training_state(arch:str, device)->dict:
    "Weights and AdamW state (after one step) of `arch` with 13 outputs"
    m = timm.create_model(arch, num_classes=13).to(device)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    m(torch.randn(2, 3, 64, 64, device=device)).sum().backward(); opt.step()
    return dict(model=m.state_dict(), opt=opt.state_dict())


def sync(device):
    if torch.device(device).type == 'cuda': torch.cuda.synchronize(device)


def median(xs): xs = sorted(xs); return xs[len(xs) // 2]


def loop_held_up(write, reps:int, ops:int)->float:
    "Median ms that `ops` tiny torch calls on this thread take longer while `write()` runs in a thread than alone"
    x = torch.zeros(16)
    def loop():
        t0 = time.perf_counter()
        for _ in range(ops): x.add_(1)
        return time.perf_counter() - t0
    alone, beside = [], []
    for _ in range(reps):
        alone.append(loop())
        th = threading.Thread(target=write); th.start(); beside.append(loop()); th.join()
    return round(1e3 * (median(beside) - median(alone)), 1)


def time_copies(state, device, reps:int, ops:int=20000)->dict:
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
        def st_write():  # as `CheckpointCallback` writes it
            tensors = {}; header = json.dumps(_pack(c, tensors))
            write_safetensors(tensors, os.path.join(d, 'checkpoint.safetensors'), metadata=dict(checkpoint=header))
        separate = _plain(torch.utils._pytree.tree_map(lambda t: t.clone() if isinstance(t, torch.Tensor) else t, c))
        def pt_write():  # from tensors of their own, as earlier versions' snapshots were (torch.save refuses views of one block as several dtypes)
            with atomic_write(os.path.join(d, 'checkpoint.pt'), 'wb') as f: torch.save(separate, f)
        writes = {}
        for name, fn in (('safetensors', st_write), ('torch_save', pt_write)):
            t = []
            for _ in range(3): t0 = time.perf_counter(); fn(); t.append(time.perf_counter() - t0)
            writes[name] = dict(write_ms=round(1e3 * median(t), 1), loop_held_up_ms=loop_held_up(fn, reps, ops))
    return dict(mb=round(nbytes / 1e6, 1), fresh_ms=round(1e3 * median(fresh), 1),
                snapshot_ms=round(1e3 * median(queued[1:]), 1), snapshot_ready_ms=round(1e3 * median(ready[1:]), 1),
                write_ms=writes['safetensors']['write_ms'], writes=writes, loop_ops=ops)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--archs', nargs='+', default=['resnet18', 'densenet121'])
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--reps', type=int, default=5)
    ap.add_argument('--loop-ops', type=int, default=20000, help='tiny torch calls of the stand-in training loop')
    ap.add_argument('--threads', type=int, default=1, help='torch CPU threads')
    ap.add_argument('--out', default=None, help='write the results as JSON here')
    a = ap.parse_args()
    torch.set_num_threads(a.threads); warnings.filterwarnings('ignore')
    dev = torch.device(a.device)
    where = torch.cuda.get_device_name(dev) if dev.type == 'cuda' else f'{os.cpu_count()}-core {platform.machine()} CPU'
    print(f"device: {where}, torch {torch.__version__}, {a.threads} thread(s); median of {a.reps} copies")
    res = dict(device=where, torch=torch.__version__, threads=a.threads, reps=a.reps, archs={})
    for arch in a.archs:
        r = res['archs'][arch] = time_copies(training_state(arch, dev), dev, a.reps, a.loop_ops)
        w = r['writes']
        print(f"{arch:12s} training state {r['mb']:7.1f} MB: fresh copy {r['fresh_ms']:7.1f} ms | HostSnapshot "
              f"{r['snapshot_ms']:6.1f} ms on the loop's thread ({r['snapshot_ready_ms']:.1f} ms until ready) | "
              f"write in the thread: write_safetensors {w['safetensors']['write_ms']:.0f} ms, holding up the loop "
              f"{w['safetensors']['loop_held_up_ms']:.0f} ms; torch.save {w['torch_save']['write_ms']:.0f} ms, holding up "
              f"the loop {w['torch_save']['loop_held_up_ms']:.0f} ms", flush=True)
    if a.out:
        with atomic_write(a.out, 'w') as f: json.dump(res, f, indent=1)


if __name__ == '__main__': main()
