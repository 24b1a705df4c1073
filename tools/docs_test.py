"""Check every page of the docs preview (`make docs` -> _docs_preview/) in headless Chromium.

The preview is served on 127.0.0.1 and each page is opened in Chromium, driven through the DevTools protocol
(websocket-client). A page passes when it has its title (an `h1.title` equal to the notebook's H1 and a
matching document title), shows no error output (no error cells, no Python traceback, no exception on
stderr), every image has loaded (`naturalWidth > 0`), every internal link points at a file of the preview
(and, with a `#fragment`, at an element with that id), no request for a preview file failed and no script
raised. The sidebar of the home page must link every page. A screenshot of the home page is saved as
`_docs_preview/home.png`.

    python tools/docs_test.py                 # check _docs_preview/
    python tools/docs_test.py --self-test     # check the checker on fake pages with known faults
    python tools/docs_test.py --find-browser  # print the browser it would use (exit 1 if none)
"""
import argparse, base64, functools, http.server, json, os, re, shutil, signal, subprocess, sys, tempfile
import threading, time
from pathlib import Path
from urllib.parse import unquote, urlsplit

root = Path(__file__).resolve().parent.parent
BROWSERS = ('chromium', 'google-chrome', 'google-chrome-stable', 'chromium-browser', 'chrome')
CHROME_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                '--disable-background-networking', '--disable-component-update', '--disable-sync',
                '--no-default-browser-check', '--no-proxy-server', '--mute-audio', '--hide-scrollbars',
                '--disable-extensions', '--disable-dev-shm-usage', '--remote-debugging-port=0', '--window-size=1280,900',
                '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1']  # offline: other hosts fail at once

def find_browser():
    "A Chromium-family browser: $CHROME_BIN, else the first of BROWSERS on PATH"
    if os.environ.get('CHROME_BIN') and shutil.which(os.environ['CHROME_BIN']): return shutil.which(os.environ['CHROME_BIN'])
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)

class Chrome:
    "A headless Chromium with a fresh profile, driven over the DevTools protocol (one tab, flat sessions)"
    def __init__(self, binary, width=1280, height=900, timeout=60):
        import websocket
        self.profile = tempfile.mkdtemp(prefix='docs-test-chrome-')
        self.proc = subprocess.Popen([binary, *CHROME_FLAGS, f'--user-data-dir={self.profile}', 'about:blank'],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        port_file, t0 = Path(self.profile)/'DevToolsActivePort', time.time()
        while not (port_file.exists() and len(port_file.read_text().split()) >= 2):
            if self.proc.poll() is not None:
                raise RuntimeError(f'{binary} exited at start:\n' + self.proc.stderr.read().decode(errors='replace')[-3000:])
            if time.time() - t0 > timeout: self.close(); raise RuntimeError(f'{binary} did not start in {timeout} s')
            time.sleep(0.05)
        port, path = port_file.read_text().split()[:2]
        self.ws = websocket.create_connection(f'ws://127.0.0.1:{port}{path}', timeout=timeout, suppress_origin=True,
                                              http_no_proxy=['127.0.0.1', 'localhost'])
        self.timeout, self.next_id, self.events = timeout, 0, []
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        target = self.call('Target.createTarget', url='about:blank')['targetId']
        self.session = self.call('Target.attachToTarget', targetId=target, flatten=True)['sessionId']
        for domain in ('Page', 'Runtime', 'Network'): self.call(f'{domain}.enable', session=True)
        self.call('Emulation.setDeviceMetricsOverride', session=True, width=width, height=height,
                  deviceScaleFactor=1, mobile=False)

    def _drain_stderr(self):
        for _ in self.proc.stderr: pass

    def _recv(self):
        msg = json.loads(self.ws.recv())
        if 'method' in msg: self.events.append(msg)
        return msg

    def call(self, method, session=False, **params):
        "Send one DevTools command (to the tab when `session`) and return its result"
        self.next_id += 1
        msg = dict(id=self.next_id, method=method, params=params)
        if session: msg['sessionId'] = self.session
        self.ws.send(json.dumps(msg))
        t0 = time.time()
        while time.time() - t0 < self.timeout:
            r = self._recv()
            if r.get('id') == self.next_id:
                if 'error' in r: raise RuntimeError(f'{method}: {r["error"]}')
                return r.get('result', {})
        raise TimeoutError(method)

    def wait_event(self, name, timeout=None):
        t0 = time.time()
        while time.time() - t0 < (timeout or self.timeout):
            for e in self.events:
                if e['method'] == name: return e
            self._recv()
        raise TimeoutError(name)

    def open(self, url):
        "Load `url`, wait for its load event; return the DevTools events seen meanwhile"
        self.events = []
        r = self.call('Page.navigate', session=True, url=url)
        if r.get('errorText'): raise RuntimeError(f'{url}: {r["errorText"]}')
        self.wait_event('Page.loadEventFired')
        self.call('Runtime.evaluate', session=True, expression='1', awaitPromise=True)  # let pending events arrive
        return list(self.events)

    def eval(self, js):
        r = self.call('Runtime.evaluate', session=True, expression=js, returnByValue=True, awaitPromise=True)
        if 'exceptionDetails' in r: raise RuntimeError(f'script failed: {r["exceptionDetails"]}')
        return r['result'].get('value')

    def screenshot(self, dest, full_page=False):
        params = dict(format='png')
        if full_page:
            w, h = self.eval('[document.documentElement.scrollWidth, document.documentElement.scrollHeight]')
            params.update(captureBeyondViewport=True, clip=dict(x=0, y=0, width=w, height=min(h, 4000), scale=1))
        Path(dest).write_bytes(base64.b64decode(self.call('Page.captureScreenshot', session=True, **params)['data']))

    def close(self):
        try:
            if getattr(self, 'ws', None): self.ws.send(json.dumps(dict(id=0, method='Browser.close'))); self.ws.close()
        except Exception: pass
        try: self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL); self.proc.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)

class Server:
    "The preview folder over http on 127.0.0.1 (as GitHub Pages would serve it), quietly"
    def __init__(self, directory):
        class _Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *a): pass
        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(_Quiet, directory=str(directory)))
        self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}/'
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
    def close(self): self.httpd.shutdown(); self.httpd.server_close()

PAGE_JS = r"""(() => {
  const text = e => (e.innerText || e.textContent || '');
  const h1 = document.querySelector('h1.title');
  return {
    title: document.title,
    h1: h1 ? text(h1).trim() : null,
    images: [...document.images].map(i => ({src: i.getAttribute('src') || '', url: i.currentSrc || i.src,
                                            ok: i.complete && i.naturalWidth > 0})),
    links: [...document.querySelectorAll('a[href]')].map(a => ({href: a.getAttribute('href'), url: a.href})),
    nav: [...document.querySelectorAll('#sidebar-nav a[href]')].map(a => a.href),
    errors: [...document.querySelectorAll('.cell-output-error')].map(e => text(e).slice(0, 20000)),
    outputs: [...document.querySelectorAll('.cell-output')].map(e => ({cls: e.className, text: text(e)})),
  };
})()"""

_re_exc_line = re.compile(r'^\s*(?:[\w.]+\.)?\w*(?:Error|Exception)(?::|$)', re.M)

class Site:
    "Files and element ids of the preview, to resolve links against"
    def __init__(self, directory, base_url):
        self.dir, self.base, self._ids = Path(directory), base_url, {}
    def file_for(self, url):
        "The preview file a same-site URL names, or None when the URL is not on the site"
        if not url.startswith(self.base): return None
        path = unquote(urlsplit(url).path).lstrip('/')
        f = self.dir/path
        return f/'index.html' if (not path or path.endswith('/') or f.is_dir()) else f
    def ids(self, f):
        if f not in self._ids:
            txt = f.read_text(encoding='utf-8', errors='replace') if f.suffix in ('.html', '.htm') else ''
            self._ids[f] = set(re.findall(r'\s(?:id|name)="([^"]*)"', txt))
        return self._ids[f]

def check_page(chrome, site, rel, want_title):
    "Open one page; return (problems, info)"
    url = site.base + rel
    events = chrome.open(url)
    d = chrome.eval(PAGE_JS)
    probs = []
    if want_title is not None:
        if not want_title: probs.append('no title (a notebook needs an H1 heading, a .md/.qmd page a title: in its frontmatter)')
        elif d['h1'] != want_title: probs.append(f'title shown is {d["h1"]!r}, the notebook says {want_title!r}')
        if want_title and want_title not in d['title']: probs.append(f'document title {d["title"]!r} lacks {want_title!r}')
    elif not d['h1']: probs.append('no title (no h1.title)')
    for e in d['errors']:
        exc = [m.group(0) for m in re.finditer(r'^\s*(?:[\w.]+\.)?\w*(?:Error|Exception)\b.*$', e, flags=re.M)]
        exc = [x for x in exc if 'Error in notebook' not in x] or exc   # nbdev's wrapper: name the cause
        probs.append('error output: ' + ((exc[-1] if exc else e.strip().splitlines()[0]).strip()[:200] if e.strip() else '(empty)'))
    for o in d['outputs']:
        if 'Traceback (most recent call last)' in o['text'] and 'cell-output-error' not in o['cls']:
            probs.append('traceback in output: ' + o['text'].strip().splitlines()[-1][:200])
        elif 'cell-output-stderr' in o['cls'] and _re_exc_line.search(o['text']):
            probs.append('exception on stderr: ' + _re_exc_line.search(o['text']).group(0).strip()[:200])
    external = [i for i in d['images'] if not i['url'].startswith((site.base, 'data:'))]
    for i in d['images']:
        if not i['ok'] and i not in external: probs.append(f'image does not load: {i["src"][:120]}')
    n_internal = 0
    for l in d['links']:
        f = site.file_for(l['url'])
        if f is None: continue
        n_internal += 1
        frag = urlsplit(l['url']).fragment
        if not f.is_file(): probs.append(f'broken link: {l["href"]} (no {f.relative_to(site.dir)})')
        elif frag and unquote(frag) not in site.ids(f): probs.append(f'broken link: {l["href"]} (no id {frag!r} in {f.relative_to(site.dir)})')
    site_requests = {e['params']['requestId']: e['params']['request']['url'] for e in events
                     if e['method'] == 'Network.requestWillBeSent' and e['params']['request']['url'].startswith(site.base)}
    for e in events:
        p = e.get('params', {})
        if e['method'] == 'Network.responseReceived' and p['response']['url'].startswith(site.base) \
           and p['response']['status'] >= 400 and not p['response']['url'].endswith('/favicon.ico'):
            probs.append(f'request failed: {p["response"]["status"]} {p["response"]["url"][len(site.base):]}')
        elif e['method'] == 'Network.loadingFailed' and not p.get('canceled') and p.get('requestId') in site_requests:
            probs.append(f'request failed: {p.get("errorText")} {site_requests[p["requestId"]][len(site.base):]}')
        elif e['method'] == 'Runtime.exceptionThrown':
            probs.append('script error: ' + str(p['exceptionDetails'].get('exception', {}).get('description', p['exceptionDetails'].get('text')))[:200])
    return list(dict.fromkeys(probs)), dict(links=n_internal, images=len(d['images']) - len(external),
                                            external_images=len(external), nav=d['nav'])

def check_site(directory, browser=None, screenshot='home.png', quiet=False):
    "Check every page of a built preview; return {page: [problems]} (page '' for site-wide ones)"
    directory = Path(directory)
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    mf = directory/'pages.json'
    manifest = json.loads(mf.read_text()) if mf.exists() else dict(pages=[], problems=['no pages.json: run `make docs`'])
    titles = {p['page']: p['title'] for p in manifest['pages']}
    pages = sorted(set(titles) | {p.relative_to(directory).as_posix() for p in directory.rglob('*.html')})
    result = {'': [f'docs build: {p.splitlines()[0]}' for p in manifest.get('problems', [])]}
    if not pages: result[''].append('no pages'); return result
    browser = browser or find_browser()
    if not browser: result[''].append('no Chromium/Chrome found (apt-get install chromium)'); return result
    server, chrome = Server(directory), None
    try:
        chrome = Chrome(browser)
        site = Site(directory, server.url)
        home = 'index.html' if 'index.html' in pages else None
        if home is None: result[''].append('no home page (index.html)')
        for rel in ([home] if home else []) + [p for p in pages if p != home]:
            if not (directory/rel).is_file(): result[rel] = ['page listed in pages.json is missing']; continue
            probs, info = check_page(chrome, site, rel, titles.get(rel))
            result[rel] = probs
            if rel == home:
                linked = {site.file_for(u) for u in info['nav']}
                missing = [p for p in pages if directory/p not in linked]
                if missing: probs.append('sidebar does not link: ' + ', '.join(missing))
                if screenshot: chrome.screenshot(directory/screenshot)
            ext = f', {info["external_images"]} external images not checked (offline)' if info['external_images'] else ''
            say(f'  {"ok  " if not probs else "FAIL"} {rel}  ({info["links"]} internal links, {info["images"]} images{ext})')
            for p in probs: say(f'       - {p}')
    finally:
        if chrome: chrome.close()
        server.close()
    return result

# ---------------------------------------------------------------- the checker, checked
PNG_1PX = base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==')

def _fake_page(title, body, nav=''):
    h1 = f'<h1 class="title">{title}</h1>' if title else ''
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>site - {title}</title></head><body>'
            f'<nav id="sidebar-nav">{nav}</nav><main>{h1}{body}</main></body></html>')

def self_test(browser=None):
    "Build a fake site with one good page and pages with known faults; the checker must flag exactly those"
    nav = ''.join(f'<a href="{{up}}{p}">{p}</a>' for p in ('index.html', 'good.html', 'sub/deep.html', 'sub/index.html',
                                                         'bad.html', 'untitled.html'))
    pages = {
        'index.html': ('Home', '<p><a href="good.html#sec">good</a> <a href="sub/deep.html">deep</a> <a href="https://example.org/x">external</a></p>'),
        'good.html': ('Good', '<h2 id="sec">Sec</h2><img src="img/ok.png"><img src="https://img.shields.io/badge/x-y-blue.svg"><a href="#sec">here</a> <a href="sub/">sub</a>'
                              '<div class="cell-output cell-output-stdout"><pre>InputError: printed on purpose</pre></div>'),
        'sub/deep.html': ('Deep', '<img src="../img/ok.png"><a href="../index.html">up</a>'),
        'sub/index.html': ('Sub', ''),
        'bad.html': ('Bad', '<img src="img/missing.png"><img src="img/corrupt.png"><a href="nowhere.html">x</a><a href="good.html#nope">y</a>'
                            '<div class="cell-output cell-output-error"><pre>NameError: boom</pre></div>'
                            '<div class="cell-output cell-output-stderr"><pre>Traceback (most recent call last):\n  x\nValueError: bad</pre></div>'
                            '<div class="cell-output cell-output-stderr"><pre>RuntimeError: oops</pre></div>'),
        'untitled.html': ('', '<p>no title</p>'),
    }
    want = {'index.html': [], 'good.html': [], 'sub/deep.html': [], 'sub/index.html': [],
            'bad.html': ['error output: NameError', 'traceback in output', 'exception on stderr: RuntimeError',
                         'image does not load: img/missing.png', 'image does not load: img/corrupt.png', 'broken link: nowhere.html', 'broken link: good.html#nope',
                         'request failed: 404 img/missing.png'],
            'untitled.html': ['no title']}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d/'img').mkdir(); (d/'img'/'ok.png').write_bytes(PNG_1PX)
        (d/'img'/'corrupt.png').write_bytes(PNG_1PX[:30])
        for rel, (title, body) in pages.items():
            (d/rel).parent.mkdir(parents=True, exist_ok=True)
            (d/rel).write_text(_fake_page(title, body, nav.replace('{up}', '../' * rel.count('/'))))
        (d/'pages.json').write_text(json.dumps(dict(pages=[dict(page=p, title=t) for p, (t, _) in pages.items()
                                                           if p != 'sub/index.html'], problems=[])))
        res = check_site(d, browser, screenshot='home.png', quiet=True)
        ok = (d/'home.png').exists() and (d/'home.png').read_bytes()[:4] == b'\x89PNG'
        if not ok: print('self-test: no home.png screenshot')
        if res.get(''): ok = False; print(f'self-test: unexpected site problems {res[""]}')
        for rel, expected in want.items():
            got = res.get(rel, ['(not checked)'])
            missing = [w for w in expected if not any(g.startswith(w) for g in got)]
            extra = [g for g in got if not any(g.startswith(w) for w in expected)]
            if missing or extra:
                ok = False
                print(f'self-test: {rel}: expected {expected}, got {got}')
    print(f'docs-test self-test: {"the checker flags broken images, links, error output and missing titles, and passes good pages" if ok else "FAILED"}')
    return ok

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--dir', default=str(root/'_docs_preview'), help='the built preview')
    ap.add_argument('--browser', default=None, help='Chromium/Chrome binary (default: $CHROME_BIN or found on PATH)')
    ap.add_argument('--self-test', action='store_true', help='check the checker on fake pages, then exit')
    ap.add_argument('--find-browser', action='store_true', help='print the browser found, exit 1 if none')
    a = ap.parse_args()
    os.environ['no_proxy'] = ','.join(filter(None, [os.environ.get('no_proxy'), '127.0.0.1,localhost']))
    if a.find_browser:
        b = find_browser(); print(b or 'no Chromium/Chrome on PATH'); sys.exit(0 if b else 1)
    if a.self_test: sys.exit(0 if self_test(a.browser) else 1)
    t0 = time.time()
    res = check_site(a.dir, a.browser)
    n_bad = sum(bool(v) for k, v in res.items() if k)
    for p in res.get(''): print(f'FAIL {p}')
    print(f'docs-test: {len(res) - 1} pages checked in {time.time()-t0:.1f} s, {n_bad} with problems'
          + (f'; screenshot {Path(a.dir)/"home.png"}' if (Path(a.dir)/'home.png').exists() else ''))
    sys.exit(1 if n_bad or res.get('') else 0)
