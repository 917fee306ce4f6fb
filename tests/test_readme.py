"README.md is the front page notebook; the console scripts its commands call exist, parse the flags it passes, and its test command is the one CI runs."
import configparser, importlib, os, re, shlex, subprocess, sys
from pathlib import Path
root = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, OMP_NUM_THREADS='1', MPLBACKEND='Agg')

def test_readme_in_step_with_index():
    r = subprocess.run([sys.executable, str(root / 'tools' / 'make_readme.py'), '--check'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

def sh_blocks(): return re.findall(r'```sh\n(.*?)\n```', (root / 'README.md').read_text(), re.S)

def commands(block):
    "Each command of a shell block (comments dropped, split at && ; |) as a token list."
    out = []
    for line in block.splitlines():
        line = line.split('#', 1)[0] if line.lstrip().startswith('#') else line
        for part in re.split(r'&&|;|\|', line):
            if toks := shlex.split(part): out.append(toks)
    return out

def aepsl_calls():
    "(script, flags) of every aepsl console script the README runs, also under torchrun --no-python."
    calls = []
    for block in sh_blocks():
        for toks in commands(block):
            for j, t in enumerate(toks):
                if t.startswith('aepsl_') and (j == 0 or toks[j - 1] == '--no-python'):
                    calls.append((t, [a.split('=')[0] for a in toks[j + 1:] if a.startswith('--')]))
    return calls

def console_scripts():
    cfg = configparser.ConfigParser(); cfg.read(root / 'settings.ini')
    return dict(s.split('=') for s in cfg['DEFAULT']['console_scripts'].split())

def test_readme_scripts_exist_and_parse_its_flags(tmp_path):
    "Every aepsl_* the README runs is a console script of settings.ini whose entry point imports, and whose --help lists each flag the README passes."
    calls, eps = aepsl_calls(), console_scripts()
    assert calls and calls[0][0] == 'aepsl_demo', calls   # the first command: install, then the demo
    assert {'aepsl_demo', 'aepsl_run'} <= {c for c, _ in calls}
    for name, flags in calls:
        assert name in eps, f"README runs {name}, which settings.ini's console_scripts does not install"
        mod, fn = eps[name].split(':')
        assert callable(getattr(importlib.import_module(mod), fn))
        (tmp_path / name).write_text(f'from {mod} import {fn}\n{fn}()\n')   # what the installed entry point runs
        r = subprocess.run([sys.executable, str(tmp_path / name), '--help'], capture_output=True, text=True, env=ENV,
                           cwd=tmp_path, timeout=120)
        assert r.returncode == 0, (name, r.stderr[-2000:])
        assert r.stdout.startswith(f'usage: {name}'), r.stdout[:300]
        for f in flags: assert re.search(rf'{re.escape(f)}\b', r.stdout), f"README passes {f} to {name}; its --help has no such flag"

def test_readme_test_command_is_what_ci_runs():
    "The README's second command (install with the dev extra, nbdev_test, pytest -q tests) is what .ci/run executes, and the dev extra holds the test tools."
    blocks = sh_blocks()
    assert len(blocks) >= 2
    readme = [' '.join(t) for t in commands(blocks[1])]
    assert readme == ['pip install -e .[dev]', 'nbdev_test', 'pytest -q tests'], readme
    ci = [' '.join(t) for t in commands('\n'.join(l for l in (root / '.ci' / 'run').read_text().splitlines() if not l.lstrip().startswith('#')))]
    strip = lambda c: re.sub(r'^python -m |\s-q(?=\s)| --\S+( \d+)?', '', c)   # `python -m pip install -q` is `pip install`; nbdev_test's flags
    assert 'pip install -e .[dev]' in map(strip, ci), ci
    assert 'nbdev_test' in map(strip, ci) and 'python -m pytest -q tests' in ci, ci
    assert ci.index('python -m pytest -q tests') > next(i for i, c in enumerate(ci) if c.startswith('nbdev_test'))
    cfg = configparser.ConfigParser(); cfg.read(root / 'settings.ini')
    dev = cfg['DEFAULT']['dev_requirements'].split()
    assert any(d.startswith('nbdev') for d in dev) and any(d.startswith('pytest') for d in dev), dev
