"""Do the `cpu` defaults carry? The ladder of `aepsl_run --config cpu` (no other flag) on the built-in benchmark and on
the harder variant (`aepsl_data --variant hard`), side by side.

Usage: python bench/carry.py [--work DIR] [--n_train 1000 --n_val 200]

Writes both sets in VOC layout under --work (the built-in one at the demo's size, `aepsl.cli.DEMO`), runs
`aepsl.cli.aepsl_run(data=..., out=..., config='cpu')` on each, and prints, and writes to bench/results/carry.md and
carry.json: the two ladders (mIoU of every rung, and the same segmentation network trained on the ground-truth masks as
the reference; and both with `test_prohibit` forced on and off, the check of the preset's 'auto'), how each
erasing classifier and each segmentation network stopped
(patience or the epoch cap, from the run folder), and the machine. Rerunning reuses finished sets and runs
(`aepsl_run` resumes its own run folder). --smoke and --override change the defaults: their results go to the work
folder, never to bench/results/carry.md; an --override run (another network, say) may name its own --results file, whose
first line then says which defaults it changed."""
import argparse, json, os, platform, sys, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SETS = ('builtin', 'hard')

def machine()->dict:
    import torch
    cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), platform.processor()) \
          if Path('/proc/cpuinfo').is_file() else platform.processor()
    return dict(platform=platform.platform(), cpu=cpu, cpu_count=os.cpu_count(), torch=torch.__version__,
                torch_threads=torch.get_num_threads(), python=platform.python_version())

def parser(doc:str)->argparse.ArgumentParser:
    "The benches' argument parser: the script's first paragraph as its description, the rest as its epilog."
    return argparse.ArgumentParser(description=doc.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=doc.split('\n\n', 1)[1])

def write_record(results, # path without suffix: <results>.md and .json are written
                 script:str, argv, # the script's name in bench/ and its arguments (None: sys.argv's)
                 intro:str, body:str, # a sentence on what was measured; the tables (Markdown)
                 payload:dict)->str: # what the .json holds besides the machine
    "A bench record: the command line, the machine, `intro` and `body` in <results>.md; `payload` and the machine in <results>.json."
    m = machine()
    cmd = ' '.join([f'python bench/{script}', *(argv if argv is not None else sys.argv[1:])])
    text = '\n'.join([f"`{cmd}`", '', f"Machine: {m['platform']}; {m['cpu']}, {m['cpu_count']} cores; torch {m['torch']} "
                      f"({m['torch_threads']} threads)", '', intro, body, ''])
    out = Path(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix('.md').write_text(text)
    out.with_suffix('.json').write_text(json.dumps(dict(machine=m, **payload), indent=1))
    print(text)
    return text

def write_set(root:Path, variant, n_train:int, n_val:int)->Path:
    "The benchmark in VOC layout, once: a marker with its arguments, written last, makes a rerun skip it."
    from aepsl.voc import synthetic_voc
    from aepsl.data import synth_variant
    want = dict(variant=variant, n_train=n_train, n_val=n_val, size=96, seed=0,
                params=synth_variant(variant))
    want = json.loads(json.dumps(want))   # as the marker reads back: tuples are lists there
    marker = root / 'carry_data.json'
    if marker.is_file():
        if (old := json.loads(marker.read_text())) == want: return root
        sys.exit(f"{root} holds a set made with {old}, not {want}: use another --work, or delete that folder")
    if root.exists() and any(root.iterdir()): sys.exit(f"{root} is not empty and has no {marker.name}: use another --work")
    t = time.time()
    synthetic_voc(root, n_train, n_val, 96, seed=0, variant=variant)
    marker.write_text(json.dumps(want))
    print(f"wrote {root} ({n_train} + {n_val} images, variant {variant or 'built-in'}) in {time.time() - t:.0f} s", flush=True)
    return root

def _read(p:Path):
    try: return json.loads(p.read_text())
    except (OSError, ValueError): return None

def _stop(folder:Path, cap)->dict:
    "How one training stopped, from what its folder records: history.json (one row per epoch) and done.json."
    hist, done = _read(folder / 'history.json'), _read(folder / 'done.json') or {}
    rec = done.get('record', done) if isinstance(done, dict) else {}
    said = next((rec[k] for k in ('stopped_by', 'stop_reason', 'stopped') if isinstance(rec, dict) and k in rec), None)
    if said is None and isinstance(hist, dict):
        said = next((hist[k] for k in ('stopped_by', 'stop_reason', 'stopped') if k in hist), None)
        hist = hist.get('history', hist.get('epochs'))
    rows = hist if isinstance(hist, list) else []
    n = len(rows) or (rec.get('epochs') or rec.get('epochs_trained') if isinstance(rec, dict) else None)
    mon = next((k for k in ('holdout_mAP', 'mAP', 'valid_loss', 'val_loss', 'holdout_mIoU', 'valid_mIoU', 'val_mIoU', 'mIoU') if rows and k in rows[-1]), None)
    best = None
    if mon:
        vals = [r.get(mon) for r in rows]
        ok = [(v, i) for i, v in enumerate(vals) if isinstance(v, (int, float))]
        if ok: best = (min(ok) if mon.endswith('loss') else max(ok))[1] + 1
    if isinstance(rec, dict) and isinstance(rec.get('best_epoch'), int): best = rec['best_epoch'] + 1   # recorded (0-based)
    value = rows[best - 1].get(mon) if mon and best and best <= len(rows) else None
    if said is None and n and cap:   # not recorded: inferred from the epoch count and the cap
        said = f"{'cap' if n >= cap else 'patience'} (inferred: {n} of {cap} epochs)"
    return dict(folder=folder.name if folder.parent.name != 'cls' else f'cls/{folder.name}', epochs=n, cap=cap,
                stopped_by=said, monitor=mon, best_epoch=best, best_value=value, branch_mAP=rec.get('branch_mAP') if isinstance(rec, dict) else None,
                seconds=rec.get('train_time') if isinstance(rec, dict) else None,
                still_improving=bool(best and len(rows) > 1 and best == n and n >= (cap or 10**9)))

def stops(run:Path)->list:
    "The stop of every erasing classifier (cls/step*/) and segmentation network (seg_ssl/, seg_ssl_pretrained/, seg/, seg_gt/) of a run."
    cfg = _read(run / 'config.json') or {}
    cfg = cfg.get('config', cfg)
    e = cfg.get('erasing', {}) if isinstance(cfg.get('erasing'), dict) else {}
    seg = cfg.get('seg', {}) if isinstance(cfg.get('seg'), dict) else {}
    cls_cap, seg_cap = e.get('epochs', cfg.get('epochs')), seg.get('epochs', cfg.get('seg_epochs'))   # the tree; older runs: flat
    steps = sorted((run / 'cls').glob('step*'), key=lambda p: int(''.join(c for c in p.name if c.isdigit()) or 0))
    return [_stop(p, cls_cap) for p in steps] + [_stop(run / n, seg_cap) for n in ('seg_ssl', 'seg_ssl_pretrained', 'seg', 'seg_gt') if (run / n).is_dir()]

def ladder(run:Path)->list:
    m = _read(run / 'metrics.json') or {}
    return [dict(rung=r['rung'], mIoU=r['mIoU'], **({'network': r['network']} if 'network' in r else {})) for r in m.get('ladder', [])]

def reference(data:Path, run:Path, ov:dict)->list:
    """The same segmentation network, trained the same way on the training split's ground-truth masks (stopped on the
    held-out images' masks): `Pipeline.train_seg(labels='gt')` and `Pipeline.predict` in the run folder, as `seg_gt/`,
    `pred_gt/` and `pred_gt_crf/` (resumable like the run's own stages), with the run's `test_prohibit`; then both
    networks (the reference and the AE-PSL rungs') with `test_prohibit` forced on and off (scores weighted by the
    network's classification branch, [1, v] ⊗ f, or not), as `pred_{gt,psl}_{on,off}[_crf]/`: the check of the
    preset's 'auto'. The evaluation split is read only to score."""
    from aepsl.pipeline import Pipeline, evaluate_predictions
    p = Pipeline(str(data), str(run), 'cpu', progress=False, **ov)
    p.erasing()   # finished: it only reads the steps (the later stages need its statistics)
    p.train_seg('seg_gt', psl=False, labels='gt')
    p.predict('pred_gt', 'seg_gt')
    p.predict('pred_gt_crf', 'seg_gt', crf=True)
    rows = [dict(rung=f'ground truth (reference){c}', mIoU=evaluate_predictions(run / f, p.ev)['mIoU'])
            for f, c in (('pred_gt', ''), ('pred_gt_crf', ' + CRF'))]
    for key, net, name in (('psl', p.psl_network()['net'], 'AE-PSL'), ('gt', 'seg_gt', 'ground truth (reference)')):
        for pro in (True, False):
            for crf in (False, True):
                f = f"pred_{key}_{'on' if pro else 'off'}{'_crf' if crf else ''}"
                p.predict(f, net, crf=crf, prohibit=pro)
                rows.append(dict(rung=f"{name}, [1, v] {'on' if pro else 'off'}{' + CRF' if crf else ''}",
                                 mIoU=evaluate_predictions(run / f, p.ev)['mIoU']))
    return rows

CLIMB = ('CAM', 'AE', 'AE-SSL', 'AE-PSL', 'AE-PSL + CRF')

def verdict(lad:list, st:list)->dict:
    "The issue's bar, per set: stops by patience, the ladder's climb, AE-PSL + CRF against the reference + CRF."
    r = {x['rung']: x['mIoU'] for x in lad}
    ae = [x['mIoU'] for x in lad if ' step ' in x['rung']]
    v = [r.get('CAM'), ae[-1] if ae else None, r.get('AE-SSL'), r.get('AE-PSL'), r.get('AE-PSL + CRF')]
    ok = all(x is not None for x in v)
    ref = r.get('ground truth (reference) + CRF')
    return dict(all_by_patience=all(str(s['stopped_by']).startswith('patience') for s in st),
                climbs=ok and v[0] < v[1] < v[2] <= v[3] <= v[4],
                pct_of_reference=round(100 * r['AE-PSL + CRF'] / ref, 1) if ok and ref else None)

def table(res:dict)->str:
    "Markdown: the two ladders side by side, then the stops."
    names = list(res)
    rungs = []
    for n in names:
        for r in res[n]['ladder']:
            if r['rung'] not in rungs: rungs.append(r['rung'])
    lines = ['| rung | ' + ' | '.join(f"{n} ({res[n]['n_train']} + {res[n]['n_val']} images)" for n in names) + ' |',
             '|---|' + '---|' * len(names)]
    for g in rungs:
        v = [next((f"{r['mIoU']:.2f}" for r in res[n]['ladder'] if r['rung'] == g), '–') for n in names]
        lines.append(f'| {g} | ' + ' | '.join(v) + ' |')
    used = [next((r.get('network', '–') for r in res[n]['ladder'] if r['rung'] == 'AE-PSL'), '–') for n in names]
    lines.append("| network of the AE-PSL rungs (`psl_rho`: AE-SSL's — seg_ssl, or seg_ssl_pretrained where `seg_fallback` was kept — "
                 "where AE-PSL did not hold on the held-out images) | "
                 + ' | '.join(f'`{u}`' for u in used) + ' |')
    lines += ['', '| set | network | epochs | cap | stopped by | best epoch (monitor there) | branch mAP (held out) | seconds of training |',
              '|---|---|---|---|---|---|---|---|']
    for n in names:
        for s in res[n]['stops']:
            flag = ' — still improving at the cap' if s['still_improving'] else ''
            bm = f"{s['branch_mAP']:.3f}" if isinstance(s.get('branch_mAP'), float) else '–'
            lines.append(f"| {n} | {s['folder']} | {s['epochs']} | {s['cap']} | {s['stopped_by']}{flag} | "
                         + (f"{s['best_epoch']} ({s['monitor']} {s['best_value']:.3f})" if isinstance(s.get('best_value'), float) else
                            f"{s['best_epoch']} ({s['monitor']})") + f" | {bm} | "
                         + (f"{s['seconds']:.0f}" if isinstance(s.get('seconds'), (int, float)) else '–') + ' |')
    lines += ['', '| set | every network stopped by patience | CAM < AE < AE-SSL ≤ AE-PSL ≤ AE-PSL + CRF | AE-PSL + CRF, % of the reference + CRF (bar: 90) |',
              '|---|---|---|---|']
    for n in names:
        v = res[n]['verdict']
        lines.append(f"| {n} | {'yes' if v['all_by_patience'] else 'no'} | {'yes' if v['climbs'] else 'no'} | {v['pct_of_reference']} |")
    for n in names:   # what each run told its user (metrics.json's flags)
        lines += ['', f"Warnings of the {n} run:" if res[n].get('flags') else f"The {n} run gave no warning."]
        lines += [''] * bool(res[n].get('flags')) + [f'- {f}' for f in res[n].get('flags', [])]
    return '\n'.join(lines)

def _value(v:str):
    try: return json.loads(v)
    except ValueError: return v

def main(argv=None):
    from aepsl.cli import DEMO
    ap = parser(__doc__)
    ap.add_argument('--work', default='runs/carry', help='folder of the two data sets and the two run folders (default: runs/carry)')
    ap.add_argument('--n_train', type=int, default=1000, help='training images of the hard variant (default 1000)')
    ap.add_argument('--n_val', type=int, default=200, help='validation images of the hard variant, scored at the end (default 200)')
    ap.add_argument('--builtin_n_train', type=int, default=DEMO['n_train'], help=f"built-in set: the demo's {DEMO['n_train']}")
    ap.add_argument('--builtin_n_val', type=int, default=DEMO['n_val'], help=f"built-in set: the demo's {DEMO['n_val']}")
    ap.add_argument('--sets', default='builtin,hard', help='which sets to run, comma-separated (default: both)')
    ap.add_argument('--results', help='results path without suffix (.md and .json); default bench/results/carry, '
                                      'or --work/carry_not_defaults with --override or --smoke')
    g = ap.add_argument_group('NOT the defaults (results go to --work unless --results names a file; never to bench/results/carry)')
    g.add_argument('--override', action='append', default=[], metavar='KEY=VALUE',
                   help='an aepsl_run argument, e.g. cls_epochs=1 (repeatable)')
    g.add_argument('--smoke', action='store_true', help='tiny sets (12 + 6 images) and cls_epochs=1, seg_epochs=1, max_steps=1')
    a = ap.parse_args(argv)
    ov = {}
    for kv in a.override:
        if '=' not in kv: ap.error(f'--override {kv!r}: write KEY=VALUE')
        k, v = kv.split('=', 1); ov[k.strip()] = _value(v)
    if a.smoke:
        ov = dict(dict(cls_epochs=1, seg_epochs=1, max_steps=1), **ov)
        a.n_train = a.builtin_n_train = min(a.n_train, 12); a.n_val = a.builtin_n_val = min(a.n_val, 6)
    sets = [s.strip() for s in a.sets.split(',') if s.strip()]
    if bad := [s for s in sets if s not in SETS]: ap.error(f'--sets: unknown {bad}; known: {", ".join(SETS)}')
    work = Path(a.work); work.mkdir(parents=True, exist_ok=True)
    default = HERE / 'results' / 'carry'
    results = Path(a.results) if a.results else default if not (ov or a.smoke) else work / 'carry_not_defaults'
    if (ov or a.smoke) and results.resolve() == default.resolve(): ap.error('--results: bench/results/carry records the defaults only')
    from aepsl.cli import aepsl_run
    m, res = machine(), {}
    print(f"{m['platform']}, {m['cpu']}, {m['cpu_count']} cores, torch {m['torch']} ({m['torch_threads']} threads)", flush=True)
    for s in sets:
        nt, nv = (a.builtin_n_train, a.builtin_n_val) if s == 'builtin' else (a.n_train, a.n_val)
        data = write_set(work / f'data_{s}', None if s == 'builtin' else s, nt, nv)
        out = work / f'run_{s}'
        t = time.time()
        print(f"aepsl_run(data={str(data)!r}, out={str(out)!r}, config='cpu'" + ''.join(f', {k}={v!r}' for k, v in ov.items()) + ')', flush=True)
        try: aepsl_run(data=str(data), out=str(out), config='cpu', quiet=True, **ov)
        except SystemExit as e:
            if e.code not in (None, 0): sys.exit(f'{s}: aepsl_run stopped: {e.code}')
        lad = ladder(out) + reference(data, out, ov)
        st = (_read(out / 'metrics.json') or {}).get('stages', {})   # every stage's seconds, whichever call ran it
        res[s] = dict(n_train=nt, n_val=nv, data=str(data), run=str(out), seconds=round(time.time() - t, 1),
                      run_seconds=round(sum(v['seconds'] for v in st.values()), 1), ladder=lad, stops=stops(out),
                      flags=(_read(out / 'metrics.json') or {}).get('flags', []),
                      seg_arch=((_read(out / 'seg_gt' / 'done.json') or {}).get('config') or {}).get('arch'))   # AE-SSL's kept network's
        res[s]['verdict'] = verdict(lad, res[s]['stops'])
    from aepsl.psl import MIN_BRANCH_MAP
    archs = ' / '.join(dict.fromkeys(f"`{v['seg_arch']}`" for v in res.values()))
    text = '\n'.join([f"`python bench/carry.py{' ' + ' '.join(argv if argv is not None else sys.argv[1:]) if (argv or sys.argv[1:]) else ''}`"
                      + (f" — NOT the defaults: {ov}" if ov else ''), '',
                      f"Machine: {m['platform']}; {m['cpu']}, {m['cpu_count']} cores; torch {m['torch']} ({m['torch_threads']} threads); "
                      f"Python {m['python']}", '',
                      f"`aepsl_run --config cpu` with {'the overrides above' if ov else 'no other flag'}; mIoU (%) on each set's "
                      "val split. Seconds of `aepsl_run`'s stages (metrics.json, this machine): " + ', '.join(f"{k} {v['run_seconds']:.0f} s" for k, v in res.items())
                      + f"; the reference rows: the same segmentation network ({archs}), recipe and stopping rule, trained on the training split's masks "
                        "(`Pipeline.train_seg(labels='gt')`); the ladder's rows use the `cpu` preset's `test_prohibit='auto'` (a network's "
                        f"scores weighted by its classification branch, [1, v] ⊗ f, where the branch's held-out mAP is ≥ {MIN_BRANCH_MAP}); the rows "
                        "'[1, v] on/off' force it for the AE-PSL rungs' network and the reference.", '',
                      table(res), ''])
    results.parent.mkdir(parents=True, exist_ok=True)
    results.with_suffix('.md').write_text(text)
    results.with_suffix('.json').write_text(json.dumps(dict(machine=m, overrides=ov, sets=res), indent=1))
    print(text, flush=True)
    print(f'written: {results.with_suffix(".md")}, {results.with_suffix(".json")}')

if __name__ == '__main__': main()
