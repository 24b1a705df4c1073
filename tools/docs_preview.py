"""Build a faithful HTML preview of the documentation site into `_docs_preview/`, without Quarto.

The real site is built by `nbdev_docs` (Quarto) on GitHub (.github/workflows/deploy.yaml). Quarto is not
available everywhere, so `make docs` runs the same first half of that build and replaces only Quarto:

1. what `nbdev_proc_nbs` does before rendering: write nbs/nbdev.yml from settings.ini, rebuild
   fashion_style/_modidx.py, regenerate nbs/sidebar.yml (`nbdev_sidebar`, unless settings.ini says
   `custom_sidebar = True`; a hand-written sidebar.yml that nbdev would replace is kept, the preview shows what
   nbdev would make of it, and a note says so), then run every page through nbdev's
   own processors (`FilterDefaults`) into `_proc/`. That re-executes each notebook's export, import and
   `show_doc` cells, exactly as the docs build does (other cells keep their saved outputs: nbdev ignores test
   flags here, so a `#| slow` cell runs too if it contains an import). A stub named `quarto` is put on PATH when there is no Quarto, so nbdev does
   not try to install it. Unlike `nbdev_proc_nbs`, a failing notebook does not stop the others: all failures
   are listed at the end.
2. each processed page is rendered by nbconvert's HTML exporter with tools/docs_template (Quarto-like markup,
   a sidebar following sidebar.yml, the title and description from the notebook's H1 and `>` line), honouring
   the Quarto cell options nbdev emits (echo, output, include, code-fold, warning), fenced divs, link
   attributes, pandoc heading ids and Quarto's link rewriting (`x.ipynb` -> its page, the site URL -> relative).

Writes `_docs_preview/pages.json` (source, page, title of every page) for tools/docs_test.py.
Exit status 1 when a notebook fails to process or a site configuration file is not valid YAML."""
import argparse, atexit, html, json, os, re, shutil, signal, stat, sys, tempfile, time, traceback, warnings
from pathlib import Path

root = Path(__file__).resolve().parent.parent
template_dir = Path(__file__).resolve().parent/'docs_template'
PAGE_EXTS = ('.ipynb', '.qmd', '.md')
# files Quarto never renders as pages (quarto-cli project-context.ts projectHiddenIgnoreGlob), besides _* and .*
QUARTO_IGNORES = re.compile(r'^(?:README\.[Rrq]?md|CLAUDE(?:\.local)?\.md|AGENTS(?:\.local)?\.md|.*\.llms\.md)$')

def log(*a): print(*a, flush=True)

# ---------------------------------------------------------------- step 1: nbdev's processing into _proc/
def ensure_quarto_on_path():
    "nbdev installs Quarto when no `quarto` is on PATH: put a stub there when it is missing"
    if shutil.which('quarto'): return None
    d = Path(tempfile.mkdtemp(prefix='quarto-stub-'))
    stub = d/'quarto'
    stub.write_text('#!/bin/sh\necho "quarto: not installed (stub from tools/docs_preview.py)" >&2\nexit 1\n')
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    os.environ['PATH'] = f"{d}{os.pathsep}{os.environ.get('PATH', '')}"
    atexit.register(shutil.rmtree, d, ignore_errors=True)
    return d

def _proc_one(item):
    "Run one file through nbdev's docs processing, as nbdev's own worker does; return (error, import warnings)"
    import nbdev.serve_drv
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter('always')
        try: nbdev.serve_drv.main(item); err = None
        except BaseException as e: err = ''.join(traceback.format_exception(e))
    return err, [str(w.message).strip() for w in ws if 'containing imports' in str(w.message)]

def _worker_loop(conn):
    "A spawned worker (as nbdev uses), in its own process group so a notebook's own subprocesses die with it"
    os.setsid()
    while True:
        item = conn.recv()
        if item is None: return
        conn.send(_proc_one(item))

class Workers:
    "nbdev's parallel processing, with a time limit per file: a worker past it is killed (with its process group)"
    def __init__(self, n, timeout):
        import multiprocessing as mp
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import docs_preview   # the loop by module name: notebook code run in a worker replaces `__main__` (IPython does)
        self.ctx, self.loop, self.n, self.timeout = mp.get_context('spawn'), docs_preview._worker_loop, n, timeout
        self.idle, self.busy = [], {}
    def _start(self):
        a, b = self.ctx.Pipe()
        p = self.ctx.Process(target=self.loop, args=(b,))  # not daemonic: notebooks may start processes
        p.start()
        return p, a
    def _kill(self, p):
        try: os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError): p.kill()
        p.join(5)
    def run(self, items):
        "Yield (item, error, warnings) for each item, as they finish"
        todo = list(items)
        while todo or self.busy:
            while todo and len(self.busy) < self.n:
                p, conn = self.idle.pop() if self.idle else self._start()
                item = todo.pop(0)
                conn.send(item)
                self.busy[conn] = (p, item, time.time())
            from multiprocessing.connection import wait
            for conn in wait(list(self.busy), timeout=1):
                p, item, _ = self.busy.pop(conn)
                try: err, ws = conn.recv()
                except EOFError:
                    err, ws = f'the docs processing worker died (exit code {p.exitcode})', []
                    self._kill(p)
                else: self.idle.append((p, conn))
                yield item, err, ws
            for conn, (p, item, t0) in list(self.busy.items()):
                if time.time() - t0 > self.timeout:
                    self.busy.pop(conn); self._kill(p)
                    yield item, (f'TIMEOUT: nbdev\'s docs processing of this notebook took more than {self.timeout:.0f} s and was '
                                 'stopped. The docs build runs its export, import and show_doc cells and every cell that '
                                 'contains an import: one of those runs heavy code (training, data generation)'), []
    def close(self):
        for p, conn in self.idle:
            try: conn.send(None)
            except OSError: pass
            p.join(5)
            if p.is_alive(): self._kill(p)
        for conn, (p, _, _) in self.busy.items(): self._kill(p)

def summarize_failure(err):
    "The cell nbdev's docs processing failed in, the error it raised, and the usual fix"
    if not err.startswith('Traceback'): return err
    cause, _, final = err.rpartition('The above exception was the direct cause of the following exception:')
    m = re.search(r"Exception: Error(?: in notebook: .*?)? in cell (\d+) :\n(.*)", final, flags=re.S)
    if not m: return 'nbdev docs processing failed:\n    ' + '\n    '.join(err.strip().splitlines()[-12:])
    cell_src = m.group(2).strip()
    cause_lines = [l for l in cause.strip().splitlines() if l.strip()]
    reason = cause_lines[-1].strip() if cause_lines else '(no detail)'
    shown = cell_src.splitlines()
    res = (f'the docs build (nbdev_docs, as in deploy.yaml) fails in cell {m.group(1)}: {reason}\n      | '
           + '\n      | '.join(shown[:6]) + ('\n      | ...' if len(shown) > 6 else ''))
    if re.search(r'^\s*(?:import|from)\s', cell_src, flags=re.M) and len(shown) > 1:
        res += ('\n    nbdev runs every cell that contains an import when it builds the docs (not only export and '
                'show_doc cells), without the cells before it: put the import in a cell of its own')
    return res

def _sidebar_shape(text):
    "The section names and the order of the files a sidebar.yml lists"
    import yaml
    try: contents = yaml.safe_load(text)['website']['sidebar']['contents']
    except Exception: return None, None
    sections, files = [], []
    def walk(items):
        for it in items or []:
            if isinstance(it, str): files.append(it)
            elif isinstance(it, dict):
                if 'section' in it: sections.append(str(it['section']))
                if it.get('href'): files.append(it['href'])
                walk(it.get('contents'))
    walk(contents)
    return sections, files

def refresh_sidebar(cfg, nbs):
    """nbdev's sidebar step: with `custom_sidebar = False` in settings.ini, nbdev (and so `nbdev_docs`) writes
    nbs/sidebar.yml from the notebooks found. Return the sidebar text the site will have. A sidebar.yml that was
    written by hand (sections or an order nbdev would not make) is not overwritten here, but the preview uses
    nbdev's version, as the real build would, and a note says how to keep the hand-written one."""
    import contextlib, io
    from nbdev.quarto import nbdev_sidebar
    f = nbs/'sidebar.yml'
    if cfg.custom_sidebar: return f.read_text() if f.exists() else None
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf): nbdev_sidebar.__wrapped__(path=nbs, printit=True)
    generated = buf.getvalue().rstrip('\n') + '\n'
    existing = f.read_text() if f.exists() else None
    if existing is None or existing.strip() == generated.strip(): f.write_text(generated); return generated
    (old_sections, old_files), (new_sections, new_files) = _sidebar_shape(existing), _sidebar_shape(generated)
    common = [x for x in (old_files or []) if x in (new_files or [])]
    hand_made = old_sections is None or set(old_sections) - set(new_sections) or common != [x for x in new_files if x in common]
    if not hand_made: f.write_text(generated); return generated   # a stale generated sidebar: nbdev rewrites it
    log('NOTE: nbs/sidebar.yml is written by hand (its sections or order differ from what nbdev generates), but '
        'settings.ini has custom_sidebar = False, so nbdev_docs replaces it with a generated one. This preview shows '
        'the generated sidebar and leaves nbs/sidebar.yml as it is; set custom_sidebar = True in settings.ini to '
        'publish the hand-written one.')
    return generated

def check_custom_sidebar(cfg, sidebar_text, pages):
    "With `custom_sidebar = True` the sidebar is kept by hand: every page must be listed, and only pages"
    if not cfg.custom_sidebar: return []
    _, files = _sidebar_shape(sidebar_text or '')
    if files is None: return []   # not valid YAML: reported with the other configuration files
    missing = [p for p in pages if p not in files]
    unknown = [x for x in files if x not in pages]
    probs = []
    if missing: probs.append('nbs/sidebar.yml does not list ' + ', '.join(missing) + ' (settings.ini has custom_sidebar = '
                             'True, so the sidebar is kept by hand and Quarto would leave these pages out of it)')
    if unknown: probs.append('nbs/sidebar.yml lists ' + ', '.join(unknown) + ', which are not pages of the site '
                             '(renamed or removed notebooks?)')
    return probs

def nbdev_process(cfg, nbs, n_workers, force, nb_timeout):
    "nbdev_proc_nbs, step by step: config files, module index, sidebar, then each page into _proc/"
    from nbdev.quarto import refresh_quarto_yml
    from nbdev.doclinks import _build_modidx, nbglob
    from nbdev.serve import _proc_file
    import nbdev.serve
    t0 = time.time()
    refresh_quarto_yml()
    _build_modidx()
    sidebar_text = refresh_sidebar(cfg, nbs)
    cache = cfg.config_path/'_proc'
    files = nbglob(nbs, func=Path, file_glob='', file_re='')
    for extra in ('_quarto.yml', '_brand.yml'):
        if (nbs/extra).exists(): files.append(nbs/extra)
    # nbdev drops the cache when settings.ini or nbdev is newer; show_doc output also depends on the package
    lib_mtimes = [p.stat().st_mtime for p in cfg.lib_path.rglob('*.py') if p.name != '_modidx.py']
    chk_mtime = max([cfg.config_file.stat().st_mtime, Path(nbdev.serve.__file__).stat().st_mtime] + lib_mtimes)
    if force or (cache.exists() and cache.stat().st_mtime < chk_mtime): shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    items = [o for o in (_proc_file(f, cache=cache, path=nbs, mtime=cache.stat().st_mtime) for f in files) if o]
    failures, import_warnings = {}, {}
    if items:
        log(f'docs: nbdev processing {len(items)} changed file(s) into {cache.relative_to(root)}/ '
            f'({n_workers} workers, at most {nb_timeout:.0f} s each)')
        workers = Workers(n_workers, nb_timeout)
        try:
            for (src, dst, _), err, ws in workers.run(items):
                src = str(src)
                if err:  # and no stale copy left in the cache, so that the next build tries again
                    failures[src] = err
                    Path(dst).unlink(missing_ok=True)
                if ws: import_warnings[src] = ws
                log(f'  {"FAILED" if err else "processed"} {Path(src).relative_to(root)}')
        finally: workers.close()
    cache.touch()
    if items: log(f'docs: nbdev processing took {time.time()-t0:.0f} s')
    return cache, failures, import_warnings, sidebar_text

# ---------------------------------------------------------------- step 2: Quarto's part, emulated
def frontmatter(nb):
    "The YAML frontmatter nbdev put in the first raw cell (title, description, output-file), and the cells without it"
    import yaml
    for i, c in enumerate(nb.cells):
        if c.cell_type == 'raw':
            m = re.match(r'^---\s*\n(.*?)\n---\s*$', c.source.strip(), flags=re.S)
            if m: return (yaml.safe_load(m.group(1)) or {}), nb.cells[:i] + nb.cells[i+1:]
    return {}, list(nb.cells)

def pandoc_id(text):
    "The identifier pandoc (so Quarto) gives a heading: alphanumerics, _ - . kept, words joined by -, lowercase"
    s = ''.join(c for c in text if c.isalnum() or c in '_-. \t\n')
    s = '-'.join(s.split()).lower()
    s = re.sub(r'^[^a-z\u00c0-\uffff]+', '', s)
    return s or 'section'

def _attrs(spec):
    "Pandoc attributes `{#id .class key=val}` as an HTML attribute string"
    spec = spec.strip()[1:-1] if spec.strip().startswith('{') else spec.strip()
    ids, classes, kv = [], [], []
    for tok in re.findall(r'(?:[^\s"]+="[^"]*"|\S+)', spec):
        if tok.startswith('#'): ids.append(tok[1:])
        elif tok.startswith('.'): classes.append(tok[1:])
        elif '=' in tok:
            k, v = tok.split('=', 1)
            kv.append((k, v.strip('"')))
        else: classes.append(tok)
    out = [f'id="{html.escape(ids[0])}"'] if ids else []
    if classes: out.append(f'class="{html.escape(" ".join(classes))}"')
    out += [f'{k}="{html.escape(v)}"' for k, v in kv]
    return ' '.join(out), classes, dict(kv)

def _inline(text):
    "Minimal inline markdown (code spans) for the bits turned into raw HTML"
    parts = re.split(r'(`[^`]+`)', text)
    return ''.join(f'<code>{html.escape(p[1:-1])}</code>' if p.startswith('`') and p.endswith('`') and len(p) > 1
                   else html.escape(p, quote=False) for p in parts)

_re_link_attr = re.compile(r'\[([^\]]*)\]\(([^)\s]+)(?:\s+"[^"]*")?\)\{([^}]*)\}')
_re_head_attr = re.compile(r'^(#{1,6})\s+(.*?)\s+(\{[^}]*[#.][^}]*\})\s*$')
_CALLOUT_TITLES = dict(note='Note', tip='Tip', warning='Warning', caution='Caution', important='Important')

def quarto_markdown(md):
    "Rewrite the pandoc/Quarto markdown that plain markdown lacks: fenced divs, callouts, link and heading attributes"
    out, depth, fence = [], 0, None
    for line in md.splitlines():
        m = re.match(r'^\s*(`{3,}|~{3,})', line)
        if m:
            if fence is None: fence = m.group(1)
            elif m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not line.strip()[len(m.group(1)):].strip(): fence = None
            out.append(line); continue
        if fence is not None: out.append(line); continue
        m = re.match(r'^:{3,}\s*(.*?)\s*:*\s*$', line)
        if m and m.group(1):
            attrs, classes, kv = _attrs(m.group(1))
            callout = next((c for c in classes if c.startswith('callout-')), None)
            if callout: attrs = attrs.replace('class="', 'class="callout ', 1)
            out += ['', f'<div {attrs}>']
            if callout:
                title = kv.get('title', _CALLOUT_TITLES.get(callout[8:], callout[8:].title()))
                out.append(f'<div class="callout-title">{html.escape(title)}</div>')
            out.append('')
            depth += 1; continue
        if m and depth:
            out += ['', '</div>', '']
            depth -= 1; continue
        line = _re_link_attr.sub(lambda m: f'<a href="{html.escape(m.group(2))}" {_attrs(m.group(3))[0]}>{_inline(m.group(1))}</a>', line)
        hm = _re_head_attr.match(line)
        if hm:
            n = len(hm.group(1))
            line = f'<h{n} {_attrs(hm.group(3))[0]}>{_inline(hm.group(2))}</h{n}>'
        out.append(line)
    out += ['', '</div>'] * depth
    return '\n'.join(out)

def cell_options(src):
    "Quarto's `#| key: value` options at the top of a code cell, and the source without them"
    import yaml
    lines, opts, i = src.splitlines(), {}, 0
    while i < len(lines) and re.match(r'^\s*#\|', lines[i]):
        try: d = yaml.safe_load(re.sub(r'^\s*#\|\s?', '', lines[i]))
        except Exception: d = None
        if isinstance(d, dict): opts.update(d)
        i += 1
    return opts, '\n'.join(lines[i:]).strip('\n')

def quarto_cells(cells):
    "Apply what Quarto does with each cell of an nbdev-processed notebook"
    res = []
    for c in cells:
        if c.get('source') is None: continue
        if c.cell_type == 'raw':
            if c.metadata.get('raw_mimetype', '') == 'text/html' or c.metadata.get('format', '') == 'html': res.append(c)
            continue
        if c.cell_type == 'markdown':
            c.source = quarto_markdown(c.source)
            if c.source.strip() and not c.source.strip().startswith('<!-- WARNING: THIS FILE WAS AUTOGENERATED'): res.append(c)
            continue
        opts, c.source = cell_options(c.source)
        if str(opts.get('include', True)).lower() == 'false': continue
        if str(opts.get('echo', True)).lower() == 'false' or not c.source.strip():
            c.metadata.setdefault('transient', {})['remove_source'] = True
        if str(opts.get('output', True)).lower() == 'false': c.outputs = []
        if str(opts.get('warning', True)).lower() == 'false':
            c.outputs = [o for o in c.outputs if not (o.output_type == 'stream' and o.name == 'stderr')]
        if opts.get('code-fold') not in (None, False, 'false'):
            c.metadata['code_fold'] = 'show' if str(opts['code-fold']).lower() == 'show' else 'true'
            c.metadata['code_summary'] = str(opts.get('code-summary', 'Code'))
        for o in c.outputs:
            md = o.get('data', {}).get('text/markdown')
            if md is not None: o.data['text/markdown'] = quarto_markdown(md if isinstance(md, str) else ''.join(md))
        if c.source.strip() or c.outputs: res.append(c)
    return res

_re_heading = re.compile(r'<h([1-6])([^>]*?)\sid="([^"]*)"([^>]*)>(.*?)</h\1>', flags=re.S)

def fix_heading_ids(body):
    "Give nbconvert's headings pandoc's identifiers (the ones nbdev's doc links point to), unique per page"
    seen = set(re.findall(r'\sid="([^"]*)"', body))
    def _sub(m):
        inner = m.group(5)
        if 'class="anchor-link"' not in inner: return m.group(0)
        text = html.unescape(re.sub(r'<[^>]+>', '', re.sub(r'<a class="anchor-link".*?</a>', '', inner, flags=re.S)))
        base = new = pandoc_id(text)
        k = 0
        while new in seen and new != m.group(3):
            k += 1; new = f'{base}-{k}'
        seen.add(new)
        inner = re.sub(r'(<a class="anchor-link" href=")#[^"]*"', rf'\1#{new}"', inner)
        return f'<h{m.group(1)}{m.group(2)} id="{new}"{m.group(4)}>{inner}</h{m.group(1)}>'
    return _re_heading.sub(_sub, body)

def add_toc(body):
    "Quarto's `toc: true` (depth 3): the page's h2 and h3 headings, in the right margin"
    main = body.partition('<main')[2].partition('</main>')[0]
    items = []
    for m in _re_heading.finditer(main):
        if m.group(1) not in ('2', '3'): continue
        text = html.unescape(re.sub(r'<[^>]+>', '', re.sub(r'<a class="anchor-link".*?</a>', '', m.group(5), flags=re.S))).strip()
        items.append(f'<li class="toc-h{m.group(1)}"><a href="#{m.group(3)}">{html.escape(text)}</a></li>')
    toc = f'<nav id="TOC"><h2 class="toc-title">On this page</h2><ul>{"".join(items)}</ul></nav>' if items else ''
    return body.replace('<!--TOC-->', toc, 1)

def rewrite_links(body, page_src, pages, site_url):
    "Quarto's link handling: links to a page's source (.ipynb/.qmd/.md) go to its page; site URLs become relative"
    page_out = pages[page_src]['page']
    up = '../' * page_out.count('/')
    def _target(url):
        if site_url and url.startswith(site_url):
            rest = url[len(site_url):].lstrip('/')
            path, _, frag = rest.partition('#')
            return up + (path or 'index.html') + (f'#{frag}' if frag else '')
        if re.match(r'^[a-zA-Z][a-zA-Z0-9+.-]*:', url) or url.startswith(('#', '/', '//')): return url
        path, _, frag = url.partition('#')
        if not path: return url
        src = os.path.normpath(os.path.join(os.path.dirname(page_src), path)).replace(os.sep, '/')
        if src in pages:
            rel = os.path.relpath(pages[src]['page'], os.path.dirname(page_out) or '.').replace(os.sep, '/')
            return rel + (f'#{frag}' if frag else '')
        return url
    return re.sub(r'(\s(?:href|src)=")([^"]*)(")', lambda m: m.group(1) + html.escape(_target(html.unescape(m.group(2)))) + m.group(3), body)

def sidebar_entries(nbs, pages, text=None):
    "The sidebar as nbdev wrote it in sidebar.yml (or `text`): a list of page sources and sections"
    import yaml
    try: contents = yaml.safe_load(text if text is not None else (nbs/'sidebar.yml').read_text())['website']['sidebar']['contents']
    except Exception: contents = []
    def _norm(items):
        res = []
        for it in items or []:
            if isinstance(it, str): res.append(it.replace(os.sep, '/'))
            elif isinstance(it, dict) and 'section' in it:
                res.append(dict(section=it['section'], href=it.get('href'), contents=_norm(it.get('contents'))))
            elif isinstance(it, dict) and 'href' in it: res.append(it['href'])
        return res
    def _flat(items):
        for it in items:
            if isinstance(it, str): yield it
            else: yield it.get('href'); yield from _flat(it['contents'])
    entries = _norm(contents)
    listed = set(_flat(entries))
    extra = [p for p in pages if p not in listed]
    if extra: entries.append(dict(section='Other pages', href=None, contents=extra))
    return entries

def nav_html(entries, pages, current):
    "The sidebar of one page, links relative to it"
    here = os.path.dirname(pages[current]['page']) or '.'
    def _a(src):
        if src not in pages: return ''
        href = os.path.relpath(pages[src]['page'], here).replace(os.sep, '/')
        act = ' class="active"' if src == current else ''
        return f'<a href="{html.escape(href)}"{act}>{html.escape(pages[src]["title"] or Path(src).stem)}</a>'
    def _ul(items):
        lis = []
        for it in items:
            if isinstance(it, str):
                a = _a(it)
                if a: lis.append(f'<li class="sidebar-item">{a}</li>')
            else:
                head = _a(it['href']) if it.get('href') in pages else html.escape(str(it['section']))
                lis.append(f'<li><div class="sidebar-section">{head}</div>{_ul(it["contents"])}</li>')
        return '<ul>' + ''.join(lis) + '</ul>'
    return '<nav id="sidebar-nav">' + _ul(entries) + '</nav>'

def read_page(proc_path, src_rel):
    "A processed page as a notebook: .ipynb as is, .qmd/.md as one markdown cell"
    import nbformat, yaml
    if proc_path.suffix == '.ipynb':
        nb = nbformat.read(proc_path, as_version=4)
        for i, c in enumerate(nb.cells): c.setdefault('id', f'cell-{i}')  # nbdev's inserted cells have none
        return nb
    text = proc_path.read_text(encoding='utf-8')
    nb = nbformat.v4.new_notebook()
    m = re.match(r'^---\s*\n(.*?)\n---\s*\n', text, flags=re.S)
    fm = {}
    if m: fm, text = (yaml.safe_load(m.group(1)) or {}), text[m.end():]
    nb.cells.append(nbformat.v4.new_raw_cell('---\n' + yaml.safe_dump(fm) + '---') if fm else nbformat.v4.new_raw_cell(''))
    nb.cells.append(nbformat.v4.new_markdown_cell(text))
    return nb

def error_page(src, err):
    "A page for a notebook nbdev could not process: its title, and the error as an error output"
    import nbformat
    from nbdev.frontmatter import _md2dict
    from nbdev.doclinks import _nbpath2html
    nb = nbformat.read(src, as_version=4)
    fm = next((d for d in (_md2dict(c.source) for c in nb.cells if c.cell_type == 'markdown') if d), {})
    fm['output-file'] = _nbpath2html(Path(src)).name
    out = nbformat.v4.new_notebook()
    out.cells.append(nbformat.v4.new_raw_cell('---\n' + json.dumps(fm) + '\n---'))
    out.cells.append(nbformat.v4.new_markdown_cell('nbdev could not process this notebook for the docs '
                                                   '(the docs build re-runs its export, import and `show_doc` cells):'))
    cell = nbformat.v4.new_code_cell('')
    cell.outputs = [nbformat.v4.new_output('error', ename='DocsBuildError', evalue=str(Path(src).name),
                                           traceback=err.splitlines())]
    out.cells.append(cell)
    return out

def build(out_dir, n_workers=2, force=False, nb_timeout=120):
    t0 = time.time()
    os.chdir(root)
    stub = ensure_quarto_on_path()
    if stub: log(f'docs: no Quarto here; a stub `quarto` is on PATH for nbdev ({stub})')
    from nbdev.config import get_config
    from nbdev.doclinks import nbglob
    import yaml
    from nbconvert import HTMLExporter
    cfg = get_config()
    nbs = cfg.nbs_path
    problems = []
    cache, failures, import_warnings, sidebar_text = nbdev_process(cfg, nbs, n_workers, force, nb_timeout)
    for f in ('_quarto.yml', 'nbdev.yml', 'sidebar.yml'):
        p = nbs/f
        if not p.exists(): problems.append(f'nbs/{f} is missing (Quarto needs it)'); continue
        try: yaml.safe_load(p.read_text())
        except yaml.YAMLError as e:
            hint = ' (nbdev writes it from settings.ini: a value there breaks the YAML, e.g. a double quote in `description`)' if f == 'nbdev.yml' else ''
            problems.append(f'nbs/{f} is not valid YAML, so Quarto cannot build the site{hint}:\n    ' + str(e).replace('\n', '\n    '))
    for src, ws in import_warnings.items():
        firsts = [next((l for l in w.splitlines()[2:] if l.strip()), '') for w in ws]
        log(f'docs: nbdev warns that {Path(src).relative_to(root)} has {len(ws)} cell(s) mixing imports with other code '
            '(the docs build runs them): ' + '; '.join(f'`{f.strip()[:60]}`' for f in firsts))
    for src, err in failures.items(): problems.append(f'{Path(src).relative_to(root)}: ' + summarize_failure(err))

    # the pages: every notebook/qmd/md nbdev globs (skipping _scratch and dot files), in their processed form
    srcs = [f for f in sorted(nbglob(nbs, func=Path, file_glob='', file_re=r'\.(?:ipynb|qmd|md)$'))
            if not QUARTO_IGNORES.match(f.name)]
    pages, nbs_by_src = {}, {}
    for s in srcs:
        rel = s.relative_to(nbs).as_posix()
        if str(s) in failures:
            try: nb = error_page(s, failures[str(s)])
            except Exception as e: problems.append(f'nbs/{rel}: cannot be read ({e})'); continue
        else:
            proc = cache/rel
            if not proc.exists():
                problems.append(f'nbs/{rel}: no processed copy in {cache.name}/'); continue
            nb = read_page(proc, rel)
        fm, cells = frontmatter(nb)
        if not fm.get('title'):
            need = 'an H1 heading in its first markdown cell' if s.suffix == '.ipynb' else 'a `title:` in its YAML frontmatter'
            problems.append(f'nbs/{rel}: the page has no title (it needs {need})')
        name = fm.get('output-file') or (Path(rel).stem + '.html')
        page = name if Path(rel).parent == Path('.') else (Path(rel).parent/name).as_posix()
        pages[rel] = dict(source=f'{nbs.name}/{rel}', page=page, title=str(fm.get('title', '') or ''),
                          description=str(fm.get('description', '') or ''))
        nb.cells = quarto_cells(cells)
        nbs_by_src[rel] = nb
    dup = {}
    for rel, p in pages.items(): dup.setdefault(p['page'], []).append(rel)
    for page, rels in dup.items():
        if len(rels) > 1: problems.append(f'{" and ".join(rels)} would both be written to {page}')

    out_dir = Path(out_dir)
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    # files beside the notebooks (images, styles.css, ...) go to the site as Quarto copies them
    for f in nbglob(nbs, func=Path, file_glob='', file_re=''):
        rel = f.relative_to(nbs)
        if f.suffix in PAGE_EXTS + ('.yml', '.yaml', '.py') or f.name in ('.notest',): continue
        (out_dir/rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, out_dir/rel)
    shutil.copy2(template_dir/'preview.css', out_dir/'preview.css')

    try: site_title = str(yaml.safe_load((nbs/'nbdev.yml').read_text())['website']['title'])
    except Exception: site_title = cfg.get('title', cfg.lib_name)
    site_url = (cfg.get('doc_host', '').rstrip('/') + '/' + cfg.get('doc_baseurl', '').strip('/')).rstrip('/') + '/'
    entries = sidebar_entries(nbs, pages, sidebar_text)
    problems += check_custom_sidebar(cfg, sidebar_text, list(pages))
    exporter = HTMLExporter(extra_template_basedirs=[str(template_dir.parent)], template_name=template_dir.name,
                            exclude_input_prompt=True, exclude_output_prompt=True)
    exporter.log.setLevel('ERROR')  # not the 'alternative text is missing' note for every plot
    for rel, nb in nbs_by_src.items():
        p = pages[rel]
        resources = dict(page=dict(title=p['title'], description=p['description'], site_title=site_title,
                                   root='../' * p['page'].count('/'), nav=nav_html(entries, pages, rel),
                                   styles_css=(out_dir/'styles.css').exists(), repo_url=cfg.get('git_url', '')),
                         metadata=dict(name=p['title']))
        body, _ = exporter.from_notebook_node(nb, resources=resources)
        body = rewrite_links(add_toc(fix_heading_ids(body)), rel, pages, site_url)
        dest = out_dir/p['page']
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(body, encoding='utf-8')
    if 'index.ipynb' not in pages and not (out_dir/'index.html').exists():
        problems.append('nbs/index.ipynb is missing: the site has no home page')
    manifest = dict(site_title=site_title, built=time.strftime('%Y-%m-%d %H:%M:%S'),
                    pages=list(pages.values()), problems=problems)
    (out_dir/'pages.json').write_text(json.dumps(manifest, indent=1))
    log(f'docs: {len(pages)} pages in {out_dir.relative_to(root) if out_dir.is_relative_to(root) else out_dir}/ '
        f'in {time.time()-t0:.0f} s')
    for p in problems: log('PROBLEM: ' + p)
    return problems

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default=str(root/'_docs_preview'), help='where the preview goes')
    ap.add_argument('--n_workers', type=int, default=2, help='processes for nbdev processing')
    ap.add_argument('--force', action='store_true', help='reprocess every notebook (ignore the _proc/ cache)')
    ap.add_argument('--nb_timeout', type=float, default=120, help='seconds one notebook may take to process')
    a = ap.parse_args()
    sys.exit(1 if build(a.out, a.n_workers, a.force, a.nb_timeout) else 0)
