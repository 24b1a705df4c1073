"""Run the experiments behind the Table I / Table II analogues on the built-in SYNTHETIC data set.

    python nbs/experiments/run_experiments.py [--only table1|table2] [--runs BCE WBCE ...] [--seeds 0 1]
                                              [--out models/experiments] [--results nbs/experiments/results]

Each run is a normal `fashion_style.train.train` run folder under --out; runs already complete are skipped, so the
script can be stopped and started again. `collect` (also run after each run) gathers the finished run folders of
--out into the small CSV tables of --results (default nbs/experiments/results/, which the experiments notebook
shows). It merges: a run found under --out replaces its row (same run and seed) in the tables, and the rows of
runs not found there are kept, so `--runs BCE` (or a fresh --out) updates the BCE rows and leaves the others.
For tables of the new runs alone, point --results at an empty folder.
"""
import argparse, json, time, os
from pathlib import Path
import numpy as np, pandas as pd
import torch
from fashion_style.core import STYLES, STYLE_CODES, models_path
from fashion_style.train import train

HERE = Path(__file__).resolve().parent
RARE = ['sports', 'Japanese', 'British', 'national']  # the classes the paper oversampled

# A CPU-sized version of the recipe: resnet18 from scratch at 32 px (the synthetic pictures are 64 px).
BASE = dict(arch='resnet18', size=32, bs=64, epochs=8, lr=3e-3, num_workers=0)
N_TRAIN = 4812  # images in the training split of the default synthetic set (6000 x 0.8, stratified)

def oversampled_epochs(k, epochs=BASE['epochs']):
    "Epochs that give an oversampled run about the optimizer steps of a plain run, at least one (x100: 50 % more steps)"
    from fashion_style.data import read_jd_labels, oversample_idxs, split_train_valid
    from fashion_style.synth import make_synthetic
    dev = read_jd_labels(make_synthetic()/'train.txt', check_files=False)  # the set `train` uses (built if missing)
    tr, _ = split_train_valid(dev, seed=42)
    n = len(oversample_idxs(dev, RARE, k, tr))
    return max(1, round(epochs * len(tr) / n)), n

TABLE1 = {  # name: config changes (the paper's Table I columns, plus ASL)
    'BCE': dict(loss='bce'),
    'BCE+os10': dict(loss='bce', oversample=dict(classes=RARE, k=10)),
    'BCE+os20': dict(loss='bce', oversample=dict(classes=RARE, k=20)),
    'BCE+os100': dict(loss='bce', oversample=dict(classes=RARE, k=100)),
    'WBCE': dict(loss='wbce'),
    'soft-F2': dict(loss='softf2'),
    'focal': dict(loss='focal', loss_kwargs=dict(gamma=2.0)),
    'ASL': dict(loss='asl'),
}
SWA = dict(start_epoch=5, cycle_len=1, lr_max=1e-3, lr_min=1e-4)
# Table II is WBCE + per-class thresholds at each run's best epoch (by valid macro F2). SWA is not part of it: the same
# runs also average the weights from `start_epoch` on (those epochs follow SWA's cyclic lr, and the best epoch may be
# one of them), and the SWA checkpoint is reported beside the best one, as the paper's Fig. 4 comparison
TABLE2 = {  # architecture: config changes
    'resnet18': dict(loss='wbce', swa=SWA),
    'densenet121': dict(arch='densenet121', loss='wbce', swa=SWA),
}

def run(name, changes, seed, out):
    cfg = {**BASE, **changes, 'seed': seed, 'name': f'{name}-s{seed}', 'out': str(out)}
    if 'oversample' in changes:
        cfg['epochs'], _ = oversampled_epochs(changes['oversample']['k'])
    folder = out/cfg['name']
    if (folder/'results.json').exists(): return folder
    lock = out/f".{cfg['name']}.lock"
    try: fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # another process has this run
    except FileExistsError:
        if _alive(int(lock.read_text() or 0)): return None
        lock.unlink(); fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    os.write(fd, str(os.getpid()).encode()); os.close(fd)
    if folder.exists():  # an interrupted run: start it again
        import shutil; shutil.rmtree(folder)
    t = time.time()
    train(cfg, progress=False)
    print(f'{cfg["name"]}: {time.time() - t:.0f} s', flush=True)
    lock.unlink()
    return folder

def _alive(pid):
    try: os.kill(pid, 0); return pid > 0
    except OSError: return False

def bootstrap_sd(run, checkpoint='best', n=200, seed=0):
    "Spread of test macro F2 over bootstrap resamples of the test images (thresholds fixed from valid)"
    from fashion_style.data import read_jd_labels, label_matrix
    from fashion_style.metrics import f2_at
    from fashion_style.core import data_path
    sfx = '' if checkpoint == 'best' else '_' + checkpoint
    probs = pd.read_csv(run/f'test_probs{sfx}.csv', dtype={'image_id': str}).set_index('image_id')
    test = read_jd_labels(data_path()/'synthetic'/'test.txt', check_files=False).set_index('image_id').loc[probs.index]
    th = json.loads((run/'thresholds.json').read_text())[checkpoint]
    p, y, t = probs[STYLES].values, label_matrix(test.reset_index(), STYLES), np.array([th[s] for s in STYLES])
    rng = np.random.default_rng(seed)
    return float(np.std([f2_at(p[i], y[i], t).mean() for i in (rng.integers(0, len(p), len(p)) for _ in range(n))]))

def _run_row(f):
    "One row of runs.csv from a finished run folder's results.json `f`"
    name, seed = f.parent.name.rsplit('-s', 1)
    r = json.loads(f.read_text()); cfg = json.loads((f.parent/'config.json').read_text())['config']
    hist = pd.read_csv(f.parent/'history.csv')
    return dict(run=name, seed=int(seed), arch=cfg['arch'], loss=cfg['loss'], epochs=cfg['epochs'],
                minutes=round(hist.seconds.sum() / 60, 1), test_boot_sd=bootstrap_sd(f.parent), **r)

def _t2_rows(model, f):
    "Table II rows (test split, per checkpoint and threshold) from a run's f2.csv `f`"
    f2 = pd.read_csv(f); seed = f.parent.name.rsplit('-s', 1)[1]; rows = []
    for ck in f2.checkpoint.unique():
        for th in ('0.5', 'opt'):
            r = f2[(f2.checkpoint == ck) & (f2.split == 'test') & (f2.threshold.astype(str) == th)].iloc[0]
            rows.append(dict(model=model, seed=seed, checkpoint=ck, threshold=th,
                             **{c: r[s] for s, c in zip(STYLES, STYLE_CODES)}, MF2=r['MF2']))
    return rows

ORACLE_ROW = 'oracle (true probabilities)'

def collect(out, res=HERE/'results'):
    "Merge the finished runs of `out` into the CSV tables of `res`: their rows replace old rows of the same run and seed, other rows stay"
    res = Path(res); res.mkdir(parents=True, exist_ok=True)
    old = pd.read_csv(res/'runs.csv') if (res/'runs.csv').exists() else pd.DataFrame(columns=['run', 'seed'])
    new = pd.DataFrame([_run_row(f) for f in sorted(Path(out).glob('*/results.json'))])
    if new.empty: return old  # nothing finished under `out`: the tables stay as they are
    key = lambda df: df.run + '-s' + df.seed.astype(str)  # the run folder's name
    runs = pd.concat([old[~key(old).isin(key(new))], new], ignore_index=True) if len(old) else new
    runs = runs.iloc[np.argsort(key(runs).to_numpy(), kind='stable')]  # folder-name order, as a full collect gives
    runs.to_csv(res/'runs.csv', index=False, float_format='%.4f')
    oracle = json.loads((Path(os.environ.get('FASHION_STYLE_DATA', HERE.parent.parent/'data'))/'synthetic'/'oracle.json').read_text())
    # Table I: test macro F2 with thresholds from valid, mean and spread over seeds; recomputed for the runs found in
    # `out` only (runs.csv keeps 4 decimals, so recomputing the others could move their last digit)
    old1 = pd.read_csv(res/'table1.csv', index_col='run') if (res/'table1.csv').exists() else pd.DataFrame()
    t1 = runs[runs.run.isin(TABLE1) & runs.run.isin(new.run)].groupby('run').agg(
        seeds=('seed', 'count'), test_mf2_opt=('best_test_mf2_opt', 'mean'), seed_sd=('best_test_mf2_opt', 'std'),
        boot_sd=('test_boot_sd', 'mean'),
        test_mf2_05=('best_test_mf2_0.5', 'mean'), valid_mf2_opt=('best_valid_mf2_opt', 'mean'), epochs=('epochs', 'first'))
    t1['oracle'] = oracle['macro_f2']
    t1 = pd.concat([old1.drop(index=t1.index, errors='ignore'), t1]) if len(old1) else t1
    t1 = t1.reindex([*[k for k in TABLE1 if k in t1.index], *[k for k in t1.index if k not in TABLE1]])
    t1.to_csv(res/'table1.csv', float_format='%.4f')
    # Table II: per-class test F2 at 0.5 and at valid thresholds, per architecture, for the best checkpoint (Table II)
    # and the SWA one (Fig. 4) (first seed, whether that seed's rows come from `out` or were already in table2.csv)
    old2 = (pd.read_csv(res/'table2.csv', dtype={'seed': str, 'threshold': str}) if (res/'table2.csv').exists()
            else pd.DataFrame(columns=['model', 'seed']))
    old2 = old2[old2.model != ORACLE_ROW]
    t2 = []
    for a in [*TABLE2, *[m for m in old2.model.unique() if m not in TABLE2]]:
        found = {int(f.parent.name.rsplit('-s', 1)[1]): f for f in Path(out).glob(f'{a}-s*/f2.csv')
                 if (f.parent/'results.json').exists()}
        kept = old2[old2.model == a]
        seeds = sorted(set(found) | set(kept.seed.astype(int)))
        if not seeds: continue
        t2 += _t2_rows(a, found[seeds[0]]) if seeds[0] in found else kept[kept.seed.astype(int) == seeds[0]].to_dict('records')
    t2.append(dict(model=ORACLE_ROW, seed='-', checkpoint='-', threshold='opt',
                   **{c: oracle['per_class'][s] for s, c in zip(STYLES, STYLE_CODES)}, MF2=oracle['macro_f2']))
    pd.DataFrame(t2).to_csv(res/'table2.csv', index=False, float_format='%.3f')
    return runs

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--only', choices=['table1', 'table2'], default=None,
                   help='only the runs of Table I (losses, oversampling) or of Table II (architectures with WBCE; '
                        'each also trains SWA, reported beside it as Fig. 4)')
    p.add_argument('--runs', nargs='+', default=None, choices=[*TABLE1, *TABLE2], metavar='RUN',
                   help=f'only these runs (names are case-sensitive): {", ".join([*TABLE1, *TABLE2])}')
    p.add_argument('--seeds', type=int, nargs='+', default=[0], help='training seeds; every run is made once per seed (default: 0)')
    p.add_argument('--out', default=str(models_path()/'experiments'),
                   help='folder of the run folders; finished runs there are skipped (default: models/experiments)')
    p.add_argument('--results', default=str(HERE/'results'),
                   help='folder of runs.csv, table1.csv and table2.csv; the runs found under --out replace their rows '
                        'there and the other rows are kept (default: nbs/experiments/results)')
    p.add_argument('--threads', type=int, default=None, help="CPU threads for torch (default: torch's own choice)")
    p.add_argument('--reverse', action='store_true', help='go through the runs in reverse order (for a second process)')
    a = p.parse_args()
    if a.only and a.runs:
        other = [r for r in a.runs if r not in (TABLE1 if a.only == 'table1' else TABLE2)]
        if other: p.error(f'--runs {" ".join(other)}: not in {a.only} (--only {a.only} has {", ".join(TABLE1 if a.only == "table1" else TABLE2)})')
    if a.threads: torch.set_num_threads(a.threads)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    # cheapest and most-used first: BCE vs WBCE, then the Table II models, then the rest of Table I
    order = [('table1', 'BCE'), ('table1', 'WBCE'), ('table2', 'resnet18'), ('table2', 'densenet121'),
             *[('table1', k) for k in TABLE1 if k not in ('BCE', 'WBCE')]]
    if a.reverse: order = order[::-1]
    for seed in a.seeds:
        for table, name in order:
            if a.only in (None, table) and (a.runs is None or name in a.runs):
                run(name, (TABLE1 if table == 'table1' else TABLE2)[name], seed, out); collect(out, a.results)
    n = len(list(out.glob('*/results.json')))
    runs = collect(out, a.results)
    if not n: print(f'no finished runs under {out}: the tables in {a.results} were left as they were')
    else: print(f'{n} finished run(s) under {out} merged into {a.results} (runs.csv: {len(runs)} rows)\n{runs.to_string()}')
