"""How seed-dependent is erasing's stopping rule? The held-out mAP ratio of every step (mAP_t / mAP_1), with the
rule off, over seeds, on the built-in set at the demo's size: the evidence a choice of ρ (the `cpu` preset's `rho`)
or of the held-out fraction rests on.

For each held-out fraction and seed: `aepsl.cli.aepsl_run(config='cpu', seed=S, holdout_frac=F, rho=0.01,
stop_after='erasing')` (every step up to the cap of 3 trains: the rule is off), then the regions of every step are
scored against the training masks (`AdversarialErasing.evaluate`). The table gives each step's ratio and mIoU, and
how many steps the rule would keep at each ρ of `--rhos` (it stops at the first step whose ratio falls below ρ).

    python bench/erasing_seeds.py [--work runs/erasing_seeds] [--seeds 0,1,2,3,4,5] [--fracs 0.1] [--rhos 0.5,0.6]

Writes bench/results/erasing_seeds.md and .json; rerunning reuses the written set and every finished run.
"""
import json, sys, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from carry import write_set, machine, parser   # the same data-set writer and machine line as the carry check


def kept(ratios:list, rho:float)->int:
    "Steps the rule keeps: step 1, then each next step while its ratio is at least ρ."
    n = 1
    for r in ratios[1:]:
        if r < rho: break
        n += 1
    return n


def one(data:Path, out:Path, seed:int, frac:float)->dict:
    from aepsl.cli import aepsl_run
    from aepsl.pipeline import Pipeline
    kw = dict(config='cpu', seed=seed, holdout_frac=frac, rho=0.01)
    t = time.time()
    try: aepsl_run(data=str(data), out=str(out), stop_after='erasing', quiet=True, **kw)
    except SystemExit as e:
        if e.code not in (None, 0): sys.exit(f'seed {seed}, holdout_frac {frac}: aepsl_run stopped: {e.code}')
    p = Pipeline(str(data), str(out), progress=False, **kw)
    p.erasing()   # finished: it reads the steps back
    q = p.ae.evaluate()
    return dict(seed=seed, holdout_frac=frac, n_holdout=len(p.hold.ids), ratios=[round(s['mAP_ratio'], 3) for s in p.ae.steps],
                mIoU=[x['mIoU'] for x in q], seconds=round(time.time() - t, 1))


def main(argv=None):
    from aepsl.cli import DEMO
    ap = parser(__doc__)
    ap.add_argument('--work', default='runs/erasing_seeds', help='folder of the data set and the run folders')
    ap.add_argument('--seeds', default='0,1,2,3,4,5', help='seeds, comma-separated (default 0-5)')
    ap.add_argument('--fracs', default='0.1', help="held-out fractions, comma-separated (default 0.1, the presets')")
    ap.add_argument('--rhos', default='0.5,0.6', help='values of ρ to apply to the ratios (default 0.5,0.6)')
    ap.add_argument('--results', default=str(HERE / 'results' / 'erasing_seeds'), help='results path without suffix')
    a = ap.parse_args(argv)
    seeds, fracs, rhos = ([t(x) for x in s.split(',') if x.strip()] for t, s in ((int, a.seeds), (float, a.fracs), (float, a.rhos)))
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    data = write_set(work / 'data', None, DEMO['n_train'], DEMO['n_val'])
    m = machine()
    mline = f"{m['cpu']}, {m['cpu_count']} cores, torch {m['torch']} ({m['torch_threads']} threads), Python {m['python']}"
    print(mline, flush=True)
    rows = []
    for f in fracs:
        for s in seeds:
            rows.append(one(data, work / f'run_f{f}_s{s}', s, f))
            print(f"holdout_frac {f}, seed {s}: ratios {rows[-1]['ratios']}, mIoU {rows[-1]['mIoU']}", flush=True)
    cmd = 'python bench/erasing_seeds.py' + ''.join(f' {x}' for x in (argv if argv is not None else sys.argv[1:]))
    md = [f"`{cmd}`", '', f"Machine: {mline}", '',
          f"The built-in set at the demo's size ({DEMO['n_train']} training images), `aepsl_run --config cpu --rho 0.01 "
          f"--stop_after erasing` (the rule off: every step up to the cap trains); ratio = held-out mAP of step t / step 1's; "
          f"mIoU of the regions mined up to each step, on the training masks (%).", '',
          '| held-out fraction (images) | seed | ratio, steps 2, 3 | mIoU, steps 1, 2, 3 | ' + ' | '.join(f'steps kept at ρ = {r}' for r in rhos) + ' |',
          '|---|---|---|---|' + '---|' * len(rhos)]
    for r in rows:
        md.append(f"| {r['holdout_frac']} ({r['n_holdout']}) | {r['seed']} | {', '.join(f'{x:.2f}' for x in r['ratios'][1:])} | "
                  f"{', '.join(f'{x:.1f}' for x in r['mIoU'])} | " + ' | '.join(str(kept(r['ratios'], rho)) for rho in rhos) + ' |')
    for rho in rhos:
        n1 = sum(kept(r['ratios'], rho) == 1 for r in rows)
        md.append(f"\nAt ρ = {rho}, {n1} of {len(rows)} runs keep step 1 alone.")
    res = Path(a.results)
    res.parent.mkdir(parents=True, exist_ok=True)
    res.with_suffix('.json').write_text(json.dumps(dict(command=cmd, machine=mline, rows=rows, rhos=rhos), indent=1))
    res.with_suffix('.md').write_text('\n'.join(md) + '\n')
    print('\n'.join(md), flush=True)


if __name__ == '__main__': main()
