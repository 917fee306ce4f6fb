#!/usr/bin/env python
"""Write README.md from nbs/index.ipynb (nbdev_readme needs Quarto, which this project does not require).
Markdown cells are copied as they are; code cells become ```python blocks. A markdown line
`<!-- include: PATH -->` (PATH relative to the repository) is replaced by that file's text, so that numbers a
script wrote (bench/results/*.md) reach the README without being copied by hand. `--check` exits 1 when README.md
differs."""
import json, re, sys
from pathlib import Path

root = Path(__file__).resolve().parents[1]

INCLUDE = re.compile(r'^<!-- include: (\S+) -->$', re.M)

def include(m):
    f = root / m.group(1)
    if not f.is_file(): sys.exit(f'nbs/index.ipynb includes {m.group(1)}, which does not exist')
    return f.read_text(encoding='utf-8').strip('\n')

def readme_text(nb_path=root / 'nbs' / 'index.ipynb'):
    nb = json.loads(Path(nb_path).read_text(encoding='utf-8'))
    parts = []
    for c in nb['cells']:
        src = ''.join(c['source']).strip('\n')
        if not src or src.startswith('#| hide'): continue
        if c["cell_type"] == "markdown":
            src = INCLUDE.sub(include, src.replace("](images/", "](nbs/images/"))   # README sits one folder up
        parts.append(src if c["cell_type"] == "markdown" else f"```python\n{src}\n```")
    return '<!-- generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file -->\n\n' + '\n\n'.join(parts) + '\n'

if __name__ == '__main__':
    text, out = readme_text(), root / 'README.md'
    if '--check' in sys.argv:
        if out.read_text(encoding='utf-8') != text: sys.exit('README.md is out of step with nbs/index.ipynb: run python tools/make_readme.py')
    else: out.write_text(text, encoding='utf-8')
