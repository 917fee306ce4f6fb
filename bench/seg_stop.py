"""How the segmentation networks stop: the `cpu` preset's patience rule and variants of it, on one finished demo run.
Usage: python bench/seg_stop.py RUN [--variants default,lp3,warmup4] [--out bench/results/seg_stop.md]
RUN is a finished `aepsl_demo` run folder (its erasing, saliency and pseudo-label stages are reused, not redone);
each variant copies RUN without its segmentation stages and retrains AE-SSL and AE-PSL with other settings of
`aepsl_run` (by name), then records the ladder's last rungs and how each network stopped (epochs, best epoch)."""
import argparse, json, shutil, sys, time
from pathlib import Path

VARIANTS = dict(default={},                                            # the cpu preset: patience 5, plateau after 2
                lp3=dict(seg_lr_patience=3, seg_patience=6),          # slower rate steps, more patience
                warmup4=dict(psl_warmup=4))                           # PSL's ramp over 4 epochs instead of 8

def run_variant(run:Path, work:Path, name:str, ov:dict)->dict:
    from aepsl.pipeline import Pipeline
    dst = work / name
    if dst.exists(): shutil.rmtree(dst)
    keep_out = ('seg', 'seg_ssl', 'pred', 'pred_ssl', 'pred_crf', 'figures', 'metrics.json', 'results.md', 'config.json', 'log.txt', 'data')
    shutil.copytree(run, dst, ignore=lambda d, names: [n for n in names if Path(d) == run and n in keep_out])
    t = time.time()
    m = Pipeline(run / 'data', dst, 'cpu', progress=False, **ov)()
    r = {x['rung']: x['mIoU'] for x in m['ladder']}
    stops = {n: json.loads((dst / n / 'done.json').read_text()) for n in ('seg_ssl', 'seg')}
    return dict(variant=name, settings=ov, seconds=round(time.time() - t, 1), ssl=r['AE-SSL'], psl=r['AE-PSL'], crf=r['AE-PSL + CRF'],
                stops={n: (d['epochs'], d['best_epoch'], d['stopped_by']) for n, d in stops.items()})

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('run', help='a finished aepsl_demo run folder')
    ap.add_argument('--variants', default=','.join(VARIANTS))
    ap.add_argument('--work', default=None, help='folder for the variant runs (default: RUN.seg_stop)')
    ap.add_argument('--out', default=str(Path(__file__).parent / 'results' / 'seg_stop.md'))
    a = ap.parse_args()
    run = Path(a.run)
    if not (run / 'metrics.json').is_file() or not (run / 'data').is_dir(): sys.exit(f'{run}: not a finished aepsl_demo run folder')
    names = a.variants.split(',')
    if bad := [n for n in names if n not in VARIANTS]: sys.exit(f'unknown variants {bad}: {", ".join(VARIANTS)}')
    work = Path(a.work or f'{run}.seg_stop')
    rows = [run_variant(run, work, n, VARIANTS[n]) for n in names]
    lines = [f'`python bench/seg_stop.py {run} --variants {a.variants}`: segmentation stages retrained on the same pseudo labels', '',
             '| variant | settings | AE-SSL | AE-PSL | AE-PSL + CRF | seg_ssl epochs (best, stopped by) | seg epochs (best, stopped by) |',
             '|---|---|---|---|---|---|---|']
    for r in rows:
        s = ', '.join(f'{k}={v}' for k, v in r['settings'].items()) or 'cpu preset'
        st = [f"{e} ({b}, {w})" for e, b, w in (r['stops']['seg_ssl'], r['stops']['seg'])]
        lines.append(f"| {r['variant']} | {s} | {r['ssl']:.2f} | {r['psl']:.2f} | {r['crf']:.2f} | {st[0]} | {st[1]} |")
    text = '\n'.join(lines) + '\n'
    print(text)
    Path(a.out).write_text(text)
