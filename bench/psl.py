"""Prohibitive segmentation learning against its baselines, on `aepsl_run`'s own path: the built-in benchmark at the
demo's size (the set of bench/carry.py's built-in column), the `cpu` preset and no other flag, one run per seed.

Per seed, `aepsl.cli.aepsl_run(config='cpu', seed=S)` runs the method; then, in the same run folder and through the
same stage functions (`aepsl.pipeline.Pipeline`'s), three more networks of the same architecture, recipe and stopping
rule are trained:
- the fully supervised upper bound: `Pipeline.train_seg('seg_gt', labels='gt')`, on the training masks;
- SEC from CAM seeds: `aepsl.pseudo.pseudo_stage` on the first erasing step's regions alone
  (`AdversarialErasing.objects(max_step=1)`, no erasing), then `aepsl.psl.seg_stage` with SEC's loss, stopped on the
  held-out images' seeds;
and the run's own AE-SSL (`seg_ssl`) and AE-PSL (`seg`, as trained, whether or not the run kept it: `psl_rho`).
Each is predicted on the val split by `Pipeline.predict` (the preset's test settings) without and with DenseCRF, and
with the scores weighted by the network's own classification branch ([1, v] ⊗ f; not for SEC, whose branch is not
trained). The table gives the median over the seeds and every seed's value. Last, the training throughput of
`fit_seg` with the SSL and PSL losses against a bare PyTorch loop (medians of 3, interleaved): run the script with
nothing else on the machine.

    python bench/psl.py [--work runs/bench_psl] [--seeds 0,1,2] [--crf deeplab]

Writes bench/results/psl.json and psl.md. Rerunning reuses the written set and every finished stage.
--smoke (tiny set, one epoch) checks this script only; its results go to --work, never to bench/results.
"""
import json, statistics, sys, time
from pathlib import Path
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from carry import write_set, machine, parser   # the same data-set writer and machine line as the carry check

METHODS = (('full', 'seg_gt', 'fully supervised (upper bound)'), ('sec', 'seg_sec', 'SEC (CAM seeds)'),
           ('ssl', 'seg_ssl', 'AE-SSL'), ('psl', 'seg', 'AE-PSL'))
COLUMNS = (('mIoU', False, False), ('mIoU_crf', True, False), ('mIoU_crf_prohibit', True, True))   # key, CRF, [1, v]


def sec_network(p)->None:
    "SEC through the stages `aepsl_run` calls: pseudo labels from step 1's regions alone (seeds), then `seg_stage` with SEC's loss."
    from aepsl.voc import Splits
    from aepsl.pseudo import pseudo_stage
    from aepsl.psl import seg_stage, SegDataset, seg_train_tfms, FolderMasks, make_segnet
    from aepsl.train import set_seed
    from dataclasses import asdict
    c, ds = p.cfg, Splits(p.trn, p.hold)   # training: to learn from; held-out: to stop on
    seeds = pseudo_stage(ds, p.out / 'seeds', p.out / 'saliency', objects=lambda j: p.ae.objects(ds.ids[j], max_step=1),
                         bg_threshold=c.pseudo.bg_threshold, progress=False, score=p.trn.ids,
                         config=dict(erasing=p.ae.identity, max_step=1, conflict=255, saliency=p.stage_hash('saliency')))
    mean, std = p.ae.stats()
    s = c.seg   # as `Pipeline.train_seg`: every setting of the seg group, and what the network learns from
    st = p.run.stage('seg_sec', dict({k: v for k, v in asdict(s).items() if k != 'fallback'}, seed=c.seed, loss='sec', seeds=seeds.hash))
    set_seed(c.seed)
    model = make_segnet(s.arch, len(p.trn.classes), s.weights)
    seg_stage(st, model, SegDataset(p.trn, seeds.folder, seg_train_tfms(model.recipe, mean, std)), 'sec',
              held=FolderMasks(p.hold, seeds.folder), mean=mean, std=std, sec_kw=dict(mean=mean, std=std),
              seed=c.seed, num_workers=p.num_workers, device=p.device, progress=False,
              **{k: v for k, v in asdict(s).items() if k not in ('arch', 'weights', 'fallback') and v is not None})   # None: the recipe's


def one_seed(data:Path, out:Path, seed:int, ov:dict)->dict:
    "`aepsl_run` with this seed, the reference and SEC networks in its folder, and every network's val mIoU."
    from aepsl.cli import aepsl_run
    from aepsl.pipeline import Pipeline
    from aepsl.psl import evaluate_predictions
    from aepsl.runs import read_marker, read_json
    t = time.time()
    try: aepsl_run(data=str(data), out=str(out), config='cpu', seed=seed, quiet=True, **ov)
    except SystemExit as e:
        if e.code not in (None, 0): sys.exit(f'seed {seed}: aepsl_run stopped: {e.code}')
    p = Pipeline(str(data), str(out), 'cpu', progress=False, seed=seed, **ov)
    p.erasing()   # finished: it reads the steps back (the later stages need the miner's statistics)
    p.train_seg('seg_gt', psl=False, labels='gt')
    sec_network(p)
    rows = []
    for key, net, name in METHODS:
        r = dict(key=key, method=name, network=net)
        for col, crf, pro in COLUMNS:
            if pro and key == 'sec': continue
            folder = f'bench_{net}' + ('_crf' if crf else '') + ('_prohibit' if pro else '')
            p.predict(folder, net, crf=crf, prohibit=pro)
            r[col] = evaluate_predictions(out / folder, p.ev)['mIoU']
        rec = read_marker(out / net / 'done.json')
        r.update(epochs=rec.get('epochs'), stopped_by=rec.get('stopped_by'), branch_mAP=rec.get('branch_mAP'))
        rows.append(r)
    m = read_json(out / 'metrics.json')
    curves = {key: [h.get('valid_mIoU') for h in read_json(out / net / 'history.json')] for key, net, _ in METHODS}
    return dict(seed=seed, run=str(out), rows=rows, ae_steps=p.ae.n_used, pseudo_quality=m['train_quality']['pseudo'],
                psl_kept=p.psl_network(), ladder_final=m['final_mIoU'], test_prohibit=read_marker(out / 'pred_crf' / 'done.json')['config']['prohibit'],
                curves=curves, seconds=round(time.time() - t, 1))


def throughput(data:Path, run:Path, steps:int, repeats:int=3)->list:
    "Images/s of a bare loop (CE + BCE), of `fit_seg` with AE-SSL's loss and with AE-PSL's, same network, data and loader."
    from aepsl.voc import VOCWSSS
    from aepsl.psl import SegDataset, seg_train_tfms, fit_seg, make_segnet
    from aepsl.train import default_device
    trn, dev = VOCWSSS(str(data), 'train'), default_device()
    make = lambda: make_segnet('seg_small', len(trn.classes))
    bs = make().recipe['bs']
    sub = torch.utils.data.Subset(SegDataset(trn, run / 'pseudo', tfms=seg_train_tfms(make().recipe)), range(min(steps * bs, len(trn.ids))))
    n = len(sub) // bs * bs
    if n == 0:
        print(f'throughput skipped: {len(sub)} training images, fewer than one batch of {bs}', flush=True)
        return []
    def bare():
        torch.manual_seed(0)
        m = make().to(dev)
        opt = torch.optim.AdamW(m.parameters(), 3e-3, weight_decay=1e-4)
        dl = torch.utils.data.DataLoader(sub, bs, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(0))
        t0 = time.perf_counter()
        for x, y, s in dl:
            x, y, s = x.to(dev), y.to(dev), s.to(dev)
            seg, cls = m(x)
            seg = F.interpolate(seg, s.shape[-2:], mode='bilinear', align_corners=False)
            loss = F.cross_entropy(seg, torch.where(s == 254, 255, s), ignore_index=255) + F.binary_cross_entropy_with_logits(cls, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        float(loss.detach())
        return n / (time.perf_counter() - t0)
    def through_fit(loss):
        torch.manual_seed(0)
        t0 = time.perf_counter()
        fit_seg(make(), sub, loss, epochs=1, bs=bs, device=dev, progress=False)
        return n / (time.perf_counter() - t0)
    res = {k: [] for k in ('bare loop (CE + BCE)', 'fit_seg, AE-SSL loss', 'fit_seg, AE-PSL loss')}
    bare()   # warm-up
    for _ in range(repeats):   # interleaved, so that any contention hits all three alike
        res['bare loop (CE + BCE)'].append(bare())
        res['fit_seg, AE-SSL loss'].append(through_fit('ssl'))
        res['fit_seg, AE-PSL loss'].append(through_fit('psl'))
    base = statistics.median(res['bare loop (CE + BCE)'])
    return [dict(setting=k, images_per_s=round(statistics.median(v), 1), overhead_pct=round(100 * (base / statistics.median(v) - 1), 1),
                 runs=[round(x, 1) for x in v]) for k, v in res.items()]


def table(runs:list)->list:
    "Per method: the median over seeds of each column, every seed's value, and the share of the upper bound (CRF)."
    out = []
    for key, net, name in METHODS:
        per = [next(r for r in s['rows'] if r['key'] == key) for s in runs]
        row = dict(key=key, method=name)
        for col, _, _ in COLUMNS:
            v = [r[col] for r in per if col in r]
            if v: row[col], row[f'{col}_seeds'] = round(statistics.median(v), 2), v
        out.append(row)
    full = out[0].get('mIoU_crf')
    for r in out: r['pct_of_full_crf'] = round(100 * r['mIoU_crf'] / full, 1) if full else None
    return out


def markdown(res:dict)->str:
    s = res['seeds']
    md = [f"`{res['command']}`", '', f"Machine: {res['machine']}", '',
          f"The built-in benchmark ({res['config']['n_train']} training images, 10 % of them held out; {res['config']['n_val']} val "
          f"images scored), `aepsl_run --config cpu --seed S` for S in {s}, and three more networks trained in each run folder "
          f"through the same stages (see the script). mIoU (%) on val: the median over the seeds, each seed's value in brackets; "
          f"DenseCRF preset `{res['config']['crf']}`.", '',
          '| method | mIoU | + CRF | % of the upper bound (+ CRF) | + CRF, prohibited by [1, v] |', '|---|---|---|---|---|']
    f = lambda r, c: f"{r[c]:.2f} ({', '.join(f'{x:.1f}' for x in r[c + '_seeds'])})" if c in r else '–'
    md += [f"| {r['method']} | {f(r, 'mIoU')} | {f(r, 'mIoU_crf')} | {r['pct_of_full_crf']} | {f(r, 'mIoU_crf_prohibit')} |" for r in res['table']]
    md += ['', '| seed | AE steps used | pseudo labels: mIoU / coverage / precision (training, %) | AE-PSL kept by the run | the run\'s final rung (AE-PSL + CRF; [1, v]: weighted, test_prohibit) |',
           '|---|---|---|---|---|']
    for r in res['runs']:
        q = r['pseudo_quality'] or {}
        md.append(f"| {r['seed']} | {r['ae_steps']} | {q.get('miou', '–')} / {q.get('coverage', '–')} / {q.get('precision', '–')} | "
                  f"{'yes' if r['psl_kept']['kept'] else 'no'} ({r['psl_kept']['why']}) | {r['ladder_final']}{' ([1, v])' if r.get('test_prohibit') else ''} |")
    if res.get('throughput'):
        md += ['', '| training (seg_small, pseudo labels) | images/s (median) | overhead vs the bare loop (%) | runs |', '|---|---|---|---|']
        md += [f"| {r['setting']} | {r['images_per_s']} | {r['overhead_pct']} | {', '.join(map(str, r['runs']))} |" for r in res['throughput']]
    return '\n'.join(md) + '\n'


def main(argv=None):
    from aepsl.cli import DEMO
    ap = parser(__doc__)
    ap.add_argument('--work', default='runs/bench_psl', help='folder of the data set and the run folders (default: runs/bench_psl)')
    ap.add_argument('--seeds', default='0,1,2', help='one run per seed, comma-separated (default 0,1,2)')
    ap.add_argument('--crf', default='deeplab', help="the DenseCRF preset of the '+ CRF' columns (default: the cpu preset's, deeplab)")
    ap.add_argument('--tp_steps', type=int, default=15, help='throughput: optimiser steps per measurement (default 15); 0 skips it')
    ap.add_argument('--results', default=str(HERE / 'results' / 'psl'), help='results path without suffix (.md and .json)')
    ap.add_argument('--smoke', action='store_true', help='check this script only: 12 + 6 images, one epoch, one step')
    a = ap.parse_args(argv)
    t0 = time.time()
    seeds = [int(s) for s in a.seeds.split(',') if s.strip()]
    n_train, n_val = (12, 6) if a.smoke else (DEMO['n_train'], DEMO['n_val'])
    ov = dict(dict(cls_epochs=1, seg_epochs=1, max_steps=1) if a.smoke else {}, crf=a.crf)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    data = write_set(work / 'data', None, n_train, n_val)
    m = machine()
    mline = f"{m['cpu']}, {m['cpu_count']} cores, torch {m['torch']} ({m['torch_threads']} threads), Python {m['python']}"
    print(mline, flush=True)
    runs = []
    for s in seeds:
        runs.append(one_seed(data, work / f'run_s{s}', s, ov))
        print(f"seed {s}: " + ', '.join(f"{r['key']} {r['mIoU_crf']:.2f}" for r in runs[-1]['rows']) + f" (+ CRF; {runs[-1]['seconds']:.0f} s)", flush=True)
    tp = throughput(data, work / f'run_s{seeds[0]}', a.tp_steps) if a.tp_steps else []
    cmd = 'python bench/psl.py' + ''.join(f' {x}' for x in (argv if argv is not None else sys.argv[1:]))
    res = dict(command=cmd, machine=mline, config=dict(n_train=n_train, n_val=n_val, crf=a.crf, overrides=ov),
               seeds=seeds, table=table(runs), runs=runs, throughput=tp, seconds=round(time.time() - t0, 1))
    results = work / 'psl_smoke' if a.smoke else Path(a.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.with_suffix('.json').write_text(json.dumps(res, indent=1))
    results.with_suffix('.md').write_text(markdown(res))
    print(markdown(res), flush=True)
    print(f'written: {results.with_suffix(".md")}, {results.with_suffix(".json")}')


if __name__ == '__main__': main()
