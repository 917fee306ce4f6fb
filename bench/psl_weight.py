"""The weight λ of AE-PSL's online-label term, chosen on the held-out images: AE-PSL's network retrained from each of
`bench/carry.py`'s finished runs (both sets) with λ in {0.25, 0.5, 1} and three seeds, each predicted with the run's
test settings, without and with its DenseCRF, and scored on the **held-out** images' masks (10 % of the training
split: never trained on, never the scored split, which plays no part).

    python bench/psl_weight.py [--work runs/carry] [--out runs/psl_weight] [--sets builtin,hard]

Everything AE-PSL starts from (erasing, pseudo labels, AE-SSL's network) is the carry run's, copied into `--out`
(the carry run is only read); each retrained network is a stage `seg_w<λ>_s<seed>` there, so a rerun reuses the
ones already trained and only predicts. Besides the mIoU, where the object pixels' errors go: `miss` (object
pixels predicted background, % of the object pixels), `false` (background pixels predicted an object, % of the
background's), `confuse` (object pixels predicted another object, % of the object pixels).
Writes bench/results/psl_weight.md and .json.
"""
import argparse, shutil, statistics, sys, tempfile, time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from carry import write_record   # the same machine line as carry.md

SKIP = ('seg', 'seg_gt', 'pred', 'pred_ssl', 'pred_crf', 'evaluate')   # what AE-PSL's retraining does not start from

def copy_run(src:Path, dst:Path):
    """The carry run's stages up to AE-SSL's network, copied once (the carry run is only read); not its config.json:
    the run's config is this code's `cpu` preset, and each stage checks its own."""
    if (dst / 'cls').is_dir(): return
    skip = lambda d, names: [n for n in names if d == str(src) and (n in SKIP or n.startswith(('pred_', 'seg_w')) or n == 'config.json')]
    shutil.copytree(src, dst, ignore=skip)

def errors(m)->dict:
    "mIoU and where the object pixels' errors go, from `evaluate_folder`'s confusion matrix (rows: truth)."
    cm = m.cm.double()
    obj, bg = cm[1:].sum(), cm[0].sum()
    return dict(mIoU=round(100 * float(m.miou), 2), miss=round(100 * float(cm[1:, 0].sum() / obj), 2),
                false=round(100 * float(cm[0, 1:].sum() / bg), 2),
                confuse=round(100 * float((cm[1:, 1:].sum() - cm[1:, 1:].trace()) / obj), 2))

def score_net(p, run:Path, name:str)->dict:
    "One finished network of a run, predicted on the held-out images with the run's test settings, scored without and with the CRF."
    from aepsl.psl import evaluate_folder, make_segnet, predict_stage, use_prohibit
    from aepsl.runs import Stage, read_marker
    c, rec = p.cfg.test, read_marker(run / name / 'done.json')
    model = make_segnet(rec['config']['arch'], len(p.trn.classes), checkpoint=run / name / 'model.pt').to(p.device).eval()   # as `load_segnet`
    mean, std = p.seg_stats(model, rec['config'].get('weights'))
    pro = bool(use_prohibit(c.prohibit, rec.get('branch_mAP')))
    row = dict(epochs=rec['epochs'], best_epoch=rec['best_epoch'], stopped_by=rec['stopped_by'], held_mIoU=rec.get('held_mIoU'),
               branch_mAP=rec.get('branch_mAP'), prohibit=pro, train_time=rec['train_time'])
    with tempfile.TemporaryDirectory() as tmp:
        for crf in (False, True):
            st = Stage(Path(tmp) / str(crf), {})
            predict_stage(model, p.hold, st, c.scales, c.flip, crf=c.crf if crf else None, crf_workers=0,
                          mean=mean, std=std, progress=False, test_prohibit=pro)
            row['crf' if crf else 'plain'] = errors(evaluate_folder(p.hold, st.folder))
    return row

def score_set(data:Path, run:Path, src:Path, weights, seeds)->dict:
    "AE-SSL's network and the reference as they are; every λ × seed: AE-PSL retrained (or reused); all scored on the held-out images."
    from aepsl.pipeline import Pipeline
    p = Pipeline(str(data), str(run), 'cpu', progress=False)
    p.erasing()   # finished: it only reads the steps back (the statistics)
    base, ssl = p.cfg, p.ssl_network()['net']
    fixed = dict(ssl=dict(network=ssl, **score_net(p, run, ssl)), reference=dict(network='seg_gt', **score_net(p, src, 'seg_gt')))
    print(fixed, flush=True)
    rows = []
    for w in weights:
        for seed in seeds:
            name = f'seg_w{w:g}_s{seed}'
            p.cfg = replace(base, seed=seed, psl=replace(base.psl, weight=w))
            t = time.time()
            p.train_seg(name, psl=True)
            p.cfg = base
            rows.append(dict(weight=w, seed=seed, **score_net(p, run, name), seconds=round(time.time() - t, 1)))
            print(rows[-1], flush=True)
    return dict(n_holdout=len(p.hold.ids), **fixed, rows=rows)

def table(res:dict)->str:
    med = statistics.median
    lines = []
    def row(what, xs):
        a, b = [x['plain']['mIoU'] for x in xs], [x['crf']['mIoU'] for x in xs]
        err = ' / '.join(f"{med([x['crf'][k] for x in xs]):.1f}" for k in ('miss', 'false', 'confuse'))
        held = [x['held_mIoU'] for x in xs if x['held_mIoU'] is not None]
        return (f"| {what} | {', '.join(f'{v:.2f}' for v in a)} | **{med(a):.2f}** | {', '.join(f'{v:.2f}' for v in b)} | "
                f"**{med(b):.2f}** | {err} | {f'{med(held):.2f}' if held else '–'} | {', '.join(str(x['epochs']) for x in xs)} |")
    for s, r in res.items():
        ws = list(dict.fromkeys(x['weight'] for x in r['rows']))
        lines += ['', f"**{s}** ({r['n_holdout']} held-out images): mIoU (%) of each seed and their median, without and with the CRF; "
                  "where the object pixels' errors go (+ CRF, medians); the held-out agreement with the pseudo labels that stopped "
                  "each network (a reference: with the masks)", '',
                  '| network | mIoU | median | + CRF | median + CRF | miss / false / confuse, + CRF | held-out agreement | epochs |',
                  '|---|---|---|---|---|---|---|---|', row(f"AE-SSL (`{r['ssl']['network']}`, as trained: AE-PSL's start)", [r['ssl']])]
        lines += [row(f'AE-PSL, λ = {w:g}', [x for x in r['rows'] if x['weight'] == w]) for w in ws]
        lines.append(row('reference (`seg_gt`: the masks)', [r['reference']]))
    return '\n'.join(lines)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--work', default='runs/carry', help="bench/carry.py's --work (its data_* and run_* folders; only read)")
    ap.add_argument('--out', default='runs/psl_weight', help='where the runs are copied and AE-PSL retrained')
    ap.add_argument('--sets', default='builtin,hard', help='comma-separated (default: both)')
    ap.add_argument('--weights', default='0.25,0.5,1', help='λ values, comma-separated')
    ap.add_argument('--seeds', default='0,1,2', help='training seeds, comma-separated')
    ap.add_argument('--results', default=str(HERE / 'results' / 'psl_weight'), help='results path without suffix')
    a = ap.parse_args(argv)
    work, out, res = Path(a.work), Path(a.out), {}
    weights, seeds = [float(x) for x in a.weights.split(',')], [int(x) for x in a.seeds.split(',')]
    for s in [x.strip() for x in a.sets.split(',') if x.strip()]:
        src = work / f'run_{s}'
        if not (src / 'seg_ssl' / 'done.json').is_file(): sys.exit(f'{src}: no finished AE-SSL network: run bench/carry.py --work {work} first')
        copy_run(src, out / f'run_{s}')
        res[s] = score_set(work / f'data_{s}', out / f'run_{s}', src, weights, seeds)
    write_record(a.results, 'psl_weight.py', argv,
                 "AE-PSL's network retrained from bench/carry.py's runs (the same AE-SSL start, pseudo labels and stopping rule) "
                 "with each λ and seed, predicted on the training split's held-out images with the run's test settings "
                 "(scores weighted by the branch where the run's 'auto' would); never the scored split.",
                 table(res), dict(sets=res))

if __name__ == '__main__': main()
