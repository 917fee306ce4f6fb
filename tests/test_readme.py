"README.md is the front page notebook, and its first two commands are the ones CI and newcomers run."
import re, subprocess, sys
from pathlib import Path
root = Path(__file__).resolve().parents[1]

def test_readme_in_step_with_index():
    r = subprocess.run([sys.executable, str(root / 'tools' / 'make_readme.py'), '--check'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

def test_first_two_commands():
    cmds = re.findall(r'```sh\n(.*?)\n```', (root / 'README.md').read_text())
    assert len(cmds) >= 2
    assert cmds[0].startswith('pip install -e .') and 'aepsl_' in cmds[0]
    assert cmds[1] == 'pip install -e ".[dev]" && nbdev_test && pytest -q tests'
    ci = (root / '.ci' / 'run').read_text()
    assert 'pip install -q -e ".[dev]"' in ci and 'nbdev_test' in ci and 'pytest -q tests' in ci
