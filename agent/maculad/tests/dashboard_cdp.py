"""Drives Debian's headless Chromium over the Chrome DevTools Protocol against a hub's dashboard
(agent/maculad/tests/dashboard.rs starts the realm and passes URL, TOKEN, VICTIM, VICTIM_PID,
OUT). Prints one JSON line of figures; exits non-zero with a message on the first failure."""
import base64, gzip, json, os, re, signal, socket, subprocess, sys, tempfile, time, urllib.request

from websocket import create_connection

URL, TOKEN, VICTIM, PID, OUT = (os.environ[k] for k in ("URL", "TOKEN", "VICTIM", "VICTIM_PID", "OUT"))
os.makedirs(OUT, exist_ok=True)


console = []


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    print("browser console:\n" + "\n".join(console[-20:]), file=sys.stderr)
    sys.exit(1)


HOSTPORT = URL.split("://", 1)[1]


def raw(req, hostport=HOSTPORT):
    with socket.create_connection(tuple(hostport.rsplit(":", 1)), timeout=10) as s:
        s.sendall(req.encode())
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                return out.decode(errors="replace")
            out += b


def expect(what, got, status, text=""):
    if not got.startswith(f"HTTP/1.1 {status}") or text not in got:
        fail(f"{what}: expected {status} with {text!r}, got: {got[:300]}")


end = time.time() + 20
while True:
    try:
        socket.create_connection(tuple(HOSTPORT.rsplit(":", 1)), timeout=1).close()
        break
    except OSError:
        if time.time() > end:
            fail("the dashboard does not listen")
        time.sleep(0.1)
# Bad requests get clear errors; bounds hold; nothing is shown without a login.
get = lambda path: raw(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")


def post(path, extra, body):
    return raw(f"POST {path} HTTP/1.1\r\nHost: h:1\r\nConnection: close\r\n{extra}"
               f"Content-Length: {len(body)}\r\n\r\n{body}")


expect("state without login", get("/api/state"), 401, "not logged in")
expect("events without login", get("/api/events"), 401)
expect("a malformed request line", raw("GET /\r\n\r\n"), 400, "malformed request line")
expect("a 20 KB head", raw("GET / HTTP/1.1\r\nX: " + "a" * 20000 + "\r\n\r\n"), 400, "larger than 16 KiB")
expect("a 5000-byte body", raw("POST /api/login HTTP/1.1\r\nContent-Length: 5000\r\n\r\n"), 413, "over 4096 bytes")
expect("a form body", post("/api/login", "", "token=x"), 400, "bad request body")
login = json.dumps({"token": TOKEN})
expect("a cross-origin login", post("/api/login", "Origin: http://evil.example\r\n", login), 403, "cross-origin")
expect("a same-origin login", post("/api/login", "Origin: http://h:1\r\n", login), 200, "HttpOnly; SameSite=Strict")
expect("an action without a session", post("/api/revoke", "", '{"node_id":"x"}'), 401)
expect("PUT /api/state", raw("PUT /api/state HTTP/1.1\r\nConnection: close\r\n\r\n"), 405)
expect("an unknown path", get("/nothing"), 404)
expect("the page", get("/"), 200, "Content-Security-Policy: default-src 'self'")
# `open_on_loopback`: an edge's read-only state without login; its actions still need one.
OPEN = os.environ["OPEN_URL"].split("://", 1)[1]
expect("open state", raw("GET /api/state HTTP/1.1\r\nConnection: close\r\n\r\n", OPEN), 200, '"peers"')
expect("open session", raw("GET /api/session HTTP/1.1\r\nConnection: close\r\n\r\n", OPEN), 200, '"open":true')
expect("an open dashboard's action", raw("POST /api/firewall/confirm HTTP/1.1\r\nConnection: close\r\n"
       "Content-Length: 2\r\n\r\n{}", OPEN), 401)
expect("an admin action without the CSRF token",
       post("/api/firewall/confirm", "Cookie: macula_session=" + re.search(r"macula_session=([0-9a-f]+)",
            post("/api/login", "", login)).group(1) + "\r\nContent-Type: application/json\r\n", "{}"), 403, "X-CSRF-Token")

profile = tempfile.mkdtemp(prefix="dash-chromium-")
chrome = subprocess.Popen(
    ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
     "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
     "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--mute-audio",
     "--user-data-dir=" + profile, "--remote-debugging-port=0", "--remote-allow-origins=*",
     "about:blank"],
    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
deadline = time.time() + 30
port = None
while time.time() < deadline:
    line = chrome.stderr.readline()
    m = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
    if m:
        port = m.group(1)
        break
if port is None:
    fail("chromium did not start its DevTools endpoint")
targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
page = next(t for t in targets if t["type"] == "page")
ws = create_connection(page["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
seq = 0
requests = []


def cdp(method, **params):
    global seq
    seq += 1
    ws.send(json.dumps({"id": seq, "method": method, "params": params}))
    while True:
        msg = json.loads(ws.recv())
        if msg.get("method") == "Network.requestWillBeSent":
            requests.append(msg["params"]["request"]["url"])
        if msg.get("method") == "Runtime.exceptionThrown":
            console.append(json.dumps(msg["params"]["exceptionDetails"])[:500])
        if msg.get("method") == "Runtime.consoleAPICalled":
            console.append(" ".join(str(a.get("value", a.get("description"))) for a in msg["params"]["args"]))
        if msg.get("id") == seq:
            if "error" in msg:
                fail(f"{method}: {msg['error']}")
            return msg["result"]


def js(expr):
    r = cdp("Runtime.evaluate", expression=expr, awaitPromise=True, returnByValue=True)
    if "exceptionDetails" in r:
        fail(f"{expr}: {r['exceptionDetails']}")
    return r["result"].get("value")


def wait(what, expr, secs):
    end = time.time() + secs
    while time.time() < end:
        v = js(expr)
        if v:
            return v
        time.sleep(0.1)
    fail(f"timed out after {secs} s waiting for {what} ({expr})")


def width(w):
    cdp("Emulation.setDeviceMetricsOverride", width=w, height=844 if w < 500 else 800,
        deviceScaleFactor=1, mobile=w < 500)


def shot(name, w):
    width(w)
    time.sleep(0.3)
    size = cdp("Page.getLayoutMetrics")["cssContentSize"]
    png = cdp("Page.captureScreenshot", format="png", captureBeyondViewport=True,
              clip={"x": 0, "y": 0, "width": w, "height": size["height"], "scale": 1})
    with open(os.path.join(OUT, f"{name}-{w}.png"), "wb") as f:
        f.write(base64.b64decode(png["data"]))
    over = js("document.documentElement.scrollWidth")
    if over > w:
        wide = js("[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > "
                  f"{w}).slice(0, 5).map(e => e.tagName + '.' + e.className + ' ' + e.textContent.slice(0, 40))")
        fail(f"{name} at {w} px is {over} px wide (the page scrolls sideways): {wide}")


cdp("Page.enable")
cdp("Network.enable")
cdp("Runtime.enable")
width(1280)
cdp("Page.navigate", url=URL + "/")
wait("the login form", "!!document.querySelector('#login')", 15)
if js("fetch('/api/state').then(r => r.status)") != 401:
    fail("/api/state answers without a login")
js("document.querySelector('#token').value = 'mdt_' + '0'.repeat(64); document.querySelector('#login button').click(); 1")
err = wait("the refusal", "document.querySelector('#login-error') && document.querySelector('#login-error').textContent", 10)
if "wrong token" not in err:
    fail(f"a wrong token got: {err}")
if js("fetch('/api/state').then(r => r.status)") != 401:
    fail("a wrong token opened a session")
shot("login", 390)
shot("login", 1280)
js(f"document.querySelector('#token').value = {json.dumps(TOKEN)}; document.querySelector('#login button').click(); 1")
wait("the first render", "document.body.dataset.firstRender", 15)

# Time to first render of a logged-in page load (session cookie already set), on loopback.
renders = []
for _ in range(5):
    js("window.__old = 1")
    cdp("Page.reload", ignoreCache=True)
    renders.append(float(wait("the first render", "!window.__old && document.body && document.body.dataset.firstRender", 15)))
first_render_ms = sorted(renders)[len(renders) // 2]

wait("every member alive", "document.querySelectorAll('tr[data-state=alive]').length === 3 && "
     "document.querySelectorAll('tr[data-node]').length === 4", 30)
# Who sees whom: every member's own view, each sees the three others alive.
wait("the map of who sees whom", "document.querySelectorAll('td[data-from][data-state=alive]').length === 12", 20)
# Every member's own report (Mesh1.Reports): slots, and n1's failed update.
wait("the members' reports", "[...document.querySelectorAll('td')].some(t => t.textContent === "
     + json.dumps(os.environ["FAILED_UPDATE"]) + ") && [...document.querySelectorAll('td')].filter(t => t.textContent === 'A').length === 3", 20)
csrf_status = js("fetch('/api/revoke', {method: 'POST', headers: {'Content-Type': 'application/json'}, "
                 "body: JSON.stringify({node_id: 'x'})}).then(r => r.status)")
if csrf_status != 403:
    fail(f"an admin action without the CSRF token got {csrf_status}")

pages = [("overview", "#/"), ("node", "#/node/" + VICTIM), ("storage", "#/storage"),
         ("network", "#/network"), ("updates", "#/updates"), ("proofs", "#/proofs")]
for name, hash_ in pages:
    js(f"location.hash = {json.dumps(hash_)}; 1")
    wait(name, "document.querySelector('#view h1') !== null", 5)
    before = js("document.body.dataset.updated")
    wait("a live update", f"document.body.dataset.updated !== {json.dumps(before)}", 5)
    shot(name, 390)
    shot(name, 1280)

# The pending firewall apply, confirmed from the network page.
js("location.hash = '#/network'; 1")
wait("the confirm button", "document.querySelector('#confirm') !== null", 5)
js("document.querySelector('#confirm').click(); 1")
done = wait("the confirmation", "document.querySelector('#result') && document.querySelector('#result').textContent", 10)
if "confirmed" not in done:
    fail(f"confirm answered: {done}")
wait("no pending apply", "document.querySelector('#confirm') === null", 5)

# No external URL: every request went to the dashboard's origin, and no element names another.
outside = [u for u in requests if not (u.startswith(URL + "/") or u.startswith("data:") or u == "about:blank")]
if outside:
    fail(f"requests outside the dashboard: {outside}")
linked = js("[...document.querySelectorAll('[src],[href]')].map(e => e.getAttribute('src') || e.getAttribute('href'))"
            ".filter(u => /^[a-z]+:/i.test(u) || u.startsWith('//'))")
if linked:
    fail(f"elements name external URLs: {linked}")

# Kill a member with the storage page open; without a reload, the page shows it down and its
# degraded count rise, then fall back to 0 with the repair (every rendered value is sampled: the
# repair may be quick); afterwards the overview shows it down.
width(1280)
js("location.hash = '#/storage'; window.__noReload = 1; 1")
wait("the storage page", "document.querySelector('#degraded') !== null", 5)
row = f"document.querySelector('tr[data-node={json.dumps(VICTIM)}]')"
js("window.__peak = 0; window.__downAt = 0; setInterval(() => {"
   " const d = document.querySelector('#degraded'); if (d) window.__peak = Math.max(window.__peak, +d.textContent);"
   f" const r = {row}; if (r && r.dataset.state === 'down' && !window.__downAt) window.__downAt = Date.now(); }}, 20); 1")
t0 = time.time()
os.kill(int(PID), signal.SIGKILL)
wait("the killed member down", "window.__downAt > 0", 60)
down_after = js("window.__downAt") / 1000 - t0
wait("degraded segments", "window.__peak > 0", 60)
peak = js("window.__peak")
wait("the repair", "document.querySelector('#degraded').textContent === '0'", 90)
repaired_after = time.time() - t0
if js("window.__noReload") != 1:
    fail("the page was reloaded")
js("location.hash = '#/'; 1")
wait("the overview showing it down", f"{row} && {row}.dataset.state === 'down'", 5)
js("location.hash = '#/storage'; 1")
wait("the storage page", "document.querySelector('#degraded') !== null", 5)
shot("storage-repaired", 1280)

# Admin actions: a join code from the overview; the killed member revoked from its page.
js("location.hash = '#/'; 1")
wait("the invite form", "document.querySelector('#invite-name') !== null", 5)
js("document.querySelector('#invite-name').value = 'n9'; document.querySelector('#forms button').click(); 1")
code = wait("the join code", "document.querySelector('#code') && document.querySelector('#code').textContent", 10)
js(f"location.hash = {json.dumps('#/node/' + VICTIM)}; window.confirm = () => true; 1")
wait("the revoke button", "document.querySelector('#revoke') !== null", 5)
js("document.querySelector('#revoke').click(); 1")
revoked = wait("the revocation", "document.querySelector('#result') && document.querySelector('#result').textContent", 10)
if "revoked" not in revoked:
    fail(f"revoke answered: {revoked}")
shot("revoked", 390)

# Payload: what a first visit downloads, and one state event.
def get(path):
    req = urllib.request.Request(URL + path)
    return urllib.request.urlopen(req).read()

assets = sum(len(get(p)) for p in ["/", "/app.css", "/app.js"])
assets_gz = sum(len(gzip.compress(get(p), 9)) for p in ["/", "/app.css", "/app.js"])
state = js("fetch('/api/state').then(r => r.text())")
print(json.dumps({
    "first_render_ms": first_render_ms, "renders_ms": renders,
    "assets_bytes": assets, "assets_gzip_bytes": assets_gz,
    "state_bytes": len(state), "state_gzip_bytes": len(gzip.compress(state.encode(), 9)),
    "down_after_s": round(down_after, 1), "degraded_peak": peak,
    "repaired_after_s": round(repaired_after, 1), "join_code": code,
}))
ws.close()
chrome.terminate()
chrome.wait(10)
