#!/usr/bin/env python
"""What a training batch costs the host, measured on the CPU: the two things that decide whether a GPU stays busy.

1. **Host waits per batch.** `fashion_style.callback.hostsync.HostSyncs` follows the device tensors and counts the
   calls that would make the host wait for a GPU (device values read on the host, blocking host-to-device copies),
   in training and validation batches, for:
   - stock fastai: fastai's `Learner` with its own `Recorder`, loss trackers and progress bar (the project's model,
     data, weighted BCE, and torch's AdamW through fastai's `OptimWrapper`);
   - project: `fashion_style.train.train` (weighted BCE, oversampling, metrics, best-F2 checkpoints, SWA, history,
     progress bar on), with each pipeline.
2. **Host time per training batch** with a model that does almost no compute (flatten + one linear layer), so
   that the time is the loop's own: a plain PyTorch loop over the same uint8-cache batches (gather, flip,
   normalize), the project's `StyleLearner` with `train`'s metrics and loss trackers, and stock fastai's
   `Learner` (fastai's `Recorder`, `ParamScheduler` and `OptimWrapper`), each with torch's AdamW and the weighted
   BCE: the training phase's seconds / batches, median and
   fastest of epochs 2-N (the fastest is the steadier figure on a shared machine, where other work only adds time).
   On a GPU this is the host time each batch needs besides issuing the model's kernels.
3. **Torch operations per training batch** (`--op-arch`, default resnet18, the network of the project in both
   loops, at the benchmark's size and batch, bf16 autocast on the CPU, channels-last model): every operation torch
   dispatches (a `TorchDispatchMode` counts them), from one batch's start to the next's, so that the project's
   callbacks after the batch and the fetching of the next batch are counted as the plain loop's fetch is. On a
   GPU each operation that computes is a kernel launch; views (`view`, `transpose`, `detach`, ...) launch
   nothing and are counted apart. The project's `StyleLearner` (weighted BCE, `BF16Precision`, metrics, loss
   trackers, torch's AdamW through `StyleOptimWrapper`, fastai's two parameter groups) against a plain loop
   over the same batches, model and class weights (AdamW, one group).
4. **The 1cycle schedules per batch**: fastai's `combined_cos` (torch ops on small tensors) against the project's
   `models.host_combined_cos` (NumPy, the same values), for the learning rate of 2 parameter groups and the momentum.
5. **The optimizer's `hypers`**, which fastai's scheduler and `Recorder` read 5 times a training batch: fastai's
   `OptimWrapper` against the project's `train.StyleOptimWrapper` (the same dicts), for 2 AdamW parameter groups;
   and `set_hyper` of the learning rate (one per group) and the momentum, which `ParamScheduler` calls every batch.

Run: `python bench/host_sync_bench.py` (about a minute on two cores). Writes `--out` (JSON) if given. The data is
the project's built-in **synthetic** set (drawn garments), made in a temporary folder."""
import argparse, collections, json, os, platform, sys, tempfile, time, warnings
from pathlib import Path
import numpy as np, pandas as pd, torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from fastai.torch_core import trainable_params
from fastai.callback.core import Callback
from fastai.callback.schedule import *  # noqa: F401,F403  fit_one_cycle
from fastai.learner import Learner, Recorder
from fastai.callback.progress import ProgressCallback
from fashion_style.callback.hostsync import HostSyncs
from fashion_style.core import STYLES
from fashion_style.data import read_jd_labels, label_matrix
from fashion_style.fastdata import fast_style_dls
from fashion_style.losses import WeightedBCE
from fashion_style.metrics import F2Macro, F2Opt
from fashion_style.models import style_learner
from fashion_style.synth import make_synthetic
from fashion_style.train import train, style_opt_func


class TrainTimer(Callback):
    "Seconds of each epoch's training phase"
    order = 200
    def __init__(self): self.secs = []
    def before_train(self): self.t = time.perf_counter()
    def after_train(self): self.secs.append(time.perf_counter() - self.t)

def stock(learn):
    "Make a project learner stock fastai again: plain `Learner` class, fastai's `Recorder` (with its loss trackers) and progress bar"
    learn.__class__ = Learner
    rec = learn.recorder
    learn.remove_cb(rec); learn.add_cb(Recorder(add_time=rec.add_time, train_metrics=rec.train_metrics,
                                                valid_metrics=rec.valid_metrics, beta=rec.smooth_loss.beta))
    if hasattr(learn, 'progress'): learn.remove_cb(learn.progress)
    learn.add_cb(ProgressCallback())
    return learn

def learner(dls, pos, arch, stock_opt:bool=False):
    "The project's learner with torch's AdamW: through `StyleOptimWrapper`, or (`stock_opt`) fastai's `OptimWrapper`"
    from functools import partial
    from fastai.optimizer import OptimWrapper
    opt_func = partial(OptimWrapper, opt=partial(torch.optim.AdamW, foreach=True)) if stock_opt else style_opt_func('adamw', 'cpu')
    return style_learner(dls, arch, loss_func=WeightedBCE(pos), metrics=[F2Macro(), F2Opt()], opt_func=opt_func)

def waits(dls, pos, synth, tmp, a)->dict:
    "Host waits per training / validation batch: stock fastai vs the project's `train` on each pipeline"
    res = {}
    learn, hs = stock(learner(dls, pos, a.arch, stock_opt=True)), HostSyncs(skip=1)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore'); learn.fit_one_cycle(2, 1e-3, cbs=hs)
    res['stock fastai'] = dict(per_batch=hs.per_batch(), sites=hs.sites.drop(columns='code').to_dict('records'))
    for pipe in ('fastai', 'fast'):
        hs = HostSyncs()
        train(synth=synth, arch=a.arch, size=a.size, bs=a.bs, epochs=2, num_workers=0, pipeline=pipe, out=str(tmp/'runs'),
              cache_dir=str(tmp/'cache'), swa=dict(start_epoch=1, cycle_len=1), name=f'waits-{pipe}',
              oversample=dict(classes=['sports', 'national'], k=2), cbs=[hs], progress=True)
        res[f'project, pipeline={pipe}'] = dict(per_batch=hs.per_batch(), sites=hs.sites.drop(columns='code').to_dict('records'))
    return res

def tiny_model(size:int)->nn.Module:
    "A model with almost no compute, so that a batch's time is the loop's own: flatten + one linear layer"
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * size * size, len(STYLES)))

def plain_loop(dls, pos, a)->list:
    "Seconds per training epoch of a plain PyTorch loop over the same cache batches, model and optimizer"
    torch.manual_seed(0)
    m = tiny_model(a.size)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, foreach=True)
    lossf = torch.nn.BCEWithLogitsLoss(weight=torch.as_tensor(WeightedBCE(pos).class_weights, dtype=torch.float32))
    secs = []
    for ep in range(a.epochs):
        t = time.perf_counter(); m.train()
        for x, y in dls.train:
            loss = lossf(m(x), y); opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        secs.append(time.perf_counter() - t)
    return secs

def host_time(dls, pos, a)->dict:
    "Host time per training batch: plain loop, project `StyleLearner`, stock fastai `Learner`"
    n = len(dls.train)
    out = {'plain PyTorch loop': plain_loop(dls, pos, a)}
    for name, make in (('project StyleLearner', lambda: learner(dls, pos, a.arch)),
                       ('stock fastai Learner', lambda: stock(learner(dls, pos, a.arch, stock_opt=True)))):
        learn, timer = make(), TrainTimer()
        torch.manual_seed(0)
        learn.model, learn.splitter = tiny_model(a.size), trainable_params  # the same tiny model as the plain loop
        with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
            warnings.simplefilter('ignore'); learn.fit_one_cycle(a.epochs, 1e-3, cbs=timer)
        out[name] = timer.secs
    return {k: dict(batches=n, epoch_s=[round(s, 4) for s in v], ms_per_batch=round(1000 * float(np.median(v[1:])) / n, 3),
                    ms_per_batch_fastest=round(1000 * float(min(v[1:])) / n, 3)) for k, v in out.items()}

_VIEWS = {'view', 'transpose', 'detach', 'lift_fresh', 'alias', 'as_strided', '_reshape_alias', 't', 'expand', 'permute',
          'unsqueeze', 'squeeze', 'slice', 'select', 'split', 'unbind', '_unsafe_view', 'reshape'}  # metadata only: no kernel

class _Count(TorchDispatchMode):
    "Count the operations torch dispatches while active"
    def __init__(self): super().__init__(); self.ops = collections.Counter()
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func.overloadpacket.__name__)] += 1
        return func(*args, **(kwargs or {}))

class _CountBatch(Callback):
    "The operations from the start of training batch `at` of the second epoch to the start of the next"
    order = -1000  # first at `before_batch`: the next batch's own work is left out, this one's all in
    def __init__(self, at:int=2): self.at, self.mode, self.ops = at, None, None
    def before_batch(self):
        if self.mode is not None:
            self.mode.__exit__(None, None, None); self.ops, self.mode = self.mode.ops, None
        if self.training and self.epoch == 1 and self.iter == self.at: self.mode = _Count(); self.mode.__enter__()

def op_counts(dls, pos, a)->dict:
    "Torch operations dispatched per training batch: the project's `StyleLearner` and a plain loop, same network and batches"
    from fashion_style.train import BF16Precision
    torch.manual_seed(0)
    learn = learner(dls, pos, a.op_arch)
    learn.add_cb(BF16Precision()); learn.model.to(memory_format=torch.channels_last)
    cb = _CountBatch()
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        warnings.simplefilter('ignore'); learn.fit_one_cycle(2, 1e-3, cbs=cb)
    m = learn.model.train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, foreach=True)
    lossf = torch.nn.BCEWithLogitsLoss(weight=torch.as_tensor(WeightedBCE(pos).class_weights, dtype=torch.float32))
    it = iter(dls.train)
    def step():
        x, y = next(it)
        with torch.autocast('cpu', dtype=torch.bfloat16): loss = lossf(m(x).float(), y)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    for _ in range(2): step()  # the optimizer's state made
    with _Count() as c: step()
    out = {}
    for name, ops in (('plain PyTorch loop', c.ops), ('project StyleLearner', cb.ops)):
        views = sum(n for k, n in ops.items() if k in _VIEWS)
        out[name] = dict(ops=sum(ops.values()), compute_ops=sum(ops.values()) - views, by_op=dict(sorted(ops.items())))
    diff = collections.Counter(cb.ops); diff.subtract(c.ops)
    out['project minus plain'] = {k: v for k, v in sorted(diff.items(), key=lambda kv: (-abs(kv[1]), kv[0])) if v}
    return out

def schedules()->dict:
    "Milliseconds per batch to compute the learning rate (2 parameter groups) and momentum of `fit_one_cycle`"
    import timeit
    from fastai.callback.schedule import combined_cos
    from fashion_style.models import host_combined_cos
    lr, out = np.array([1e-5, 1e-3]), {}
    for name, fn in (('fastai combined_cos', combined_cos), ('project host_combined_cos', host_combined_cos)):
        f, g = fn(0.25, lr / 25, lr, lr / 1e5), fn(0.25, 0.95, 0.85, 0.95)
        out[name] = round(min(timeit.repeat(lambda: (f(0.37), g(0.37)), number=2000, repeat=5)) / 2000 * 1e3, 4)
    return out

def hypers()->dict:
    "Milliseconds per read of the optimizer's `hypers` (2 AdamW groups), which fastai's loop makes 5 times a training batch"
    import timeit
    from functools import partial
    from fastai.optimizer import OptimWrapper
    from fashion_style.train import StyleOptimWrapper
    out = {}
    for cls in (OptimWrapper, StyleOptimWrapper):
        o = cls([list(nn.Linear(3, 2).parameters()), list(nn.Linear(2, 1).parameters())], opt=partial(torch.optim.AdamW, foreach=True))
        out[f'{cls.__module__.split(".")[0]} {cls.__name__}'] = round(min(timeit.repeat(lambda: o.hypers, number=2000, repeat=5)) / 2000 * 1e3, 4)
    return out

def set_hypers()->dict:
    "Milliseconds to set the lr (one per group, 2 AdamW groups) and the momentum: what `ParamScheduler` does each training batch"
    import timeit
    from functools import partial
    from fastai.optimizer import OptimWrapper
    from fashion_style.train import StyleOptimWrapper
    out, lr = {}, np.array([1e-5, 1e-3])
    for cls in (OptimWrapper, StyleOptimWrapper):
        o = cls([list(nn.Linear(3, 2).parameters()), list(nn.Linear(2, 1).parameters())], opt=partial(torch.optim.AdamW, foreach=True))
        f = lambda: (o.set_hyper('lr', lr), o.set_hyper('mom', 0.9))
        out[f'{cls.__module__.split(".")[0]} {cls.__name__}'] = round(min(timeit.repeat(f, number=2000, repeat=5)) / 2000 * 1e3, 4)
    return out

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--arch', default='test_resnet'); p.add_argument('--op-arch', default='resnet18', help='network of the operation count')
    p.add_argument('--size', type=int, default=32)
    p.add_argument('--bs', type=int, default=32); p.add_argument('--epochs', type=int, default=12)
    p.add_argument('--n', type=int, default=2000, help='synthetic development images')
    p.add_argument('--out', default=None, help='JSON file for the results')
    a = p.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        synth = dict(dest=str(tmp/'synth'), n_dev=a.n, n_test=100, size=a.size)
        df = read_jd_labels(make_synthetic(**synth)/'train.txt')
        dls = fast_style_dls(df, size=a.size, bs=a.bs, device='cpu', cache_dir=tmp/'cache', shuffle_seed=0, progress=False)
        pos = label_matrix(df, STYLES).sum(0)
        res = dict(machine=dict(cpu=platform.processor() or platform.machine(), cores=os.cpu_count(), torch_threads=1,
                                python=platform.python_version(), torch=torch.__version__),
                   args=vars(a), waits=waits(dls, pos, synth, tmp, a), host_time=host_time(dls, pos, a), op_counts=op_counts(dls, pos, a), schedules_ms=schedules(),
                   hypers_ms=hypers(), set_hyper_ms=set_hypers())
    print(f"\nHost waits per batch (HostSyncs), {a.arch} at {a.size} px, batch {a.bs}:")
    for k, v in res['waits'].items(): print(f"  {k:32s} train {v['per_batch'].get('train', 0):.2f}  valid {v['per_batch'].get('valid', 0):.2f}")
    print(f"\nHost time per training batch, flatten + linear at {a.size} px, batch {a.bs}, 1 thread (epochs 2-{a.epochs}: median, fastest):")
    for k, v in res['host_time'].items(): print(f"  {k:32s} {v['ms_per_batch']:.3f} ms  {v['ms_per_batch_fastest']:.3f} ms")
    oc = res['op_counts']
    print(f"\nTorch operations per training batch, {a.op_arch} at {a.size} px, batch {a.bs}, bf16 autocast, channels-last model (all / computing):")
    for k in ('plain PyTorch loop', 'project StyleLearner'): print(f"  {k:32s} {oc[k]['ops']:5d}  {oc[k]['compute_ops']:5d}")
    print("  project minus plain, by operation: " + ', '.join(f"{k} {v:+d}" for k, v in oc['project minus plain'].items()))
    print("\nLearning-rate and momentum schedules of fit_one_cycle, per batch (fastest of 5 x 2,000 calls):")
    for k, v in res['schedules_ms'].items(): print(f"  {k:32s} {v:.4f} ms")
    print("\nThe optimizer's hypers (2 AdamW groups), per read, 5 reads a training batch (fastest of 5 x 2,000 calls):")
    for k, v in res['hypers_ms'].items(): print(f"  {k:32s} {v:.4f} ms")
    print("\nSetting the lr (2 groups) and the momentum, as fastai's ParamScheduler does each training batch (fastest of 5 x 2,000 calls):")
    for k, v in res['set_hyper_ms'].items(): print(f"  {k:32s} {v:.4f} ms")
    if a.out: Path(a.out).write_text(json.dumps(res, indent=1, default=str))

if __name__ == '__main__': main()
