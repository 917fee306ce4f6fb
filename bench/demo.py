"""Time `aepsl_demo` (defaults, fresh run folder each time) and record its results for the README.
Usage: python bench/demo.py [--runs 3] [--keep DIR]
Each run is a fresh process on a fresh folder; writes bench/results/demo.md: the machine, the wall time of every run
and their median, whether the runs' ladders agree, and the last run's results.md (the table `aepsl_demo` prints); and
copies the last run's figures/ladder.png to nbs/images/demo_ladder.png, the figure the README shows."""
import argparse, json, os, platform, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path
from aepsl.runs import atomic_write

def machine():
    import torch
    cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), platform.processor())
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}"

def run(out):
    "One `aepsl_demo --out OUT --quiet` (the installed console script) in its own process: (wall s, metrics, results.md)."
    t = time.time()
    exe = shutil.which('aepsl_demo', path=str(Path(sys.executable).parent)) or shutil.which('aepsl_demo')
    if exe is None: sys.exit('the aepsl_demo console script is not installed: pip install -e .')
    r = subprocess.run([exe, '--out', str(out), '--quiet'], capture_output=True, text=True)
    if r.returncode: sys.exit(f'aepsl_demo failed (exit {r.returncode}):\n{r.stderr[-3000:]}')
    wall = time.time() - t
    return wall, json.loads((out / 'metrics.json').read_text()), (out / 'results.md').read_text()

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--runs', type=int, default=3, help='number of timed runs (median reported)')
    ap.add_argument('--keep', default=None, help='folder for the run folders (default: a temporary one)')
    ap.add_argument('--out', default=str(Path(__file__).parent / 'results' / 'demo.md'), help='where to write the record')
    ap.add_argument('--figure', default=str(Path(__file__).parent.parent / 'nbs' / 'images' / 'demo_ladder.png'),
                    help="where to copy the last run's figures/ladder.png ('' : nowhere)")
    a = ap.parse_args()
    if a.runs < 1: sys.exit('--runs must be ≥ 1')
    root = Path(a.keep or tempfile.mkdtemp(prefix='aepsl_demo_bench_'))
    root.mkdir(parents=True, exist_ok=True)
    m = machine()
    print(m, flush=True)
    walls, ladders, results = [], [], None
    for k in range(a.runs):
        out = root / f'run{k}'
        if out.exists(): sys.exit(f'{out} exists: use an empty --keep folder (each timed run starts from nothing)')
        wall, metrics, results = run(out)
        walls.append(wall)
        ladders.append([(r['rung'], r['mIoU']) for r in metrics['ladder']])
        print(f'run {k + 1}/{a.runs}: {wall:.0f} s, final mIoU {metrics["final_mIoU"]}', flush=True)
    same = all(l == ladders[0] for l in ladders)
    text = '\n'.join([f'`python bench/demo.py --runs {a.runs}` on {m}', '',
                      f"`aepsl_demo` wall time: {', '.join(f'{w:.0f} s' for w in walls)}; median {statistics.median(walls):.0f} s "
                      f"({statistics.median(walls) / 60:.1f} min)", '',
                      'The ladders of the runs are identical.' if same else 'The ladders of the runs differ (see each run folder).',
                      '', 'The last run\'s `results.md`:', '', results.strip(), ''])
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(text)
    if a.figure: atomic_write(a.figure, lambda f: shutil.copyfile(out / 'figures' / 'ladder.png', f))
    print(text)
