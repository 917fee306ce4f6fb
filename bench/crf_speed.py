"""DenseCRF speed on VOC-size images: a plain loop of 21-label pydensecrf calls against `aepsl.crf.crf_batch` with 1 and
2 worker processes, with and without the restriction to the labels each image can hold (background + its classes).

    python bench/crf_speed.py [--n 16] [--runs 3]   (writes bench/results/crf_speed.md)

Synthetic inputs: smooth random 375×500 images and random softmax probabilities over 21 classes; each image holds
1 or 2 foreground classes, as VOC images do on average (~1.5). Timing does not depend on the content.
"""
import argparse, os, platform, subprocess, tempfile, time
from pathlib import Path
import numpy as np
from scipy import ndimage as ndi

def machine():
    try: cpu = next(l.split(':', 1)[1].strip() for l in subprocess.run(['lscpu'], capture_output=True, text=True).stdout.splitlines() if l.startswith('Model name'))
    except Exception: cpu = platform.processor()
    import pydensecrf
    return f"{cpu}; {os.cpu_count()} CPUs; python {platform.python_version()}; load average {os.getloadavg()[0]:.1f} at start"

def make_inputs(n, h=375, w=500, c=21, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        img = np.clip(ndi.gaussian_filter(rng.uniform(0, 255, (h, w, 3)), (6, 6, 0)) * 3 - 255, 0, 255).astype(np.uint8)
        logits = ndi.gaussian_filter(rng.normal(0, 1, (c, h // 8, w // 8)), (0, 2, 2)) * 8
        logits = ndi.zoom(logits, (1, h / (h // 8), w / (w // 8)), order=1)[:, :h, :w]
        p = np.exp(logits - logits.max(0)); p /= p.sum(0)
        classes = sorted(rng.choice(np.arange(1, c), rng.integers(1, 3), replace=False).tolist())
        out.append((f'img{k:03d}', img, p.astype(np.float32), [0] + classes))
    return out

def plain_loop(inputs, p):
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax
    for _, img, probs, _ in inputs:
        C, H, W = probs.shape
        d = dcrf.DenseCRF2D(W, H, C)
        d.setUnaryEnergy(unary_from_softmax(probs))
        d.addPairwiseGaussian(sxy=p['gauss_sxy'], compat=p['gauss_compat'])
        d.addPairwiseBilateral(sxy=p['bilateral_sxy'], srgb=p['bilateral_srgb'], rgbim=img, compat=p['bilateral_compat'])
        np.array(d.inference(p['n_iter'])).reshape(C, H, W).argmax(0)

def one_run(inputs, n):
    "Wall seconds of the plain loop and of crf_batch's four variants, and the CRF seconds per image inside the workers."
    from aepsl.crf import crf_batch, PRESETS
    rows = []
    t = time.perf_counter(); plain_loop(inputs, PRESETS['deeplab']); base = time.perf_counter() - t
    rows.append(('plain loop, pydensecrf, 21 labels', base, base / n))
    with tempfile.TemporaryDirectory() as d:
        for restrict in (False, True):
            for workers in (1, 2):
                jobs = ((i, img, p, lab if restrict else None) for i, img, p, lab in inputs)
                t = time.perf_counter()
                times = crf_batch(jobs, Path(d) / f'{restrict}{workers}', 'deeplab', workers=workers)
                rows.append((f"crf_batch, {workers} worker{'s' if workers > 1 else ''}, {'restricted' if restrict else '21 labels'}",
                             time.perf_counter() - t, float(np.mean(list(times.values())))))
    return rows

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--n', type=int, default=16, help='images (default 16: a few images time mostly the pool start-up)')
    ap.add_argument('--runs', type=int, default=3, help='runs; every column is the median over them (default 3)')
    ap.add_argument('--out', default=str(Path(__file__).resolve().parent / 'results' / 'crf_speed.md'), help='the table, in markdown')
    a = ap.parse_args()
    from aepsl.crf import PRESETS
    head = [machine(), f"{a.n} images 375×500, 21 classes, preset deeplab ({PRESETS['deeplab']}); "
            f"labels per restricted image: {[len(x[3]) for x in make_inputs(a.n)]}"]
    print(*head, sep='\n', flush=True)
    inputs = make_inputs(a.n)
    runs = [one_run(inputs, a.n) for _ in range(a.runs)]
    med = lambda k, j: float(np.median([r[k][j] for r in runs]))
    names = [n for n, _, _ in runs[0]]
    base = med(0, 1)
    one = {kind: med(k, 1) for k, n in enumerate(names) for kind in ('21 labels', 'restricted') if n.endswith(kind) and '1 worker,' in n}
    lines = [f"`python bench/crf_speed.py --n {a.n} --runs {a.runs}`; {head[0]}", '', head[1], '',
             f"Medians over {a.runs} runs (every run's wall seconds: the second column's list).", '',
             '| method | wall s total (runs) | wall s/image | CRF s/image (in worker) | vs plain loop | vs same, 1 worker |',
             '|---|---|---|---|---|---|']
    for k, name in enumerate(names):
        s, per = med(k, 1), med(k, 2)
        kind = 'restricted' if name.endswith('restricted') else '21 labels'
        rel = f"{one[kind] / s:.2f}×" if name.startswith('crf_batch') else '–'
        lines.append(f"| {name} | {s:.2f} ({', '.join(f'{r[k][1]:.2f}' for r in runs)}) | {s / a.n:.2f} | {per:.2f} | {base / s:.2f}× | {rel} |")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))
