#!/usr/bin/env python
"""Times the per-class threshold search of eq. (1) (`fashion_style.metrics.best_thresholds`).

Prints: the vectorized search on 13 classes x 1,000,000 outputs; the brute force (every output value of every
class tried in turn, O(N^2) per class) and the vectorized search on the same small input, checked equal;
and the brute force's time extrapolated to the large size. Outputs are simulated (synthetic scores whose
class balance follows the JD training set), float32.
Run: `.venv/bin/python bench/threshold_bench.py` (or `make bench`)."""
import argparse, json, platform, time
from pathlib import Path
import numpy as np
from fashion_style.core import JD_N_TRAIN, JD_TRAIN_POSITIVES
from fashion_style.metrics import best_thresholds, best_thresholds_brute

def simulated_outputs(n, seed=0, quantize=None):
    "Synthetic (probs float32, targets int8) of shape (n, 13) with the JD class balance"
    rng = np.random.default_rng(seed)
    prevalence = np.array(list(JD_TRAIN_POSITIVES.values())) / JD_N_TRAIN
    targets = (rng.random((n, 13)) < prevalence).astype(np.int8)
    logits = 2.5 * targets - 1.5 + rng.normal(0, 1, (n, 13)) + np.log(prevalence / (1 - prevalence))
    probs = (1 / (1 + np.exp(-logits))).astype(np.float32)
    if quantize: probs = (np.round(probs * quantize) / quantize).astype(np.float32)
    return probs, targets

def best_time(f, repeats):
    "Fastest of `repeats` calls of `f` in seconds, and its last result"
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter(); res = f(); times.append(time.perf_counter() - t0)
    return min(times), res

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--n', type=int, default=1_000_000, help='outputs per class for the vectorized search')
    ap.add_argument('--n_small', type=int, default=2_000, help='outputs per class for the brute force')
    ap.add_argument('--repeats', type=int, default=3, help='timed repeats (the fastest is reported)')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--out', default=None, help='JSON file for the figures')
    a = ap.parse_args()
    res = dict(machine=dict(cpu=platform.processor() or platform.machine(), numpy=np.__version__,
                            python=platform.python_version()), args=vars(a), small={})
    print(f"numpy {np.__version__}, {platform.processor() or platform.machine()}, best of {a.repeats} runs")

    probs, targets = simulated_outputs(a.n, a.seed)
    t_big, (th, f) = best_time(lambda: best_thresholds(probs, targets), a.repeats)
    print(f"vectorized search, 13 x {a.n:,} outputs: {t_big:.3f} s  (macro F2 at the thresholds {f.mean():.4f})")
    res['vectorized_s'] = t_big

    for quantize, what in [(None, 'continuous'), (20, 'quantized to 1/20: heavy ties')]:
        sp, st = simulated_outputs(a.n_small, a.seed + 1, quantize)
        t_brute, (th_b, f_b) = best_time(lambda: best_thresholds_brute(sp, st), 1)
        t_vec, (th_v, f_v) = best_time(lambda: best_thresholds(sp, st), a.repeats)
        same = np.array_equal(th_b, th_v) and np.array_equal(f_b, f_v)
        print(f"13 x {a.n_small:,} outputs ({what}): brute force {t_brute:.3f} s, vectorized {t_vec*1e3:.2f} ms, "
              f"speed-up {t_brute/t_vec:,.0f}x, equal: {same}")
        if not same: raise SystemExit("MISMATCH between brute force and vectorized search")
        res['small'][what] = dict(brute_s=t_brute, vectorized_s=t_vec, equal=bool(same))
        if quantize is None: t_brute_cont = t_brute
    est = t_brute_cont * (a.n / a.n_small) ** 2
    print(f"brute force at 13 x {a.n:,} (extrapolated as N^2 from {a.n_small:,}, not measured): "
          f"about {est:,.0f} s = {est/3600:,.0f} h")
    if a.out: Path(a.out).write_text(json.dumps(dict(res, brute_extrapolated_s=est), indent=1))

if __name__ == '__main__': main()
