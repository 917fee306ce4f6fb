"""Test-time settings of the `cpu` preset, chosen on the held-out images: `bench/carry.py`'s finished runs (both sets)
predicted with and without horizontal flips and extra scales, each network of the run (AE-SSL's, the AE-PSL rungs',
the reference trained on the masks), without and with the preset's DenseCRF, scored on the **held-out** images' masks
(10 % of the training split, which the runs never trained on and never score: the evaluation split plays no part).

    python bench/test_time.py [--work runs/carry] [--sets builtin,hard]

Writes bench/results/test_time.md and .json. Each network's scores are weighted by its branch where the run's
`test_prohibit='auto'` would (`aepsl.psl.use_prohibit`), as in the run's own predictions.
"""
import argparse, sys, tempfile, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from carry import write_record   # the same machine line as carry.md

SETTINGS = (('scale 1', (1.0,), False), ('scale 1 + flip', (1.0,), True),
            ('scales 1, 0.75, 1.25', (1.0, 0.75, 1.25), False), ('scales 1, 0.75, 1.25 + flip', (1.0, 0.75, 1.25), True))

def score_set(data:Path, run:Path)->dict:
    "Every network × test setting × CRF of one finished run, on its held-out images' masks (mIoU %)."
    from aepsl.pipeline import Pipeline, evaluate_predictions
    from aepsl.psl import predict_stage, use_prohibit
    from aepsl.runs import Stage, read_marker
    p = Pipeline(str(data), str(run), 'cpu', progress=False)
    p.erasing()   # finished: it only reads the steps back (the statistics)
    c = p.cfg.test
    nets = dict.fromkeys([p.ssl_network()['net'], p.psl_network()['net'], 'seg_gt'])   # AE-SSL's, AE-PSL rungs', reference
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for net in nets:
            rec = read_marker(run / net / 'done.json')
            model = p.load_segnet(net)
            mean, std = p.seg_stats(model, rec['config'].get('weights'))
            pro = bool(use_prohibit(c.prohibit, rec.get('branch_mAP')))
            for name, scales, flip in SETTINGS:
                for crf in (False, True):
                    st = Stage(Path(tmp) / f'{net}_{len(scales)}_{flip}_{crf}', {})
                    t = time.time()
                    predict_stage(model, p.hold, st, scales, flip, crf=c.crf if crf else None, crf_workers=0,
                                  mean=mean, std=std, progress=False, test_prohibit=pro)
                    rows.append(dict(network=net, arch=rec['config'].get('arch'), setting=name, crf=crf, prohibit=pro,
                                     mIoU=evaluate_predictions(st.folder, p.hold)['mIoU'], seconds=round(time.time() - t, 1)))
                    print(rows[-1], flush=True)
    return dict(n_holdout=len(p.hold.ids), rows=rows)

def table(res:dict)->str:
    lines = []
    for s, r in res.items():
        nets = list(dict.fromkeys((x['network'], x['arch']) for x in r['rows']))
        lines += ['', f"**{s}** ({r['n_holdout']} held-out images): mIoU (%) without / with the CRF", '',
                  '| test setting | ' + ' | '.join(f'{n} (`{a}`)' for n, a in nets) + ' |', '|---|' + '---|' * len(nets)]
        for name, *_ in SETTINGS:
            cell = lambda n, crf: next(x['mIoU'] for x in r['rows'] if (x['network'], x['setting'], x['crf']) == (n, name, crf))
            lines.append(f'| {name} | ' + ' | '.join(f'{cell(n, False):.2f} / {cell(n, True):.2f}' for n, _ in nets) + ' |')
    return '\n'.join(lines)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--work', default='runs/carry', help="bench/carry.py's --work (its data_* and run_* folders)")
    ap.add_argument('--sets', default='builtin,hard', help='comma-separated (default: both)')
    ap.add_argument('--results', default=str(HERE / 'results' / 'test_time'), help='results path without suffix')
    a = ap.parse_args(argv)
    work, res = Path(a.work), {}
    for s in [x.strip() for x in a.sets.split(',') if x.strip()]:
        run = work / f'run_{s}'
        if not (run / 'seg_gt' / 'done.json').is_file(): sys.exit(f'{run}: no finished reference (seg_gt): run bench/carry.py --work {work} first')
        res[s] = score_set(work / f'data_{s}', run)
    write_record(a.results, 'test_time.py', argv,
                 "bench/carry.py's runs, each network predicted on the training split's held-out images (never trained on, never "
                 "the scored split) with each test-time setting; scores weighted by the branch where the run's 'auto' would.",
                 table(res), dict(sets=res))

if __name__ == '__main__': main()
