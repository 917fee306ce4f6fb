"""How long each notebook takes to run, as `nbdev_test` runs it (cells flagged cuda/slow/notest skipped), one at a time.

Usage: python bench/notebooks.py [--runs 3] [nbs/04_erasing.ipynb ...]

Executes copies of the notebooks (the committed ones are not touched) in their folder, `--runs` times each, and
prints, and writes to bench/results/notebooks.md and .json: every run's seconds, the median, and whether it is within
the project's limit of 4 minutes per notebook on this machine. Run it with nothing else running: two torch threads on
two cores slow down many times when another job shares them."""
import argparse, json, os, platform, re, statistics, sys, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LIMIT_S = 240

def run_once(path:Path)->float:
    "Seconds to run every unflagged cell of the notebook at `path`, in its folder, in a fresh kernel-less shell."
    from execnb.nbio import read_nb
    from execnb.shell import CaptureShell
    nb = read_nb(path)
    def preproc(cell):
        return cell.cell_type != 'code' or bool(set(re.findall(r'^#\|\s*(\w+)\s*$', cell.source, re.M)) & {'cuda', 'slow', 'notest'})
    cwd = os.getcwd()
    os.chdir(path.parent)
    t = time.time()
    try: CaptureShell(path, mpl_format='png').run_all(nb, exc_stop=True, preproc=preproc)
    finally: os.chdir(cwd)
    return time.time() - t

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('nbs', nargs='*', help='notebooks (default: every nbs/*.ipynb)')
    ap.add_argument('--runs', type=int, default=3, help='runs per notebook; the median is reported (default 3)')
    ap.add_argument('--results', default=str(HERE / 'results' / 'notebooks'), help='results path without suffix')
    a = ap.parse_args(argv)
    os.environ.setdefault('MPLBACKEND', 'Agg')
    paths = [Path(p).resolve() for p in a.nbs] or sorted((HERE.parent / 'nbs').glob('*.ipynb'))
    if bad := [str(p) for p in paths if not p.is_file()]: sys.exit(f'not found: {bad}')
    import torch
    cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), '') \
          if Path('/proc/cpuinfo').is_file() else platform.processor()
    machine = f"{platform.platform()}; {cpu}, {os.cpu_count()} cores; torch {torch.__version__} ({torch.get_num_threads()} threads)"
    print(machine, flush=True)
    rows = []
    for p in paths:
        secs = []
        for _ in range(a.runs):
            secs.append(round(run_once(p), 1))
            print(f'{p.name}: {secs[-1]} s', flush=True)
        rows.append(dict(notebook=p.name, seconds=secs, median=statistics.median(secs)))
        rows[-1]['within_limit'] = rows[-1]['median'] <= LIMIT_S
    cmd = 'python bench/notebooks.py' + (' ' + ' '.join(argv if argv is not None else sys.argv[1:]) if (argv or sys.argv[1:]) else '')
    md = [f'`{cmd}`', '', f'Machine: {machine}', '',
          f'| notebook | runs (s) | median (s) | ≤ {LIMIT_S} s |', '|---|---|---|---|']
    md += [f"| {r['notebook']} | {' / '.join(map(str, r['seconds']))} | {r['median']:.1f} | {'yes' if r['within_limit'] else '**no**'} |"
           for r in rows]
    md += ['', f"Total of the medians: {sum(r['median'] for r in rows):.0f} s.", '']
    out = Path(a.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix('.md').write_text('\n'.join(md))
    out.with_suffix('.json').write_text(json.dumps(dict(command=cmd, machine=machine, limit_s=LIMIT_S, notebooks=rows), indent=1))
    print('\n'.join(md))

if __name__ == '__main__': main()
