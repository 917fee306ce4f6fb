#!/usr/bin/env python
"""Execute notebooks in place and save their outputs (figures are committed with the notebooks).
Cells flagged `#| cuda`, `#| slow` or `#| notest` are skipped unless named with --flags, as `nbdev_test` does.
Usage: python tools/run_nb.py nbs/04_erasing.ipynb [more.ipynb] [--flags cuda]"""
import os, re, sys, time
os.environ.setdefault('MPLBACKEND', 'Agg')
from pathlib import Path
from execnb.nbio import read_nb, write_nb
from execnb.shell import CaptureShell

def run_nb(path, flags=()):
    "Run every cell of notebook `path` (skipping flagged cells) in its folder and write the outputs back."
    path = Path(path).resolve()
    skip = {'cuda', 'slow', 'notest'} - set(flags)
    def preproc(cell):
        if cell.cell_type != 'code': return True
        fl = set(re.findall(r'^#\|\s*(\w+)\s*$', cell.source, re.M))
        if fl & skip:
            cell.outputs = []
            return True
        return False
    nb = read_nb(path)
    cwd = os.getcwd()
    os.chdir(path.parent)
    t0 = time.time()
    try: CaptureShell(path, mpl_format='png').run_all(nb, exc_stop=True, preproc=preproc)
    finally: os.chdir(cwd)
    write_nb(nb, path)
    return time.time() - t0

if __name__ == '__main__':
    args = sys.argv[1:]
    flags = args[args.index('--flags') + 1].split(',') if '--flags' in args else []
    nbs = [a for i, a in enumerate(args) if not a.startswith('--') and (i == 0 or args[i - 1] != '--flags')]
    for p in nbs: print(f'{p}: {run_nb(p, flags):.1f} s', flush=True)
