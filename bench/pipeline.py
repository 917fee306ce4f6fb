"""Wall time and peak memory per stage of the demo pipeline, and how they grow when the number of images doubles.
Usage: python bench/pipeline.py [--n_train 150 --n_val 50 --factor 2 --cls_epochs 8 --seg_epochs 30 --keep DIR]
Each size runs `aepsl_demo` in a fresh process (so every peak is its own); the table compares the per-stage
seconds (target: about ×factor) and peak RSS (target: flat)."""
import argparse, json, os, platform, subprocess, sys, tempfile, time
from pathlib import Path

def machine():
    import torch
    cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), platform.processor())
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}"

def run(out, n_train, n_val, cls_epochs, seg_epochs):
    f = Path(out).parent / 'demo_cli.py'
    f.write_text('from aepsl.cli import aepsl_demo\naepsl_demo()\n')
    t = time.time()
    r = subprocess.run([sys.executable, f, '--out', out, '--n_train', str(n_train), '--n_val', str(n_val),
                        '--cls_epochs', str(cls_epochs), '--seg_epochs', str(seg_epochs), '--quiet'], capture_output=True, text=True)
    if r.returncode: sys.exit(f'run failed:\n{r.stderr[-3000:]}')
    m = json.loads((Path(out) / 'metrics.json').read_text())
    return m, time.time() - t

if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--n_train', type=int, default=150); ap.add_argument('--n_val', type=int, default=50)
    ap.add_argument('--factor', type=int, default=2); ap.add_argument('--cls_epochs', type=int, default=8)
    ap.add_argument('--seg_epochs', type=int, default=30); ap.add_argument('--keep', default=None)
    a = ap.parse_args()
    root = Path(a.keep or tempfile.mkdtemp(prefix='aepsl_bench_'))
    root.mkdir(parents=True, exist_ok=True)
    print(machine(), flush=True)
    res = []
    for k in (1, a.factor):
        n, v = a.n_train * k, a.n_val * k
        m, wall = run(root / f'n{n}', n, v, a.cls_epochs, a.seg_epochs)
        res.append((n, v, m, wall))
        print(f'{n} training + {v} val images: {wall:.0f} s wall (process), final mIoU {m.get("final_mIoU")}', flush=True)
    (n1, v1, m1, w1), (n2, v2, m2, w2) = res
    print(f'\n| stage | s ({n1}+{v1}) | s ({n2}+{v2}) | time ×{a.factor}? | peak RSS MB ({n1}) | peak RSS MB ({n2}) |')
    print('|---|---|---|---|---|---|')
    for s in m1['stages']:
        a1, a2 = m1['stages'][s], m2['stages'][s]
        print(f"| {s} | {a1['seconds']:.1f} | {a2['seconds']:.1f} | ×{a2['seconds'] / max(a1['seconds'], 1e-9):.2f} "
              f"| {a1['peak_rss_mb']:.0f} | {a2['peak_rss_mb']:.0f} |")
    t1, t2 = (sum(x['seconds'] for x in m['stages'].values()) for m in (m1, m2))
    p1, p2 = (max(x['peak_rss_mb'] for x in m['stages'].values()) for m in (m1, m2))
    print(f'| total | {t1:.1f} | {t2:.1f} | ×{t2 / t1:.2f} | {p1:.0f} (max) | {p2:.0f} (max) |')
    for n, v, m, _ in res:
        print(f'\nladder, {n}+{v} images:')
        for r in m['ladder']: print(f"  {r['rung']:14s} {r['mIoU']:6.2f}")
