"""Saliency speed and background quality: time per image of the unsupervised saliency (and of DRFI's full regional
feature table) at 96 px and at VOC size (375×500), and the background precision/recall (saliency < τ) on the
synthetic held-out set.

    python bench/saliency.py --n 200
"""
import argparse, os, platform, subprocess, time

def machine():
    try: cpu = next(l.split(':', 1)[1].strip() for l in subprocess.run(['lscpu'], capture_output=True, text=True).stdout.splitlines() if l.startswith('Model name'))
    except Exception: cpu = platform.processor()
    return f"{cpu}; {os.cpu_count()} CPUs; python {platform.python_version()}; load average {os.getloadavg()[0]:.1f} at start"

def per_image(fn, images):
    t = time.perf_counter()
    for im in images: fn(im)
    return (time.perf_counter() - t) / len(images)

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--n', type=int, default=200, help='held-out synthetic images for precision/recall')
    ap.add_argument('--n-big', type=int, default=5, help='VOC-size images for timing')
    a = ap.parse_args()
    from aepsl.data import SyntheticWSSS
    from aepsl.saliency import unsupervised_saliency, BackgroundSweep, BG_THRESHOLD, pixel_features, fh_levels, region_features
    def table(im):
        pf = pixel_features(im)
        return [region_features(s, pf) for s in fh_levels(im)]
    print(machine())
    ds = SyntheticWSSS(a.n, seed=1)
    small = [ds.image(k) for k in range(min(50, a.n))]
    big = [SyntheticWSSS(1, sizes=[(375, 500)], seed=9, start=k).image(0) for k in range(a.n_big)]
    print('\n| image size | unsupervised saliency, ms/image | full DRFI feature table (3 levels), ms/image |\n|---|---|---|')
    for name, ims in (('96×96', small), ('375×500', big)):
        print(f'| {name} | {1000 * per_image(unsupervised_saliency, ims):.1f} | {1000 * per_image(table, ims):.1f} |')
    sw = BackgroundSweep()
    for k in range(a.n): sw.update(unsupervised_saliency(ds.image(k)), ds.mask(k))
    print(f'\nbackground = saliency < τ on {a.n} held-out synthetic images (seed 1); ground truth 255 not counted\n')
    print('| τ | precision % | recall % |\n|---|---|---|')
    for t in (0.1, 0.2, 0.3, 0.4, 0.5):
        p, r = sw.at(t)
        print(f"| {t}{' (default)' if t == BG_THRESHOLD else ''} | {100 * p:.1f} | {100 * r:.1f} |")
