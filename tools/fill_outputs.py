"""Run notebooks as `nbdev_test` does and keep the small, clean outputs of their cells, so the rendered docs show them.

The docs build runs only the `show_doc` cells; every other output on a page is the one committed in the notebook.
Usage: `python tools/fill_outputs.py nbs/02_synth.ipynb [more notebooks]` (from the project root, then `nbdev_clean`);
`python tools/fill_outputs.py --self-test` checks the filter on a small notebook with known outputs (`make test` runs it).
An output is left out when it is on stderr, when it names a temporary or home folder or the project's own folder, when it
shows a warning or a progress bar (HTML or text), or when it is larger than `--max_kb`; a notebook whose kept outputs pass
`--max_total_kb` is refused.
"""
import argparse, base64, json, os, re, sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[1]) + '/'  # the project's own folder, wherever it is checked out
_DROP_TEXT = ('/tmp/', '/var/folders/', _ROOT, str(Path.home()) + '/', 'Warning', 'warnings.warn', '<progress',
              'progress-bar', 'Traceback')

def _text(out:dict)->str:
    "The text of one output (stream text, or every text/* and application/json representation)"
    if out.get('output_type') == 'stream': return ''.join(out.get('text', ''))
    data = out.get('data', {})
    return '\n'.join(''.join(v) if isinstance(v, list) else str(v) for k, v in data.items() if not k.startswith('image/'))

def _size_kb(out:dict)->float:
    "Bytes the output takes in the notebook, in KB (images decoded from base64)"
    n = len(_text(out).encode())
    for k, v in out.get('data', {}).items():
        if k.startswith('image/'): n += len(base64.b64decode(''.join(v) if isinstance(v, list) else v)) if k != 'image/svg+xml' else len(''.join(v))
    return n / 1024

_TEXT_BAR = re.compile(r'\[\d+/\d+ \d\d:\d\d<')  # fastprogress's bar printed as text: [3/4 00:01<00:00]

def keep(out:dict, max_kb:float)->bool:
    "Whether an output belongs in the committed notebook"
    if out.get('output_type') == 'error' or out.get('name') == 'stderr': return False
    if any(s in _text(out) for s in _DROP_TEXT) or _TEXT_BAR.search(_text(out)): return False
    return _size_kb(out) <= max_kb

_PNG = "from matplotlib_inline.backend_inline import set_matplotlib_formats\nset_matplotlib_formats('png')"

def run_outputs(fn:Path)->dict:
    "Run notebook `fn` with `nbdev_test`'s rules (same flags, same skipped cells) and return its outputs by cell id"
    from nbdev.config import get_config
    from nbdev.process import NBProcessor
    from nbdev.frontmatter import FrontmatterProc
    from execnb.shell import CaptureShell
    from fastcore.xtras import working_directory
    os.environ['IN_TEST'] = '1'
    flags = set(get_config().tst_flags.split())
    nb = NBProcessor(fn, procs=FrontmatterProc, process=True).nb
    def no_eval(cell):
        if cell.cell_type != 'code' or 'nbdev_export' + '(' in cell.source: return True
        direc = getattr(cell, 'directives_', {}) or {}
        if direc.get('eval:', [''])[0].lower() == 'false': return True
        return flags & direc.keys()
    for c in nb.cells:  # a cell that prints nothing now keeps nothing from before
        if c.cell_type == 'code': c['outputs'] = []
    shell = CaptureShell(fn)
    shell.run(_PNG)  # plain PNG figures at their own size (not twice it for high-DPI screens); run_all's inject_code
    with working_directory(fn.parent):  # would replace a cell of the notebook
        shell.run_all(nb, exc_stop=True, preproc=no_eval)
    return {c.id: [dict(o) for o in c.get('outputs', [])] for c in nb.cells if c.cell_type == 'code'}

def fill(fn:Path, max_kb:float=40, max_total_kb:float=150)->tuple:
    "Write the kept outputs into `fn`; return (outputs kept, outputs left out)"
    outs = run_outputs(fn)
    nb = json.loads(fn.read_text())
    kept = dropped = 0; total = 0.
    for c in nb['cells']:
        if c['cell_type'] != 'code': continue
        src = ''.join(c['source']) if isinstance(c['source'], list) else c['source']
        if src.lstrip().startswith('show_doc('): outs[c.get('id')] = []  # the docs build renders these itself
        new = [o for o in outs.get(c.get('id'), []) if keep(o, max_kb)]
        dropped += len(outs.get(c.get('id'), [])) - len(new); kept += len(new)
        for o in new:
            o.pop('execution_count', None) if o.get('output_type') != 'execute_result' else o.update(execution_count=None)
            total += _size_kb(o)
        c['outputs'], c['execution_count'] = new, None
    if total > max_total_kb: raise SystemExit(f"{fn}: the kept outputs take {total:.0f} KB (> {max_total_kb} KB): make the demos smaller")
    tmp = fn.with_suffix('.ipynb.tmp')
    tmp.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n'); os.replace(tmp, fn)
    return kept, dropped

def self_test()->bool:
    "Fill a small notebook whose right outputs are known; True if exactly those are kept"
    import tempfile
    cells = {'plain': "print('kept')", 'value': "2 + 3", 'tmp': "print('/tmp/x')", 'err': "import sys; print('e', file=sys.stderr)",
             'warn': "import warnings; warnings.warn('w')", 'bar': "print('[3/4 00:01<00:00]')", 'big': "print('x' * 50_000)",
             'silent': "x = 1", 'doc': "show_doc(print)", 'skip': "#| eval: false\nprint('not run')"}
    want = {'plain': ['kept\n'], 'value': ['5'], 'tmp': [], 'err': [], 'warn': [], 'bar': [], 'big': [], 'silent': [], 'doc': [],
            'skip': []}
    nb = dict(nbformat=4, nbformat_minor=5, metadata={}, cells=[dict(cell_type='code', id=k, metadata={}, execution_count=None,
              source=v, outputs=[dict(output_type='stream', name='stdout', text='stale\n')]) for k, v in cells.items()])
    nb['cells'].insert(0, dict(cell_type='code', id='imp', metadata={}, execution_count=None, outputs=[],
                               source='def show_doc(f): return f"docs of {f.__name__}"'))  # stands in for nbdev's
    with tempfile.TemporaryDirectory() as d:
        fn = Path(d)/'t.ipynb'; fn.write_text(json.dumps(nb))
        fill(fn, max_kb=40)
        got = {c['id']: [''.join(o.get('text', '')) or ''.join(o.get('data', {}).get('text/plain', '')) for o in c['outputs']]
               for c in json.loads(fn.read_text())['cells'] if c['id'] != 'imp'}
    for k in want:
        if got[k] != want[k]: print(f"self-test: cell {k!r}: expected {want[k]}, got {got[k]}", file=sys.stderr)
    return got == want

if __name__ == '__main__':
    if sys.argv[1:] == ['--self-test']: sys.exit(0 if self_test() else 1)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('notebooks', nargs='+', type=Path)
    ap.add_argument('--max_kb', type=float, default=40, help='largest output kept, in KB')
    ap.add_argument('--max_total_kb', type=float, default=150, help='most KB of outputs kept in one notebook')
    a = ap.parse_args()
    for fn in a.notebooks:
        k, d = fill(fn.resolve(), a.max_kb, a.max_total_kb)
        print(f"{fn}: {k} outputs kept, {d} left out", file=sys.stderr)
