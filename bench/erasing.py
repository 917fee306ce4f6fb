"""Adversarial erasing on the built-in benchmark at the command line's size: mined-region quality of CAM alone,
Hide-and-Seek, ACoL and AE per step (with the stopping rule's choice), and the wall-time overhead of mining and
erasing-on-load over plain classifier training. Writes bench/results/erasing.json (read by nbs/04_erasing.ipynb) and erasing.md (included in the README).

    python bench/erasing.py [--n_train 600] [--n_holdout 200] [--steps 4]
"""
import argparse, json, platform, statistics, subprocess, sys, time
from pathlib import Path
import torch
from aepsl.data import SyntheticWSSS
from aepsl.train import default_device, set_seed
from aepsl.erasing import MINERS, PRESETS, load_erased

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument('--n_train', type=int, default=600); p.add_argument('--n_holdout', type=int, default=200)
p.add_argument('--steps', type=int, default=4); p.add_argument('--out', default='bench/results/erasing.json')
p.add_argument('--run', default='/tmp/aepsl_bench_erasing', help='AE run folder (resumed when it exists)')
p.add_argument('--skip_baselines', action='store_true', help='only AE and the overhead')
p.add_argument('--runs', type=int, default=5, help='repetitions of the overhead timing (medians)')
p.add_argument('--overhead_epochs', type=int, default=4, help='epochs per timed training (the first is not counted)')
a = p.parse_args()

def machine():
    cpu = next((l.split(':', 1)[1].strip() for l in subprocess.run(['lscpu'], capture_output=True, text=True).stdout.splitlines()
                if l.startswith('Model name')), platform.processor())
    return f"{cpu}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, device {default_device()}"

trn, hold = SyntheticWSSS(a.n_train, seed=0), SyntheticWSSS(a.n_holdout, seed=1)
C = len(trn.classes)
def table()->str:
    "Markdown of what is known so far: the command, the machine, the methods' table, the per-step table, the overhead."
    md = [f"`{res['command']}` on {res['machine']}", '', '| method | held-out mAP | mIoU | precision | recall |', '|---|---|---|---|---|']
    md += [f"| {r['method']} | {r['held_out_mAP'] if r['held_out_mAP'] is not None else '–'} | {r['mIoU']} | {r['precision']} | {r['recall']} |"
           for r in res.get('rows', [])]
    if 'Hide-and-Seek' not in {r['method'] for r in res.get('rows', [])}: md += ['', '(Hide-and-Seek and ACoL: not run yet.)']
    if res.get('steps'):
        md += ['', '| AE step | epochs | held-out mAP | ratio to step 1 | mIoU | precision of the added pixels |', '|---|---|---|---|---|---|']
        md += [f"| {r['step']} | {r['epochs']} | {r['holdout_mAP']} | {r['mAP_ratio']} | {r['mIoU']} | {r['added_precision']} |" for r in res['steps']]
        md += ['', f"The stopping rule (ρ = {res['rule_rho']}, cap of {res['rule_cap']} steps: the `cpu` preset's) keeps {res['steps_used_by_rule']} steps."]
    if 'overhead_pct' in res:
        per = res['s_per_epoch']
        md += ['', f"Overhead of AE over plain training, {res['overhead_runs']} interleaved runs of {res['overhead_epochs']} epochs per "
                   f"timed training (medians): the classifiers train {per['plain']} s per epoch on plain images and "
                   + ', '.join(f"{v} s at step {k}" for k, v in per.items() if k != 'plain') + " on erased ones; with each step's "
                   f"epochs and the mining ({res['mining_s']} s), the {len(res['steps'])} AE steps take {res['ae_s']} s against "
                   f"{res['plain_training_s']} s for the same epochs on plain images: **overhead {res['overhead_pct']:+.1f} %** "
                   f"(target ≤ 10 %). The AE run itself took {res['ae_run_s']} s (one run)."]
    return '\n'.join(md) + '\n'

def save(**extra):
    "Write what is known so far (the script can be stopped between parts): the .json and a .md beside it."
    res.update(extra)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1) + '\n')
    Path(a.out).with_suffix('.md').write_text(table())

res = dict(command=' '.join(['python'] + sys.argv), machine=machine())
out = a.run
ae = MINERS('ae', trn, hold, out, max_steps=a.steps, rho=0.01)   # the erasing stage of aepsl_run
t0 = time.perf_counter(); steps = ae.run(); t_ae = time.perf_counter() - t0
quality = ae.evaluate()
n_rule = ae.run(max_steps=min(a.steps, PRESETS['cpu'].max_steps), rho=PRESETS['cpu'].rho) and ae.n_used   # the rule over the steps run, never more
mean, std = ae.stats()
q = lambda d: {k: d[k] for k in ('mIoU', 'precision', 'recall')}
steps_rows = [dict(step=s['step'], epochs=s['epochs_trained'], holdout_mAP=round(s['holdout_mAP'], 3), mAP_ratio=round(s['mAP_ratio'], 3),
                   train_s=s['train_time'], mine_s=s['mine_time'], resumed=s['resumed'],
                   **{k: v for k, v in qq.items() if k != 'step'}) for s, qq in zip(steps, quality)]
rows = [dict(method='CAM alone (one classifier)', held_out_mAP=round(steps[0]['holdout_mAP'], 3), **q(quality[0]))]
for s, qq in zip(steps[1:], quality[1:]):
    note = ' (where the stopping rule stops)' if s['step'] == n_rule else ' (past the stopping rule)' if s['step'] > n_rule else ''
    rows.append(dict(method=f"AE, {s['step']} steps{note}", held_out_mAP=round(s['holdout_mAP'], 3), **q(qq)))
save(rows=rows, steps=steps_rows, steps_used_by_rule=n_rule, rule_rho=PRESETS['cpu'].rho, rule_cap=PRESETS['cpu'].max_steps, mining_s=round(sum(s['mine_time'] for s in steps), 1))
print(json.dumps(res, indent=1), flush=True)

# The overhead of AE over training the same classifiers on the plain images: each step t >= 2's classifier trained as
# `train_step` trains it (`fit_step`), on its erased images and on step 1's (nothing erased: the plain pipeline), for
# --overhead_epochs epochs, interleaved, --runs times. Seconds per epoch (medians) times each step's recorded epochs,
# plus the recorded mining time, against the same epochs on plain images.
first = next((ae.out / 'mined' / 'step1' / 'train').glob('*.npz'))
if load_erased(first) is None: print(f"warning: {a.run} was mined by an older version (no union per image): erasing reads every "
                                     f"earlier step's file; delete it for the current cost", flush=True)
def per_epoch(t, erased):
    "Median seconds per epoch of step t's classifier on its erased images (or the plain ones)."
    trn_t, hold_t = ae.datasets(t if erased else 1)
    set_seed(ae.seed + t)
    h = ae.fit_step(ae.make_model(C), trn_t, hold_t, t, epochs=a.overhead_epochs, patience=None, progress=False)
    return statistics.median(e['time'] for e in h[1:] or h)   # the first epoch pays one-time costs
later = [s['step'] for s in steps if s['step'] > 1]
runs = {'plain': [], **{t: [] for t in later}}
for r in range(a.runs):
    runs['plain'].append(per_epoch(2, False))
    for t in later: runs[t].append(per_epoch(t, True))
    print(f"run {r + 1}: plain {runs['plain'][-1]} s/epoch, erased " + ', '.join(f"step {t} {runs[t][-1]}" for t in later), flush=True)
med = {k: statistics.median(v) for k, v in runs.items()}
ep = {s['step']: s['epochs_trained'] for s in steps}
t_plain = sum(ep.values()) * med['plain']
t_mine = sum(s['mine_time'] for s in steps)
t_ae = ep[1] * med['plain'] + sum(ep[t] * med[t] for t in later) + t_mine
save(ae_s=round(t_ae, 1), plain_training_s=round(t_plain, 1), overhead_pct=round(100 * (t_ae / t_plain - 1), 1),
     overhead_runs=a.runs, overhead_epochs=a.overhead_epochs, s_per_epoch={str(k): round(v, 3) for k, v in med.items()},
     ae_run_s=round(sum(s['train_time'] + s['mine_time'] for s in steps), 1))
print(f"AE {t_ae:.1f} s vs plain {t_plain:.1f} s: overhead {res['overhead_pct']:+.1f} %", flush=True)
if a.skip_baselines: sys.exit(0)

# baselines: the miners `aepsl_run --miner has|acol` runs (aepsl.erasing.MINERS), one classifier each, the same delta
base = {}
for name in ('has', 'acol'):
    m = MINERS(name, trn, hold, f'{out}_{name}', seed=0)
    st = m.run()
    base[name] = (round(st[0]['holdout_mAP'], 3), q(m.evaluate()[0]))
has_q, acol_q = base['has'], base['acol']

rows[1:1] = [dict(method='Hide-and-Seek', held_out_mAP=has_q[0], **has_q[1]), dict(method='ACoL', held_out_mAP=acol_q[0], **acol_q[1])]
save(rows=rows)
print(table())
