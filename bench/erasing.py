"""Adversarial erasing: wall time of a K-step run against K plain classifier trainings on the same data
(the overhead of mining and erasing), and the mined-region quality of every step.

    python bench/erasing.py [--steps 3] [--n-train 600] [--n-holdout 200] [--epochs 6] [--delta 0.5]
"""
import argparse, json, platform, tempfile, time
import numpy as np, torch
from aepsl.data import SyntheticWSSS, ArrayDataset
from aepsl.models import small_cnn
from aepsl.train import fit_classifier, default_device
from aepsl.erasing import AdversarialErasing, region_quality

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument('--steps', type=int, default=3); p.add_argument('--n-train', type=int, default=600)
p.add_argument('--n-holdout', type=int, default=200); p.add_argument('--epochs', type=int, default=6)
p.add_argument('--delta', type=float, default=0.5); p.add_argument('--size', type=int, default=96)
a = p.parse_args()

trn, hold = SyntheticWSSS(a.n_train, size=a.size, seed=0), SyntheticWSSS(a.n_holdout, size=a.size, seed=1)
C, dev = trn.labels.shape[1], default_device()
fit_kw = dict(epochs=a.epochs, device=dev, progress=False)

ds = ArrayDataset(trn.images, trn.labels)
hds = ArrayDataset(hold.images, hold.labels, mean=ds.mean, std=ds.std)
t0 = time.perf_counter()
for t in range(1, a.steps + 1): fit_classifier(small_cnn(C), ds, hds, seed=t, **fit_kw)
t_plain = time.perf_counter() - t0

with tempfile.TemporaryDirectory() as out:
    ae = AdversarialErasing(trn.images, trn.labels, hold.images, hold.labels, small_cnn, delta=a.delta,
                            max_steps=a.steps, min_map=0.0, out=out, **fit_kw)
    t0 = time.perf_counter(); steps = ae.run(); t_ae = time.perf_counter() - t0

res = dict(machine=f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, {dev}",
           config=vars(a), plain_training_s=round(t_plain, 1), ae_s=round(t_ae, 1),
           overhead_pct=round(100 * (t_ae / t_plain - 1), 1),
           mining_s=round(sum(s['mine_time'] for s in steps), 1),
           steps=[dict(step=s['step'], holdout_mAP=round(s['holdout_mAP'], 3), **region_quality(ae.label_maps(s['step']), trn.masks, C))
                  for s in steps])
print(json.dumps(res, indent=1))
print(f"\n{a.steps}-step AE: {t_ae:.1f} s; {a.steps} plain trainings: {t_plain:.1f} s; overhead {res['overhead_pct']:+.1f} % "
      f"(CAM mining {res['mining_s']:.1f} s)")
print('| step | held-out mAP | mIoU | precision | recall |\n|---|---|---|---|---|')
for s in res['steps']: print(f"| {s['step']} | {s['holdout_mAP']:.3f} | {s['mIoU']:.1f} | {s['precision']:.1f} | {s['recall']:.1f} |")
