#!/usr/bin/env python
"""Images/s of the two input pipelines on JPEG files: stock fastai (`data.style_dls`) and the uint8 cache
(`fastdata.fast_style_dls`), on the CPU; and, only where CUDA is available, training throughput on the GPU.

CPU part, at each `--sizes` (default 224 and 64):
- stock fastai: one epoch of `style_dls(...).train` (decode + resize + flip + collate + normalize), with
  `num_workers` 0 and 2 (`--workers`);
- the cache: the first build (decode + resize once, all CPUs, JPEG draft mode), the reuse of a built cache, then
  one epoch of `fast_style_dls(...).train` (gather + flip + normalize);
- the pixel difference that draft mode makes (against full decoding), in uint8 levels and normalized units.
GPU part (skipped with a message without CUDA; `--gpu-smoke` runs it on the CPU, tiny, to check the code):
densenet121 and resnet18 at 224 px, bf16 autocast, channels-last, fused AdamW: a plain PyTorch loop over the
cache loader (cache copied to the GPU), the plain loop on one static batch (the ceiling), fastai's Learner on the
same loaders (`to_bf16`, `OptimWrapper(AdamW fused)`; plain `Learner` and `models.style_learner`), fastai's
Learner with the cache left on the host (memory map, pinned, 2 batches prefetched), and with `--gpu-stock` stock
fastai on the JPEG files (densenet121, 16 workers).

The pictures are synthetic (procedurally drawn garments from `fashion_style.synth`, enlarged to `--img-size` with
pixel noise, saved as JPEG quality 90: about 45 kB at 400 px, 130 kB at 800 px); they are made once under `--dir`
and reused. Labels are random with the JD training set's class shares.
Run: `.venv/bin/python bench/dataload_bench.py --n 2000 --img-size 400` (on the GPU machine:
`--n 20000 --img-size 800 --sizes 224 --gpu-stock`).

With `--out`, the CPU figures also go to a JSON file; the published ones (`--n 800 --img-size 800`) are in
`bench/results/dataload_cpu.json` and `.log`, and on the docs' benchmarks page."""
import argparse, json, os, platform, shutil, sys, tempfile, time, warnings
from functools import partial
from multiprocessing import Pool
from pathlib import Path
import numpy as np, pandas as pd, torch
from PIL import Image
from fashion_style.core import STYLES, JD_N_TRAIN, JD_TRAIN_POSITIVES, data_path, seed_everything
from fashion_style.data import read_jd_labels, write_jd_labels, style_dls, _frame
from fashion_style.synth import draw_garment, sample_factors
from fashion_style.fastdata import fast_style_dls, load_resized, build_image_cache

def _draw(job):
    "One synthetic photo-like JPEG: a drawn garment enlarged to `img_size` with pixel noise"
    i, factors, img_size, seed, fname = job
    im = draw_garment(*factors, size=128, seed=(seed, i)).resize((img_size, img_size), Image.BICUBIC)
    a = np.asarray(im, dtype=np.int16) + np.random.default_rng((seed, i)).normal(0, 4, (img_size, img_size, 1)).astype(np.int16)
    Image.fromarray(a.clip(0, 255).astype(np.uint8)).save(fname, quality=90)

def make_jpegs(dest:Path, n:int, img_size:int, seed:int=0)->pd.DataFrame:
    "`n` JPEGs of `img_size` px in `dest/images` and their JD label file (made once, then reused)"
    stamp = dest/f'.complete-{n}-{img_size}-{seed}'
    if not stamp.exists():
        if dest.exists(): shutil.rmtree(dest)
        (dest/'images').mkdir(parents=True)
        f = sample_factors(n, seed)
        ids = [f'b{i:06d}' for i in range(n)]
        jobs = [(i, tuple(f.iloc[i]), img_size, seed, str(dest/'images'/f'{ids[i]}.jpg')) for i in range(n)]
        with Pool(os.cpu_count()) as p: p.map(_draw, jobs, chunksize=16)
        share = np.array([JD_TRAIN_POSITIVES[s] for s in STYLES]) / JD_N_TRAIN
        Y = (np.random.default_rng(seed).random((n, len(STYLES))) < share).astype(int)
        write_jd_labels(_frame(ids, [''] * n, Y, STYLES), dest/'train.txt')
        stamp.touch()
    return read_jd_labels(dest/'train.txt')

def sync(dev):
    if dev.type == 'cuda': torch.cuda.synchronize(dev)

def epoch_rate(dl, max_batches=None, dev=torch.device('cpu'))->tuple:
    "images/s of one pass over `dl` (at most `max_batches`), and the number of images"
    n, t = 0, time.perf_counter()
    for i, (x, y) in enumerate(dl):
        if max_batches is not None and i >= max_batches: break
        n += len(x)
    sync(dev)
    return n / (time.perf_counter() - t), n

def draft_difference(df, size, k=200)->dict:
    "Pixel difference of draft-mode decoding against full decoding on `k` images"
    d = np.concatenate([np.abs(load_resized(p, size).astype(np.int16) - load_resized(p, size, draft=False)).ravel()
                        for p in df.path[:k]])
    return dict(mean=d.mean(), p99=np.percentile(d, 99), max=int(d.max()), mean_norm=d.mean() / (255 * 0.226))

def cpu_part(df, a, cache_root)->dict:
    "The CPU figures, printed and returned per training size"
    out = {}
    for size in a.sizes:
        r = out[size] = dict(stock_img_s={}, cache_epoch_img_s=[])
        print(f"\n== {size} x {size} px, batch {a.bs}, {len(df)} images (train split {int(len(df)*0.8)})")
        for w in a.workers:
            dls = style_dls(df, size=size, bs=a.bs, num_workers=w, device='cpu')
            rate, n = epoch_rate(dls.train, a.max_batches)
            r['stock_img_s'][w] = rate
            print(f"stock fastai style_dls, num_workers={w}: {rate:8.1f} images/s  ({n} images, one epoch of train)")
        cdir = cache_root/f'{size}'
        shutil.rmtree(cdir, ignore_errors=True)
        t = time.perf_counter()
        c = build_image_cache(df.path, size, cdir, progress=False)
        dt = time.perf_counter() - t
        r.update(build_s=dt, build_img_s=len(df) / dt, cache_mb=c.nbytes / 1e6)
        print(f"cache build (draft, {os.cpu_count()} processes): {dt:6.2f} s = {len(df)/dt:8.1f} images/s  "
              f"({c.nbytes/1e6:.1f} MB)")
        t = time.perf_counter()
        dls = fast_style_dls(df, size=size, bs=a.bs, device='cpu', cache_dir=cdir, progress=False)
        print(f"cache reuse + fast_style_dls: {time.perf_counter() - t:6.2f} s (built now: {dls.cache.built})")
        for ep in range(2):
            rate, n = epoch_rate(dls.train, a.max_batches)
            r['cache_epoch_img_s'].append(rate)
            print(f"cache train epoch {ep + 1}: {rate:8.1f} images/s  ({n} images: gather + flip + normalize)")
        dd = r['draft_vs_full'] = {k: float(v) for k, v in draft_difference(df, size).items()}
        print(f"draft vs full decode ({min(200, len(df))} images): mean |diff| {dd['mean']:.2f} levels "
              f"({dd['mean_norm']:.3f} normalized units), p99 {dd['p99']:.0f}, max {dd['max']:.0f}")
    return out

def gpu_part(df, a, cache_root, smoke=False):
    "Training images/s on the GPU: plain loop vs fastai Learner over the cache loaders, static ceiling, stock fastai"
    import timm
    from fastai.learner import Learner
    import fastai.callback.progress  # Learner.no_bar
    from fastai.callback.core import Callback, CancelValidException
    from fastai.optimizer import OptimWrapper
    from fastai.losses import BCEWithLogitsLossFlat
    from fashion_style.models import style_learner
    dev = torch.device('cuda' if torch.cuda.is_available() and not smoke else 'cpu')
    size, epochs, bs = (32, 2, 16) if smoke else (224, a.gpu_epochs, a.gpu_bs)
    if smoke: df = df.iloc[:80]
    torch.backends.cudnn.benchmark = True
    print(f"\n== GPU part on {torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'CPU (smoke test)'}: "
          f"{size} px, bf16 autocast (CUDA only), channels_last, fused AdamW; images/s of training (no validation), "
          f"median over epochs 2..{epochs}")
    dls = fast_style_dls(df, size=size, bs=bs, device=dev, cache_dir=cache_root/f'{size}', cache_device=dev,
                         channels_last=True, progress=False, shuffle_seed=0)
    host_dls = fast_style_dls(df, size=size, bs=bs, device=dev, cache_dir=cache_root/f'{size}', cache_device=None,
                              channels_last=True, progress=False, shuffle_seed=0, prefetch=2)
    print(f"cache on {dev}: {dls.cache.nbytes/1e9:.2f} GB, train {len(dls.train)} batches of {bs}")
    fused = dev.type == 'cuda'
    def model(arch):
        return timm.create_model(arch, num_classes=len(STYLES)).to(dev).to(memory_format=torch.channels_last)
    def plain(arch, static=False):
        m = model(arch); opt = torch.optim.AdamW(m.parameters(), lr=1e-3, fused=fused); lf = torch.nn.BCEWithLogitsLoss()
        sb = dls.train.one_batch()
        rates = []
        for ep in range(epochs):
            sync(dev); t, n = time.perf_counter(), 0
            for xb, yb in ([sb] * len(dls.train) if static else dls.train):
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == 'cuda'): loss = lf(m(xb).float(), yb)
                opt.zero_grad(set_to_none=True); loss.backward(); opt.step(); n += len(xb)
            sync(dev); rates.append(n / (time.perf_counter() - t))
        return np.median(rates[1:])
    class Timer(Callback):
        order = 100
        def before_fit(self): self.rates = []
        def before_train(self): sync(dev); self.t = time.perf_counter()
        def after_train(self): sync(dev); self.rates.append(len(self.dl) * bs / (time.perf_counter() - self.t))
        def before_validate(self): raise CancelValidException()
    def fastai_rate(learn):
        timer = Timer()
        learn.model.to(memory_format=torch.channels_last)
        if dev.type == 'cuda': learn.to_bf16()
        with learn.no_bar(), learn.no_logging(): learn.fit(epochs, 1e-3, cbs=[timer])
        return np.median(timer.rates[1:])
    fused_opt = partial(OptimWrapper, opt=partial(torch.optim.AdamW, fused=fused))
    for arch in a.archs:
        res = {}
        for name, f in [('plain loop, cache loader', lambda: plain(arch)),
                        ('plain loop, static batch (ceiling)', lambda: plain(arch, static=True)),
                        ('fastai Learner, cache loader, AdamW fused', lambda: fastai_rate(
                            Learner(dls, model(arch), loss_func=BCEWithLogitsLossFlat(), opt_func=fused_opt))),
                        ('fastai style_learner, cache loader, AdamW fused', lambda: fastai_rate(
                            style_learner(dls, arch, opt_func=fused_opt))),
                        ('fastai Learner, host memmap cache, prefetch 2', lambda: fastai_rate(
                            Learner(host_dls, model(arch), loss_func=BCEWithLogitsLossFlat(), opt_func=fused_opt)))]:
            try: res[name] = f(); print(f"{arch:12s} {name:48s} {res[name]:9.1f} images/s")
            except Exception as e: print(f"{arch:12s} {name:48s} failed: {e!r}"[:300])
            if dev.type == 'cuda': torch.cuda.empty_cache()
    if a.gpu_stock and not smoke:
        w = min(16, os.cpu_count())
        sdls = style_dls(df, size=size, bs=bs, num_workers=w, device=dev)
        learn = style_learner(sdls, 'densenet121', opt_func=fused_opt)
        print(f"{'densenet121':12s} {f'stock fastai on JPEGs, {w} workers, AdamW fused':48s} {fastai_rate(learn):9.1f} images/s")

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--n', type=int, default=2000, help='number of JPEG files')
    ap.add_argument('--img-size', type=int, default=400, help='side of the JPEG files in pixels')
    ap.add_argument('--sizes', type=int, nargs='+', default=[224, 64], help='training sizes')
    ap.add_argument('--workers', type=int, nargs='+', default=[0, 2], help='num_workers of the stock loader')
    ap.add_argument('--bs', type=int, default=64)
    ap.add_argument('--max-batches', type=int, default=None, help='stop each timed CPU pass after this many batches')
    ap.add_argument('--dir', default=None, help='where the JPEGs go (default: data/bench/jpeg<img-size>-n<n>)')
    ap.add_argument('--cache-dir', default=None, help='where the caches go (default: a temporary folder, removed)')
    ap.add_argument('--no-cpu', action='store_true', help='skip the CPU part')
    ap.add_argument('--gpu-smoke', action='store_true', help='run the GPU part on the CPU, tiny (checks the code)')
    ap.add_argument('--gpu-epochs', type=int, default=4)
    ap.add_argument('--gpu-bs', type=int, default=128)
    ap.add_argument('--gpu-stock', action='store_true', help='also time stock fastai on the JPEG files on the GPU')
    ap.add_argument('--archs', nargs='+', default=['densenet121', 'resnet18'])
    ap.add_argument('--out', default=None, help="JSON file for the CPU part's figures")
    a = ap.parse_args()
    import fastai, PIL
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    print(f"{platform.processor() or platform.machine()}, {cpus} CPUs usable (os.cpu_count {os.cpu_count()}), "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), fastai {fastai.__version__}, PIL {PIL.__version__}, "
          f"CUDA: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
    warnings.filterwarnings('ignore', message='no positive')  # rare styles in a small random sample
    seed_everything(0)
    dest = Path(a.dir) if a.dir else data_path()/'bench'/f'jpeg{a.img_size}-n{a.n}'
    t = time.perf_counter(); df = make_jpegs(dest, a.n, a.img_size)
    mb = sum(os.path.getsize(p) for p in df.path) / 1e6
    print(f"{a.n} synthetic JPEGs of {a.img_size} x {a.img_size} in {dest} ({mb:.0f} MB, ready in {time.perf_counter() - t:.1f} s)")
    cache_root = Path(a.cache_dir) if a.cache_dir else Path(tempfile.mkdtemp(prefix='fastdata-bench-'))
    try:
        if not a.no_cpu:
            res = dict(machine=dict(cpu=platform.processor() or platform.machine(), cpus=cpus, torch=torch.__version__,
                                    torch_threads=torch.get_num_threads(), python=platform.python_version(),
                                    load_avg=os.getloadavg()), args=vars(a), jpeg_mb=mb, cpu=cpu_part(df, a, cache_root))
            if a.out: Path(a.out).write_text(json.dumps(res, indent=1))
        if torch.cuda.is_available() or a.gpu_smoke: gpu_part(df, a, cache_root, smoke=a.gpu_smoke)
        else: print("\nGPU part skipped: CUDA is not available (run with --gpu-smoke to check its code on the CPU)")
    finally:
        if not a.cache_dir: shutil.rmtree(cache_root, ignore_errors=True)

if __name__ == '__main__': main()
