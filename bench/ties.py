"""Where two classes are mined at one pixel: what the tie rule of the mined label maps and the conflict rule of the pseudo
labels do, on the TRAINING split's masks of `bench/carry.py`'s runs (both sets).

Usage: python bench/ties.py [--work DIR]

Reads the finished erasing, saliency and pseudo stages of carry.py's runs under --work (`run_builtin`, `run_hard`; run
carry.py first) and scores, against the training images' masks (the split that is mined; the val split is not read):
- the step-1 CAM as a label map (`cam_threshold`), as the ladder's CAM rung reads the val images;
- the regions mined up to each step as a label map (the ladder's AE rungs), with classes first mined at one step told
  apart by that step's CAM (`top`, the rule of `aepsl.erasing.regions_to_label_map`) or given to the lower class index
  (the rule before it);
- the pseudo labels made from those objects with the `pseudo.bg_threshold` of the run: pixels claimed by several classes
  ignored (255, the `cpu` preset's), or given to the earliest class, ties by CAM, or ties to the lower index.
Writes bench/results/ties.md and .json. Seconds per set; no training."""
import json, sys, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from carry import machine, parser, SETS

def score(data:Path, run:Path)->dict:
    "The rows of one set: CAM, AE steps by tie rule, pseudo labels by conflict rule (training split)."
    import numpy as np, torch
    from aepsl.pipeline import Pipeline
    from aepsl.pseudo import pseudo_label, PseudoQuality
    from aepsl.saliency import read_saliency_png
    from aepsl.erasing import regions_to_label_map, region_quality
    from aepsl.metrics import SegMetric
    from aepsl.cam import cams_to_label_map
    p = Pipeline(str(data), str(run), 'cpu', progress=False)
    p.erasing()   # finished: reads the steps back, trains nothing
    ae, trn, C = p.ae, p.trn, len(p.trn.classes)
    T = ae.n_used
    rules = dict(cam=lambda s, t, top: regions_to_label_map(s, t, top=top), lower=lambda s, t, top: regions_to_label_map(s, t))
    steps = {r: [SegMetric(C + 1) for _ in range(T)] for r in rules}
    objs = {'ignored (255)': lambda s, top: regions_to_label_map(s, conflict=255),
            'earliest class, ties by CAM': lambda s, top: regions_to_label_map(s, top=top),
            'earliest class, ties to the lower index': lambda s, top: regions_to_label_map(s)}
    pq = {k: PseudoQuality(C, trn.classes) for k in objs}
    cam_m, cams = SegMetric(C + 1), ae.cams_of(trn)
    t0 = lambda a: torch.from_numpy(np.asarray(a)).long()
    for i, k in enumerate(trn.ids):
        gt, (s, top) = trn.mask(i), ae.mined(i)
        cam_m.update(t0(cams_to_label_map(cams(i), p.cfg.cam.threshold)), t0(gt))
        for r, f in rules.items():
            for t in range(1, T + 1): steps[r][t - 1].update(t0(f(s, t, top)), t0(gt))
        sal = read_saliency_png(p.out / 'saliency' / f'{k}.png')
        for name, f in objs.items(): pq[name].update(pseudo_label(f(s, top), sal, p.cfg.pseudo.bg_threshold), gt)
    return dict(n_train=len(trn.ids), steps_used=T, cam=region_quality(cam_m)['mIoU'],
                ae={r: [region_quality(m)['mIoU'] for m in ms] for r, ms in steps.items()},
                pseudo={k: q.summary() for k, q in pq.items()})

def main():
    ap = parser(__doc__)
    ap.add_argument('--work', default='runs/carry', help="bench/carry.py's work folder (default: runs/carry)")
    ap.add_argument('--results', default=str(HERE / 'results' / 'ties'), help='results path without suffix (default bench/results/ties)')
    a = ap.parse_args()
    work, res, m = Path(a.work), {}, machine()
    for s in SETS:
        data, run = work / f'data_{s}', work / f'run_{s}'
        if not (run / 'pseudo' / 'done.json').is_file(): sys.exit(f"{run} has no finished pseudo stage: run bench/carry.py --work {work} first")
        t = time.time()
        res[s] = dict(score(data, run), seconds=round(time.time() - t, 1))
        print(f"{s}: {time.time() - t:.0f} s", flush=True)
    n = {s: res[s]['steps_used'] for s in res}
    lines = [f"`python bench/ties.py --work {a.work}`", '',
             f"Machine: {m['platform']}; {m['cpu']}, {m['cpu_count']} cores; torch {m['torch']}", '',
             "mIoU (%) on the **training** split's masks of bench/carry.py's `cpu` runs (" +
             ', '.join(f"{s}: {res[s]['n_train']} images" for s in res) + "). The AE rows: regions mined up to each step as a "
             "label map, classes first mined at one step given to the higher CAM of that step (the rule now) or to the lower "
             "class index (the rule before).", '',
             '| rung | ' + ' | '.join(res) + ' |', '|---|' + '---|' * len(res),
             "| step-1 CAM (background below cam_threshold) | " + ' | '.join(f"{res[s]['cam']:.2f}" for s in res) + ' |']
    for r, what in (('cam', 'ties by CAM'), ('lower', 'ties to the lower index')):
        for t in range(max(n.values())):
            lines.append(f"| AE step {t + 1}, {what} | " + ' | '.join(f"{res[s]['ae'][r][t]:.2f}" if t < n[s] else '–' for s in res) + ' |')
    lines += ['', "Pseudo labels (AE's rule, the run's saliency and bg_threshold) by what a pixel claimed by several classes "
              "becomes: mIoU over the labelled pixels / coverage / precision (%).", '',
              '| several classes at a pixel | ' + ' | '.join(res) + ' |', '|---|' + '---|' * len(res)]
    for k in next(iter(res.values()))['pseudo']:
        lines.append(f'| {k} | ' + ' | '.join(f"{res[s]['pseudo'][k]['miou']:.2f} / {res[s]['pseudo'][k]['coverage']:.1f} / "
                                               f"{res[s]['pseudo'][k]['precision']:.1f}" for s in res) + ' |')
    text = '\n'.join(lines) + '\n'
    out = Path(a.results)
    out.with_suffix('.md').write_text(text)
    out.with_suffix('.json').write_text(json.dumps(dict(machine=m, sets=res), indent=1))
    print(text)

if __name__ == '__main__': main()
