"""Peak memory and wall time of a 2-step adversarial-erasing run on N and on 2N images of mixed sizes, each run in
a fresh process (so each peak is its own). Peak memory must not grow with N (regions and CAMs are streamed per
image); time should grow about linearly.

    python bench/erasing_scale.py [--n 300] [--epochs 2]
"""
import argparse, json, resource, subprocess, sys, tempfile, time
from pathlib import Path

SIZES = [(160, 160), (200, 240), (240, 180), (180, 220)]

def child(root, n, epochs, out):
    "One run in this process: returns (seconds, peak RSS in MiB)."
    from aepsl.voc import VOCWSSS
    from aepsl.erasing import AdversarialErasing
    trn, hold = VOCWSSS(root, f'train{n}'), VOCWSSS(root, 'val')
    t0 = time.perf_counter()
    ae = AdversarialErasing(trn, hold, out, max_steps=2, rho=0.01, epochs=epochs, patience=None, crop_size=160, device='cpu')
    ae.run()
    ae.write_pseudo_objects()
    dt = time.perf_counter() - t0
    return dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--n', type=int, default=300); p.add_argument('--epochs', type=int, default=2)
    p.add_argument('--child', nargs=4, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        root, n, epochs, out = a.child
        print(json.dumps(dict(zip(('seconds', 'peak_rss_mib'), child(root, int(n), int(epochs), out)))))
        sys.exit(0)
    from aepsl.voc import synthetic_voc
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / 'voc'
        synthetic_voc(root, n_train=2 * a.n, n_val=60, size=240, sizes=SIZES, formats=('jpg', 'png'))
        ids = (root / 'ImageSets' / 'Segmentation' / 'train.txt').read_text().split()
        for n in (a.n, 2 * a.n):
            (root / 'ImageSets' / 'Segmentation' / f'train{n}.txt').write_text('\n'.join(ids[:n]) + '\n')
        res = {}
        for n in (a.n, 2 * a.n):
            r = subprocess.run([sys.executable, __file__, '--child', str(root), str(n), str(a.epochs), str(Path(tmp) / f'run{n}')],
                               capture_output=True, text=True, check=True)
            res[n] = json.loads(r.stdout.strip().splitlines()[-1])
            print(f"N={n}: {res[n]['seconds']:.1f} s, peak RSS {res[n]['peak_rss_mib']:.0f} MiB", flush=True)
    n1, n2 = a.n, 2 * a.n
    print(f"\nmemory 2N/N: {res[n2]['peak_rss_mib'] / res[n1]['peak_rss_mib']:.3f} (target ≤ 1.10); "
          f"time 2N/N: {res[n2]['seconds'] / res[n1]['seconds']:.2f} (linear: 2)")
    print("| images | wall time (s) | peak RSS (MiB) |\n|---|---|---|")
    for n in (n1, n2): print(f"| {n} | {res[n]['seconds']:.1f} | {res[n]['peak_rss_mib']:.0f} |")
