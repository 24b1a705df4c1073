#!/usr/bin/env python
"""Training and inference speed on a GPU: the project's `train` from JPEG files against a plain PyTorch loop.

For each architecture (default densenet121 and resnet18) at 224 px, batch 128, bf16 autocast, channels-last:
- **project**: `fashion_style.train.train` on the JPEG files with its GPU defaults (`pipeline='auto'` -> the uint8
  cache in GPU memory, flip + normalize on the GPU; bf16; channels-last; torch's fused AdamW through
  `train.StyleOptimWrapper`; cudnn autotuning), with its metrics (`f2_05`, `f2_opt`), best-F2 checkpoints, resume
  checkpoints (written at most once a minute, `train`'s default `checkpoint_min_s=60`: with these short epochs, after
  the first and the last), history and an SWA cycle on the last epoch. Seconds per epoch are timed by a callback that runs
  after every other one, the device synced: training + validation + metrics + every callback's end-of-epoch work
  (best weights, history, SWA, checkpoint). The run's `history.csv` seconds are kept beside them
  (`history_epoch_s`): they are taken before the SWA and checkpoint callbacks' end-of-epoch work, so they leave it
  out. The first epoch (cuDNN autotuning) is left out.
- **plain**: a plain PyTorch loop on the same GPU, same model (the network `train` builds: timm body and fastai's
  head; `--plain-model timm` puts timm's own classifier in its place, as runs 1-6 did), batch and precision over the same cache tensor in
  GPU memory: gather a batch, flip half, normalize, channels-last, forward/backward, fused AdamW; then validation
  (forward only) with the same F2 threshold search on the gathered predictions. Timed the same way, per epoch.
- **ceiling**: the plain training step on one static batch (no input work at all), images/s.
Also: cache build images/s (decode + resize each JPEG once, all CPUs), `predict` images/s on the JPEG files (JPEGs
decoded by PIL in the workers, and on the GPU by nvJPEG: `decode='pil'` / `'device'`), plain
bf16 inference images/s from the GPU cache, peak host and GPU memory, and the projected wall time of the paper's
DenseNet121 recipe (31 epochs over 54,908 images, every epoch validated) at the measured rate.

The JPEGs are synthetic (garments drawn by `fashion_style.synth`, enlarged with pixel noise, quality 90), made once.
`--checkpoint-cost` adds a project run without resume checkpoints and one that writes them after every epoch
(`checkpoint_min_s=0`, as in runs 1-6); `--checkpoint-foreground` one that writes them after every
epoch while training waits (not in a thread). `--sync-count` adds one more project run per architecture in which CUDA itself counts the synchronising calls
(`torch.cuda.set_sync_debug_mode('warn')`) of each training and validation phase. `--profile N` records N training
batches of each loop with the torch profiler (plain: after its timed epochs; project: a 2-epoch run, batches of
its second epoch) and prints, per batch, the wall time, the GPU's kernel time and kernel count, and the kernels
whose time differs most between the two: a project batch with the plain loop's kernel time but more wall time
waits for the host; one with more kernel time does more GPU work, and the table names it. `--progress` runs the project with
its progress bars on, as a user would. `bench/gpu_run.sh` runs this script (and an optional baseline) in one command.
Prints a table and writes `$OUT/gpu_train_bench.json` (or `--out`). `--smoke` runs everything tiny on the CPU
(fp32) to check the code: its figures mean nothing.
Run on a GPU machine: `python bench/gpu_train_bench.py --n 12000 --img-size 500`."""
import argparse, gc, inspect, json, os, platform, re, resource, threading, shutil, sys, tempfile, time, warnings
from pathlib import Path
import numpy as np, pandas as pd, torch
import torch._dynamo
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dataload_bench import make_jpegs  # noqa: E402
from fastai.callback.core import Callback
from fashion_style.core import STYLES, seed_everything
from fashion_style.metrics import best_thresholds
from fashion_style.fastdata import fast_style_dls
from fashion_style.train import train


PAPER_IMAGES, PAPER_EPOCHS = 54_908, 31  # JD development set; 7 frozen + 24 unfrozen epochs (frozen ones are cheaper)

def sync(dev):
    if dev.type == 'cuda': torch.cuda.synchronize(dev)

class PhaseTimer(Callback):
    "Time each epoch's training, validation and end-of-epoch work (device synced)"
    order = 200  # after every other callback's after_epoch
    def __init__(self, dev): self.dev, self.rows = dev, []
    def _t(self): sync(self.dev); return time.perf_counter()
    def before_epoch(self): self.t = {'start': self._t()}
    def after_train(self): self.t['train'] = self._t()
    def after_validate(self): self.t['valid'] = self._t()
    def after_epoch(self):
        if 'train' not in self.t: return  # an epoch a resumed fit skips
        end, t = self._t(), self.t
        self.rows.append(dict(train_s=t['train'] - t['start'], valid_s=t['valid'] - t['train'], epoch_end_s=end - t['valid']))

class SyncCount(Callback):
    "CUDA's own count of synchronising calls (`torch.cuda.set_sync_debug_mode('warn')`) in each epoch's training and validation, first epoch left out"
    order = 201
    def __init__(self, dev): self.dev, self.rows = dev, []
    def before_train(self): self._start()
    def before_validate(self): self._start()
    def after_train(self): self._stop('train')
    def after_validate(self): self._stop('valid')
    def _start(self):
        self._w = None
        if self.dev.type != 'cuda' or self.epoch == 0: return
        self._ctx = warnings.catch_warnings(record=True); self._w = self._ctx.__enter__()
        warnings.simplefilter('always'); torch.cuda.set_sync_debug_mode('warn')
    def _stop(self, phase):
        if self._w is None: return
        torch.cuda.set_sync_debug_mode('default'); self._ctx.__exit__(None, None, None)
        n = sum('synchroniz' in str(w.message) for w in self._w)
        self.rows.append(dict(epoch=self.epoch, phase=phase, syncs=n, batches=len(self.dl)))

class Timeline:
    """Where each training batch's time goes, without the profiler: host timestamps at each step of the batch (wall and
    the main thread's CPU time: wall without CPU time is waiting, for the GPU's queue or for the GIL), CUDA events at
    each batch start (the GPU's own time per batch, idle included), Python's garbage collections and the threads alive"""
    def __init__(self, dev): self.dev, self.epochs, self.cur = dev, [], None
    def start_epoch(self):
        self.cur = dict(marks=[], events=[], gc=[], threads=None); self._gc_t = None
        gc.callbacks.append(self._gc)
    def _gc(self, phase, info):
        if phase == 'start': self._gc_t = time.perf_counter()
        elif self._gc_t is not None: self.cur['gc'].append((info['generation'], time.perf_counter() - self._gc_t)); self._gc_t = None
    def mark(self, name):
        "A host timestamp; 'batch' starts a batch (and records a CUDA event there)"
        if self.cur is None: return
        if name == 'batch':
            self.cur['marks'].append([])
            if self.dev.type == 'cuda': ev = torch.cuda.Event(enable_timing=True); ev.record(); self.cur['events'].append(ev)
            if len(self.cur['marks']) in (2, 10):  # the threads alive at the second and the tenth batch
                self.cur['threads'] = {**(self.cur['threads'] or {}), len(self.cur['marks']) - 1: sorted(t.name for t in threading.enumerate())}
        if self.cur['marks']: self.cur['marks'][-1].append((name, time.perf_counter(), time.thread_time()))
    def end_epoch(self):
        "After the epoch's training (the device synced by the caller)"
        if self.cur is None: return
        gc.callbacks.remove(self._gc)
        if self.dev.type == 'cuda': ev = torch.cuda.Event(enable_timing=True); ev.record(); self.cur['events'].append(ev); sync(self.dev)
        c, self.cur = self.cur, None
        seg, cpu = {}, {}
        ends = [m[0][1:] for m in c['marks'][1:]] + [None]  # each batch ends where the next begins
        for m, nxt in zip(c['marks'], ends):
            pts = m + ([('next', *nxt)] if nxt else [])
            for (a, t0, c0), (b, t1, c1) in zip(pts, pts[1:]):
                k = f'{a}>{b}'; seg.setdefault(k, []).append(t1 - t0); cpu.setdefault(k, []).append(c1 - c0)
        gpu = [a.elapsed_time(b) / 1000 for a, b in zip(c['events'], c['events'][1:])]
        host = [m[-1][1] - m[0][1] for m in c['marks']]
        self.epochs.append(dict(batches=len(c['marks']),
            seg_ms={k: round(1000 * float(np.median(v)), 3) for k, v in seg.items()},
            seg_sum_s={k: round(float(np.sum(v)), 3) for k, v in seg.items()},
            seg_cpu_sum_s={k: round(float(np.sum(v)), 3) for k, v in cpu.items()},
            gpu_batch_ms=dict(median=1000 * float(np.median(gpu)), mean=1000 * float(np.mean(gpu)), max=1000 * float(np.max(gpu))) if gpu else None,
            gpu_sum_s=float(np.sum(gpu)) if gpu else None,
            batch_ms=[round(1000 * (t1[0][1] - t0[0][1]), 1) for t0, t1 in zip(c['marks'], c['marks'][1:])],
            slow_batches={i: {k: round(1000 * (t1 - t0), 1) for (k, t0, _), (_, t1, _) in zip(m, m[1:])}  # where the time went in the 3 slowest
                          for i, m in sorted(enumerate(c['marks'][:-1]), key=lambda im: im[1][0][1] - c['marks'][im[0] + 1][0][1])[:3]},
            gc={g: dict(n=sum(1 for gg, _ in c['gc'] if gg == g), ms=round(1000 * sum(d for gg, d in c['gc'] if gg == g), 1)) for g in (0, 1, 2)},
            threads=c['threads']))
    def summary(self)->dict|None:
        "The epochs after the first"
        return dict(epochs=self.epochs[1:]) if len(self.epochs) > 1 else None

class TimelineCB(Callback):
    "`Timeline` marks at fastai's training events (first of the callbacks at each event, so a step's time includes the other callbacks' work at its start)"
    order = -100
    def __init__(self, dev): self.tl = Timeline(dev)
    def before_train(self): self.tl.start_epoch()
    def after_train(self): sync(self.tl.dev); self.tl.end_epoch()
    def before_batch(self):
        if self.training: self.tl.mark('batch')
    def after_pred(self):
        if self.training: self.tl.mark('pred')
    def after_loss(self):
        if self.training: self.tl.mark('loss')
    def after_backward(self): self.tl.mark('backward')
    def after_step(self): self.tl.mark('step')
    def after_batch(self):
        if self.training: self.tl.mark('after_batch')

def print_timeline(arch, kind, tl:dict|None):
    if not tl: return
    for i, e in enumerate(tl['epochs']):
        g = e['gpu_batch_ms']
        print(f"{arch:12s} {kind:22s} timeline epoch {i + 2}: {e['batches']} batches; GPU per batch "
              + (f"median {g['median']:.1f} mean {g['mean']:.1f} max {g['max']:.1f} ms (sum {e['gpu_sum_s']:.2f} s)" if g else "-")
              + f"; host s (CPU s) per step: " + ', '.join(f"{k} {v:.2f} ({e['seg_cpu_sum_s'][k]:.2f})" for k, v in e['seg_sum_s'].items())
              + f"; slowest batches (index: ms a step) {e['slow_batches']}; gc {e['gc']}" + (f"; threads {e['threads']}" if i == 0 else ''), flush=True)

def profile_summary(prof, n:int, wall_s:float, top:int=12)->dict:
    "Per batch: wall ms, the device's kernel ms and count (the CPU's op ms and count on a CPU), and the `top` kernels by time"
    # device-side events named like 'ProfilerStep*' or 'Optimizer.step#AdamW.step' are annotations (spans), not kernels
    rows = [e for e in prof.key_averages() if e.device_type.name != 'CPU' and not re.match(r'ProfilerStep|.*#', e.key)] if torch.cuda.is_available() else []
    dev_time, on = (lambda e: getattr(e, 'self_device_time_total', 0)), 'cuda kernels'
    if not rows: rows, dev_time, on = [e for e in prof.key_averages() if e.self_cpu_time_total > 0], (lambda e: e.self_cpu_time_total), 'cpu ops'
    by = sorted(rows, key=dev_time, reverse=True)
    # the host's calls into the CUDA runtime/driver (cudaLaunchKernel, cudaStreamSynchronize, cudaMemcpyAsync...): a
    # Synchronize or a blocking copy per batch makes the GPU wait while the host queues the next batch
    api = [e for e in prof.key_averages() if e.device_type.name == 'CPU' and re.match(r'cu(da)?[A-Z]', e.key)]
    return dict(batches=n, wall_ms=1000 * wall_s / n, kernel_ms=sum(map(dev_time, rows)) / 1000 / n,
                kernels=sum(e.count for e in rows) / n, on=on,
                runtime_calls={e.key[:80]: dict(calls=e.count / n, cpu_ms=e.self_cpu_time_total / 1000 / n) for e in api},
                top={e.key[:120]: dict(ms=dev_time(e) / 1000 / n, calls=e.count / n) for e in by[:top]},
                all_ms={e.key[:120]: dev_time(e) / 1000 / n for e in rows})

def profiled(dev, n:int):
    "A torch profiler of the CPU and, on a GPU, its kernels, that records `n` steps after one warm-up step (call `step()` after each)"
    from torch.profiler import profile, schedule, ProfilerActivity
    return profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == 'cuda' else []),
                   schedule=schedule(wait=0, warmup=1, active=n), acc_events=True)  # events kept past the cycle's end

class ProfileBatches(Callback):
    "Profile `n` training batches of the second epoch, after its first (the profiler's warm-up): `summary` as `profile_summary` gives"
    order = 202
    def __init__(self, dev, n:int, first:int=1): self.dev, self.n, self.first, self.summary, self.prof = dev, n, first, None, None
    def before_batch(self):
        if self.training and self.epoch == 1 and self.iter == self.first - 1 and self.first + self.n <= len(self.dl):
            self.prof = profiled(self.dev, self.n); self.prof.__enter__()
    def after_batch(self):
        if self.prof is None or not self.training: return
        if self.iter == self.first + self.n - 1: sync(self.dev); wall = time.perf_counter() - self.t
        self.prof.step()
        if self.iter == self.first - 1: sync(self.dev); self.t = time.perf_counter()
        elif self.iter == self.first + self.n - 1:
            self.prof.__exit__(None, None, None)
            self.summary = profile_summary(self.prof, self.n, wall); self.prof = None

def project_epochs(df_file, image_dir, arch, a, dev, cache_dir, out, cudnn_benchmark, sync_count=False, profile=0, gc_freeze=False,
                   ckpt_foreground=False, **extra)->dict:
    "The project's `train` on the JPEGs: per-epoch seconds from history.csv, and the whole call's wall time"
    import fashion_style.train as fs_train
    timer, syncs, prof, tl = PhaseTimer(dev), SyncCount(dev), ProfileBatches(dev, profile), TimelineCB(dev)
    epochs = 2 if profile else a.epochs
    if gc_freeze: gc.collect(); gc.freeze()  # the objects alive now are left out of every later collection
    # the resume checkpoint written while the training loop waits for it (as timm's train script does), not in a thread
    init = fs_train.CheckpointCallback.__init__
    ck_defaults = init.__defaults__
    if ckpt_foreground:
        names = list(inspect.signature(init).parameters)[-len(ck_defaults):]  # the parameters that have defaults
        init.__defaults__ = tuple(False if n == 'background' else d for n, d in zip(names, ck_defaults))
    t = time.perf_counter()
    try: run = train(data=str(df_file), image_dir=str(image_dir), arch=arch, size=a.size, bs=a.bs, epochs=epochs, lr=1e-3,
                loss='wbce', frozen_epochs=0, num_workers=a.workers, cache_dir=str(cache_dir), device=str(dev),
                swa=dict(start_epoch=epochs - 1, cycle_len=1), out=str(out), progress=a.progress, cudnn_benchmark=cudnn_benchmark,
                cbs=[timer] + ([syncs] if sync_count else []) + ([prof] if profile else []) + ([tl] if a.timeline and not profile else []),
                **{'name': f'{arch}-{cudnn_benchmark}', **extra})
    finally:
        if gc_freeze: gc.unfreeze()
        init.__defaults__ = ck_defaults
    wall = time.perf_counter() - t
    info = json.loads((run/'config.json').read_text())
    hist = pd.read_csv(run/'history.csv')
    n = info['n_train'] // a.bs * a.bs + info['n_valid']  # drop_last on train
    rows = pd.DataFrame(timer.rows)
    secs = rows.sum(axis=1).to_numpy()  # the whole epoch: training, validation and every callback's end-of-epoch work
    phases = rows.iloc[1:].median().round(3).to_dict()  # the first epoch tunes kernels
    return dict(epoch_s=float(np.median(secs[1:])), epoch_s_all=[round(float(s), 3) for s in secs], images_per_epoch=n, phases=phases,
                img_s=n / float(np.median(secs[1:])), history_epoch_s=[float(s) for s in hist.seconds],
                wall_s=wall, speed=info['speed'], f2_opt=[float(v) for v in hist.f2_opt],
                results=json.loads((run/'results.json').read_text()), run=str(run), cuda_syncs=syncs.rows or None, profile=prof.summary,
                timeline=tl.tl.summary())

def plain_model(arch:str, kind:str='project')->torch.nn.Module:
    "The plain loop's network: 'project' = the one `train` trains (timm body, fastai's head, as `style_learner` builds it); 'timm' = timm's own 13-output classifier"
    if kind == 'timm':
        import timm
        return timm.create_model(arch, num_classes=len(STYLES))
    from fastai.vision.learner import create_timm_model
    from fashion_style.models import resolve_arch
    return create_timm_model(resolve_arch(arch), len(STYLES), pretrained=False)[0]

def plain_epochs(images, Y, train_idx, valid_idx, arch, a, dev, stats, cudnn_benchmark, profile:int=0, compiled:bool=False)->dict:
    "A plain PyTorch loop over the GPU cache: train (gather, flip, normalize) + validate + F2 search, per epoch"
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = cudnn_benchmark, False
    bf16 = dev.type == 'cuda'
    g = torch.Generator(device='cpu').manual_seed(0)
    m = plain_model(arch, a.plain_model).to(dev).to(memory_format=torch.channels_last)
    if compiled:  # in place, as `train(compile=...)` does; from a clean slate, so that no earlier run's shapes make it dynamic
        torch._dynamo.reset(); m.compile(mode=a.compile_mode)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, **(dict(fused=True) if dev.type == 'cuda' else {}))
    lossf = torch.nn.BCEWithLogitsLoss()
    mean = torch.tensor(stats[0], device=dev).view(1, 3, 1, 1) * 255
    std = torch.tensor(stats[1], device=dev).view(1, 3, 1, 1) * 255
    Yd = torch.as_tensor(Y, device=dev)
    def batch(rows, flip=True):
        x = images[rows]                                   # (b, h, w, 3) uint8 on the device
        if flip:
            f = torch.rand(len(rows), device=dev) < 0.5
            x = torch.where(f.view(-1, 1, 1, 1), x.flip(2), x)
        x = x.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
        return (x.float() - mean) / std, Yd[rows]
    tr, va = torch.as_tensor(train_idx, device=dev), torch.as_tensor(valid_idx, device=dev)
    secs, tsecs, tl = [], [], Timeline(dev)
    mark = tl.mark if a.timeline else (lambda name: None)
    for ep in range(a.epochs):
        sync(dev); t = time.perf_counter()
        if a.timeline: tl.start_epoch()
        m.train()
        order = tr[torch.randperm(len(tr), generator=g).to(dev)]
        for i in range(0, len(order) - a.bs + 1, a.bs):
            mark('batch')
            x, y = batch(order[i:i + a.bs])
            mark('gather')
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16): loss = lossf(m(x).float(), y)
            mark('loss')
            opt.zero_grad(set_to_none=True); loss.backward()
            mark('backward')
            opt.step()
            mark('step')
        if a.timeline: tl.end_epoch()
        sync(dev); tsecs.append(time.perf_counter() - t)
        m.eval(); preds = []
        with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            for i in range(0, len(va), a.bs):
                x, _ = batch(va[i:i + a.bs], flip=False); preds.append(torch.sigmoid(m(x).float()))
        p = torch.cat(preds).cpu().numpy()                 # one transfer per epoch
        best_thresholds(p, Y[valid_idx], warn=False)
        sync(dev); secs.append(time.perf_counter() - t)
    n = len(train_idx) // a.bs * a.bs + len(valid_idx)
    # ceiling: the same training step on one static batch
    x, y = batch(tr[:a.bs]); iters = max(3, min(30, len(tr) // a.bs))
    for k in range(2 * iters):
        if k == iters: sync(dev); t = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16): loss = lossf(m(x).float(), y)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    sync(dev); ceiling = a.bs * iters / (time.perf_counter() - t)
    # inference from the cache, bf16 (the first pass tunes the kernels for the new batch shapes)
    with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
        for rep in range(2):
            sync(dev); t = time.perf_counter()
            for i in range(0, len(va), 2 * a.bs): torch.sigmoid(m(batch(va[i:i + 2 * a.bs], flip=False)[0]).float())
            sync(dev); infer = len(va) / (time.perf_counter() - t)
    prof = None
    if profile:  # `profile` training steps of the loop above, after one to warm the profiler up
        order = tr[torch.randperm(len(tr), generator=g).to(dev)]
        steps = [order[i:i + a.bs] for i in range(0, len(order) - a.bs + 1, a.bs)][:1 + profile]
        profile = min(profile, len(steps) - 1)
        def step(rows):
            x, y = batch(rows)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16): loss = lossf(m(x).float(), y)
            opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        m.train()
        with profiled(dev, profile) as p:
            for k, rows in enumerate(steps):
                step(rows)
                if k == len(steps) - 1: sync(dev); wall = time.perf_counter() - t
                p.step()
                if k == len(steps) - profile - 1: sync(dev); t = time.perf_counter()
        prof = profile_summary(p, profile, wall)
    del m, opt
    phases = dict(train_s=round(float(np.median(tsecs[1:])), 3), valid_s=round(float(np.median(np.subtract(secs, tsecs)[1:])), 3))
    return dict(epoch_s=float(np.median(secs[1:])), epoch_s_all=secs, images_per_epoch=n, img_s=n / float(np.median(secs[1:])), phases=phases,
                ceiling_train_img_s=ceiling, infer_cache_img_s=infer, profile=prof, timeline=tl.summary())

def print_profiles(arch:str, plain:dict|None, proj:dict|None, top:int=10):
    "Per-batch wall and kernel time of the two loops, and the kernels whose time differs most"
    for name, pr in (('plain', plain), ('project', proj)):
        if pr: print(f"{arch:12s} profile {name:8s} {pr['batches']} training batches: wall {pr['wall_ms']:.2f} ms/batch, "
                     f"{pr['on']} {pr['kernel_ms']:.2f} ms/batch ({pr['kernels']:.0f} a batch)", flush=True)
        calls = pr.get('runtime_calls') or {}
        if calls: print(f"{arch:12s} profile {name:8s} CUDA API calls a batch: " + ', '.join(
            f"{k} {v['calls']:.1f} ({v['cpu_ms']:.2f} ms)" for k, v in sorted(calls.items(), key=lambda kv: -kv[1]['cpu_ms'])[:8]), flush=True)
    if not (plain and proj): return
    names = set(plain['all_ms']) | set(proj['all_ms'])
    diff = sorted(names, key=lambda k: -abs(proj['all_ms'].get(k, 0) - plain['all_ms'].get(k, 0)))[:top]
    print(f"{arch:12s} profile: {pr['on']} whose ms/batch differ most (project - plain):", flush=True)
    for k in diff: print(f"    {proj['all_ms'].get(k, 0) - plain['all_ms'].get(k, 0):+8.3f}  {k[:100]}", flush=True)

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--n', type=int, default=12000, help='number of JPEG files')
    ap.add_argument('--img-size', type=int, default=500, help='side of the JPEG files')
    ap.add_argument('--size', type=int, default=224, help='training size')
    ap.add_argument('--bs', type=int, default=128)
    ap.add_argument('--epochs', type=int, default=4)
    ap.add_argument('--workers', type=int, default=None, help='processes building the cache (default: all CPUs)')
    ap.add_argument('--archs', nargs='+', default=['densenet121', 'resnet18'])
    ap.add_argument('--predict-n', type=int, default=4000, help='JPEGs tagged by `predict` for its images/s')
    ap.add_argument('--dir', default=None, help='where the JPEGs go (default: <temporary folder>/fashion_style_bench/jpeg<img-size>-n<n>)')
    ap.add_argument('--out', default=os.environ.get('OUT', '.'), help='folder of gpu_train_bench.json')
    ap.add_argument('--cudnn-benchmark', type=int, nargs='+', default=[0, 1], help='cudnn.benchmark settings to time (0/1)')
    ap.add_argument('--checkpoint-cost', action='store_true', help='also time the project without resume checkpoints, and with one written after every epoch')
    ap.add_argument('--checkpoint-foreground', action='store_true', help='also time the project with its resume checkpoints '
                    'written while training waits (not in a thread): a thread that slows training shows as this being faster')
    ap.add_argument('--progress', action='store_true', help="the project's runs with their progress bars on")
    ap.add_argument('--sync-count', action='store_true', help="count CUDA's synchronising calls in the project's epochs (after "
                    "the timed runs: a separate run, since the count slows each call down)")
    ap.add_argument('--profile', type=int, default=0, metavar='N', help="profile N training batches of the plain loop and of the "
                    "project (a separate 2-epoch run) and compare their kernels")
    ap.add_argument('--plain-model', choices=('project', 'timm'), default='project',
                    help="the plain loop's network: the project's own (timm body + fastai's head, the default) or timm's 13-output "
                         "classifier (runs 1-6 used it: a cheaper head than the project trains)")
    ap.add_argument('--timeline', action='store_true', help='where each training batch\'s time goes, in both loops: host time per '
                    'step of the batch (wall and CPU), the GPU\'s time per batch, garbage collections, threads (no profiler)')
    ap.add_argument('--gc-freeze', action='store_true', help='also time the project with the objects alive before `train` '
                    'frozen out of garbage collection (`gc.freeze()`)')
    ap.add_argument('--compile', nargs='+', default=[], metavar='ARCH', help='for these archs, also time both loops with the model '
                    'compiled (torch.compile in --compile-mode; the project with `compile=`); their first epoch, which compiles, '
                    'is left out of the rate as every first epoch is, and reported as `first_epoch_s`')
    ap.add_argument('--compile-mode', default='default', choices=('default', 'reduce-overhead', 'max-autotune'),
                    help="torch.compile's mode for --compile ('reduce-overhead': CUDA graphs)")
    ap.add_argument('--smoke', action='store_true', help='tiny, on the CPU: checks the code only')
    a = ap.parse_args()
    a.cudnn_benchmark = [bool(b) for b in a.cudnn_benchmark]
    if a.smoke: a.n, a.img_size, a.size, a.bs, a.epochs, a.predict_n, a.archs = 96, 64, 32, 16, 3, 24, ['resnet18']
    if not a.predict_n: print("predict timing skipped (--predict-n 0)")
    dev = torch.device('cuda' if torch.cuda.is_available() and not a.smoke else 'cpu')
    warnings.filterwarnings('ignore', message='no positive')
    import fastai, timm
    res = dict(machine=dict(gpu=torch.cuda.get_device_name(dev) if dev.type == 'cuda' else None, cpu=platform.processor(),
                            cpus=os.cpu_count(), torch=torch.__version__, fastai=fastai.__version__, timm=timm.__version__,
                            python=platform.python_version()), args=vars(a), archs={})
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    save = lambda: (out/'gpu_train_bench.json').write_text(json.dumps(res, indent=1, default=str))
    print(f"device: {res['machine']['gpu'] or 'CPU (smoke test: figures mean nothing)'}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"fastai {fastai.__version__}, timm {timm.__version__}", flush=True)
    seed_everything(0)
    dest = Path(a.dir) if a.dir else Path(tempfile.gettempdir())/'fashion_style_bench'/f'jpeg{a.img_size}-n{a.n}'
    t = time.perf_counter(); df = make_jpegs(dest, a.n, a.img_size)
    res['jpegs'] = dict(n=len(df), img_size=a.img_size, mb=sum(os.path.getsize(p) for p in df.path) / 1e6, made_s=time.perf_counter() - t)
    print(f"{len(df)} synthetic JPEGs {a.img_size} px ({res['jpegs']['mb']:.0f} MB) ready in {res['jpegs']['made_s']:.1f} s", flush=True)
    work = Path(tempfile.mkdtemp(prefix='gpu-train-bench-'))
    try:
        cache_dir = work/'cache'
        t = time.perf_counter()
        dls = fast_style_dls(df, size=a.size, bs=a.bs, device=dev, cache_dir=cache_dir, cache_device=dev, num_workers=a.workers,
                             draft=False, progress=False)
        build = time.perf_counter() - t
        res['cache'] = dict(build_s=build, build_img_s=len(df) / build, gb=dls.cache.nbytes / 1e9)
        print(f"cache build (decode + resize once, full decode): {build:.1f} s = {len(df) / build:.0f} images/s, "
              f"{dls.cache.nbytes / 1e9:.2f} GB", flush=True)
        images = dls.train.dataset.images
        Y = dls.train.dataset.labels.cpu().numpy()
        train_idx, valid_idx = dls.splits
        stats = dls.cache_kwargs['stats']
        for arch in a.archs:
            r = res['archs'][arch] = {}
            kinds = [(f'{k}_bench{int(b)}', k, b) for b in a.cudnn_benchmark for k in ('plain', 'project')]
            if a.checkpoint_cost:
                kinds += [(f'project_bench{int(a.cudnn_benchmark[-1])}_{k}', k, a.cudnn_benchmark[-1]) for k in ('nockpt', 'everyckpt')]
            if a.checkpoint_foreground: kinds.append((f'project_bench{int(a.cudnn_benchmark[-1])}_fgckpt', 'fgckpt', a.cudnn_benchmark[-1]))
            if a.sync_count: kinds.append((f'project_bench{int(a.cudnn_benchmark[-1])}_syncs', 'syncs', a.cudnn_benchmark[-1]))
            if a.gc_freeze: kinds.append((f'project_bench{int(a.cudnn_benchmark[-1])}_gcfreeze', 'gcfreeze', a.cudnn_benchmark[-1]))
            if a.profile: kinds.append((f'project_bench{int(a.cudnn_benchmark[-1])}_profile', 'profile', a.cudnn_benchmark[-1]))
            if arch in a.compile:
                b = a.cudnn_benchmark[-1]
                kinds += [(f'plain_bench{int(b)}_compiled', 'plain_compiled', b), (f'project_bench{int(b)}_compiled', 'compiled', b)]
            for kind, k, b in kinds:
                fn = ((lambda: plain_epochs(images, Y, train_idx, valid_idx, arch, a, dev, stats, b, compiled=k == 'plain_compiled',
                                            profile=a.profile if b == a.cudnn_benchmark[-1] and k == 'plain' else 0))
                      if k in ('plain', 'plain_compiled') else
                      (lambda: project_epochs(dest/'train.txt', dest/'images', arch, a, dev, cache_dir, work/'runs', b,
                                              **(dict(checkpoint_every=0, name=f'{arch}-nockpt') if k == 'nockpt' else
                                                 dict(checkpoint_min_s=0, name=f'{arch}-everyckpt') if k == 'everyckpt' else
                                                 dict(ckpt_foreground=True, checkpoint_min_s=0, name=f'{arch}-fgckpt') if k == 'fgckpt' else
                                                 dict(sync_count=True, name=f'{arch}-syncs') if k == 'syncs' else
                                                 dict(gc_freeze=True, name=f'{arch}-gcfreeze') if k == 'gcfreeze' else
                                                 dict(profile=a.profile, name=f'{arch}-profile') if k == 'profile' else
                                                 dict(compile=a.compile_mode, name=f'{arch}-compiled') if k == 'compiled' else {}))))
                try:
                    if dev.type == 'cuda': torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats(dev)
                    try: r[kind] = fn()
                    finally:
                        if 'compiled' in k: torch._dynamo.reset()  # CUDA graphs' memory pools and compiled code go with it
                    if dev.type == 'cuda': r[kind]['gpu_peak_gb'] = torch.cuda.max_memory_allocated(dev) / 1e9
                    r[kind]['first_epoch_s'] = float(r[kind]['epoch_s_all'][0])  # kernel tuning, and compiling where asked
                    if r[kind].get('cuda_syncs'):
                        cs = pd.DataFrame(r[kind]['cuda_syncs']).groupby('phase')[['syncs', 'batches']].sum()
                        print(f"{arch:12s} {kind:22s} CUDA synchronising calls per batch (epochs 2+): "
                              f"{(cs.syncs / cs.batches).round(3).to_dict()}", flush=True)
                    print_timeline(arch, kind, r[kind].get('timeline'))
                    if k == 'profile': print_profiles(arch, r.get(f'plain_bench{int(b)}', {}).get('profile'), r[kind]['profile']); continue
                    print(f"{arch:12s} {kind:22s} epoch {r[kind]['epoch_s']:7.2f} s = {r[kind]['img_s']:8.0f} images/s "
                          f"(whole epoch: train + valid + end-of-epoch work, {r[kind]['images_per_epoch']} images; epochs {[round(s, 2) for s in r[kind]['epoch_s_all']]}; "
                          f"median phases {r[kind]['phases']})", flush=True)
                except Exception as e:
                    import traceback; traceback.print_exc()
                    r[kind] = dict(error=repr(e)[:500]); print(f"{arch:12s} {kind:22s} failed: {e!r}"[:400], flush=True)
                save()
            for b in a.cudnn_benchmark:
                pl, pr = r.get(f'plain_bench{int(b)}', {}), r.get(f'project_bench{int(b)}', {})
                if 'img_s' in pl and 'img_s' in pr:
                    r[f'ratio_bench{int(b)}'] = pr['img_s'] / pl['img_s']
                    print(f"{arch:12s} cudnn.benchmark={b}: project / plain = {pr['img_s'] / pl['img_s']:.3f}; plain training "
                          f"ceiling (static batch) {pl['ceiling_train_img_s']:.0f} images/s; plain bf16 inference from the "
                          f"cache {pl['infer_cache_img_s']:.0f} images/s", flush=True)
            b = int(a.cudnn_benchmark[-1])
            pc, pl, plc = (r.get(k, {}) for k in (f'project_bench{b}_compiled', f'plain_bench{b}', f'plain_bench{b}_compiled'))
            if 'img_s' in pc and 'img_s' in pl:
                r[f'ratio_bench{b}_compiled'] = pc['img_s'] / pl['img_s']
                print(f"{arch:12s} compiled project / eager plain = {pc['img_s'] / pl['img_s']:.3f}"
                      + (f"; compiled project / compiled plain = {pc['img_s'] / plc['img_s']:.3f}" if 'img_s' in plc else '')
                      + f"; first epoch (compiling) {pc['first_epoch_s']:.1f} s, against {r.get(f'project_bench{b}', {}).get('first_epoch_s', float('nan')):.1f} s eager", flush=True)
            # the projection uses eager runs: compiling costs minutes per stage, which an epoch's rate leaves out
            done = [v for k, v in r.items() if k.startswith('project') and not k.endswith(('nockpt', 'everyckpt', 'fgckpt', 'syncs', 'profile', 'gcfreeze', 'compiled')) and 'img_s' in v]
            if done:
                best = max(done, key=lambda v: v['img_s'])
                r['project'] = best
                proj = PAPER_EPOCHS * PAPER_IMAGES / best['img_s'] + PAPER_IMAGES / res['cache']['build_img_s']
                r['paper_recipe_projected_min'] = proj / 60
                print(f"{arch:12s} the paper's recipe (31 epochs x 54,908 images + one cache build) at the faster project "
                      f"rate: {proj / 60:.1f} min", flush=True)
                # predict on the JPEG files (the local engine: decode in worker processes, the model on the device)
                if a.predict_n: 
                  try:
                    from fashion_style.inference import predict
                    paths = list(df.path[:a.predict_n]); w = min(16, os.cpu_count())
                    probs = {}
                    for decode, key in (('pil', 'predict_jpeg_img_s'), ('device', 'predict_jpeg_device_decode_img_s')):
                        kw = dict(bs=2 * a.bs, device=str(dev), num_workers=w, quiet=True, decode=decode)
                        predict(paths[:2 * a.bs], r['project']['run'], **kw)
                        sync(dev); t = time.perf_counter()
                        probs[decode] = predict(paths, r['project']['run'], **kw)
                        sync(dev); r[key] = len(paths) / (time.perf_counter() - t)
                        print(f"{arch:12s} predict on {len(paths)} JPEG files ({w} workers), JPEGs decoded by {decode}: "
                              f"{r[key]:.0f} images/s", flush=True)
                    # the two decoders must give the same images and nearly the same probabilities (nvJPEG vs libjpeg-turbo)
                    same = probs['pil'].image_id.tolist() == probs['device'].image_id.tolist()
                    cols = [c for c in probs['pil'].columns if c in STYLES]
                    r['predict_decoders_max_abs_diff'] = float(np.abs(probs['pil'][cols].values - probs['device'][cols].values).max()) if same else None
                    print(f"{arch:12s} predict, device vs PIL decoding: same images {same}, largest probability "
                          f"difference {r['predict_decoders_max_abs_diff']}", flush=True)
                  except Exception as e: r['predict_error'] = repr(e)[:400]; print(f"predict failed: {e!r}", flush=True)
            save()
        res['host_peak_rss_gb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        print(f"peak host RSS of this process: {res['host_peak_rss_gb']:.2f} GB", flush=True)
        save()
    finally: shutil.rmtree(work, ignore_errors=True)

if __name__ == '__main__': main()
