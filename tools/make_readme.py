"""Write README.md from nbs/index.ipynb (markdown cells and code cells with their text outputs).

Quarto (which `nbdev_readme` needs) is not available everywhere, so the README is rendered here with plain
Python and kept in step by `make check-sync`: `python tools/make_readme.py --check` fails if README.md differs."""
import json, re, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent

def _directives(src): return {m.group(1) for m in re.finditer(r'^#\|\s*(\S+)', src, re.M)}

def render(nb_path=root/'nbs'/'index.ipynb'):
    nb = json.loads(Path(nb_path).read_text())
    parts = []
    for c in nb['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] == 'markdown':
            parts.append(src.strip()); continue
        if _directives(src) & {'hide', 'exec_doc', 'export', 'exporti'}: continue
        code = '\n'.join(l for l in src.splitlines() if not l.startswith('#|')).strip()
        if code and 'echo: false' not in src: parts.append(f'```python\n{code}\n```')
        for o in c.get('outputs', []):
            text = o.get('text') or o.get('data', {}).get('text/plain')
            if text: parts.append('```\n' + ''.join(text).rstrip() + '\n```')
    body = '\n\n'.join(p for p in parts if p)
    body = re.sub(r'^> ', '> ', body, flags=re.M)
    return '<!-- Generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, then `make readme`. -->\n\n' + body + '\n'

if __name__ == '__main__':
    text, readme = render(), root/'README.md'
    if '--check' in sys.argv:
        if not readme.exists() or readme.read_text() != text:
            sys.exit('README.md is out of step with nbs/index.ipynb: run `make readme` and commit it')
        print('README.md in step with nbs/index.ipynb')
    else:
        readme.write_text(text); print(f'wrote {readme}')
