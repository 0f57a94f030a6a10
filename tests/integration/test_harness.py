"""test_harness.py: the integration-test harness itself does what every other
integration test relies on: isolated databases that vanish, processes that are
started, frozen, killed and cleaned up, readiness waits that notice a dead
process, HTTP and raw-socket clients, and a runner that reports failures with
the process logs and a non-zero exit."""

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time

import harness

HERE = os.path.dirname(os.path.abspath(__file__))
PY = sys.executable

# A small HTTP server (a stand-in for any HTTP process, not for our
# binaries): /readyz answers 503 for its first 0.3 s; /echo returns the
# request; exits 0 on SIGTERM.
HTTP_SERVER = textwrap.dedent(r'''
    import json, signal, sys, time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    t0 = time.monotonic()
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def reply(self, status, obj, extra=()):
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in extra:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
        def do_GET(self):
            if self.path == "/readyz":
                ok = time.monotonic() - t0 > 0.3
                self.reply(200 if ok else 503, {"ready": ok})
            elif self.path == "/chunked":
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for part in (b"hello ", b"chunked ", b"world"):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.reply(200, {"path": self.path, "host": self.headers.get("Host")},
                           [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])
        def do_POST(self):
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = b""
                while True:
                    n = int(self.rfile.readline().strip(), 16)
                    if n == 0:
                        self.rfile.readline()
                        break
                    data += self.rfile.read(n)
                    self.rfile.readline()
            else:
                data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.reply(200, {"got": data.decode(), "type": self.headers.get("Content-Type")})
        def log_message(self, fmt, *args):
            print("request:", fmt % args, flush=True)
    srv = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H)
    signal.signal(signal.SIGTERM, lambda *a: (print("draining", flush=True), sys.exit(0)))
    print("listening", flush=True)
    srv.serve_forever()
''')

# A Redis client process: INCRs a key every 20 ms.
REDIS_COUNTER = textwrap.dedent(r'''
    import os, socket, sys, time
    host, _, port = os.environ["MALL_REDIS_ADDR"].rpartition(":")
    s = socket.create_connection((host, int(port)))
    key = sys.argv[1].encode()
    while True:
        s.sendall(b"*2\r\n$4\r\nINCR\r\n$%d\r\n%s\r\n" % (len(key), key))
        s.recv(100)
        time.sleep(0.02)
''')


def write(name, text):
    path = os.path.join(harness.workdir(), name)
    with open(path, "w") as f:
        f.write(text)
    return path


def start_http(name="web"):
    port = harness.free_port()
    p = harness.start_process(name, [PY, "-u", write("http_server.py", HTTP_SERVER), str(port)])
    return p, port


def test_free_port_gives_distinct_bindable_ports():
    ports = [harness.free_port() for _ in range(50)]
    assert len(set(ports)) == 50, "free_port repeated a port: %s" % ports
    for port in ports[:10]:
        s = socket.socket()
        s.bind(("127.0.0.1", port))
        s.close()


def test_database_is_fresh_and_isolated():
    c = harness.cluster()
    # whatever an earlier database did, creating one takes these away again
    c.sql("GRANT CONNECT ON DATABASE postgres TO PUBLIC",
          "GRANT CONNECT ON DATABASE template1 TO PUBLIC")
    a = c.create_database("harness")
    b = c.create_database("harness")
    assert re.fullmatch(r"mall_harness_[0-9a-f]{8}", a.name), a.name
    assert a.name != b.name
    assert a.sql_as_owner("SELECT current_user, current_database()") == [(a.name, a.name)]
    # the catalog's first migration creates pg_trgm as the owner
    a.sql_as_owner("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    assert a.sql_as_owner("SELECT similarity('apple', 'apples') > 0.5") == [("t",)]
    assert a.sql("SELECT NULL, 'x|y'") == [(None, "x|y")]
    for other in (b.name, "postgres", "template1"):
        code, _, err = c.sql("SELECT 1", dbname=other, user=a.role, check=False)
        assert code != 0 and "permission denied for database" in err, (other, code, err)
    # the superuser still reaches everything
    assert c.sql("SELECT 1", dbname="postgres") == [("1",)]
    b.drop()
    assert c.sql("SELECT count(*) FROM pg_database WHERE datname = '%s'" % b.name) == [("0",)]
    assert c.sql("SELECT count(*) FROM pg_roles WHERE rolname = '%s'" % b.name) == [("0",)]


def test_http_process_lifecycle():
    p, port = start_http()
    url = "http://127.0.0.1:%d" % port
    r = harness.wait_http(url + "/readyz", 200, timeout=10, proc=p)
    assert r.body == {"ready": True}, r
    r = harness.http("GET", url + "/x?y=1")
    assert r.status == 200 and r.body["path"] == "/x?y=1", r
    status, headers, body = r
    assert headers.get_all("Set-Cookie") == ["a=1", "b=2"], headers
    assert headers["content-type"] == "application/json"
    r = harness.http("POST", url + "/echo", {"a": [1, 2]})
    assert r.body == {"got": '{"a": [1, 2]}', "type": "application/json"}, r
    r = harness.http("GET", url + "/chunked")
    assert r.body == b"hello chunked world", r
    # frozen: holds its socket, answers nothing
    p.stop()
    try:
        harness.http("GET", url + "/x", timeout=0.5)
        raise AssertionError("a stopped process answered")
    except socket.timeout:
        pass
    p.cont()
    assert harness.http("GET", url + "/x").status == 200
    assert p.terminate() == 0
    assert "draining" in p.log()
    assert "request:" in p.log(), "the process log is captured"


def test_kill9_and_wait_http_notices_a_dead_process():
    p, port = start_http("victim")
    harness.wait_http("http://127.0.0.1:%d/readyz" % port, proc=p)
    assert p.kill9() == -signal.SIGKILL
    assert not p.alive()
    q = harness.start_process("quitter", [PY, "-c", "print('bye'); raise SystemExit(3)"])
    t0 = time.monotonic()
    try:
        harness.wait_http("http://127.0.0.1:%d/readyz" % harness.free_port(), timeout=30, proc=q)
        raise AssertionError("wait_http succeeded against nothing")
    except harness.HarnessError as e:
        assert "status 3" in str(e) and "bye" in str(e), e
    assert time.monotonic() - t0 < 5, "wait_http did not notice the exit early"
    q.wait()
    try:
        harness.wait_http("http://127.0.0.1:%d/" % port, timeout=0.5)
        raise AssertionError("wait_http succeeded against a killed process")
    except harness.HarnessError as e:
        assert "did not answer 200" in str(e), e


def test_raw_requests():
    p, port = start_http("rawweb")
    harness.wait_http("http://127.0.0.1:%d/readyz" % port, proc=p)
    # no Host header, HTTP/1.0
    data = harness.raw("127.0.0.1", port, b"GET /nohost HTTP/1.0\r\n\r\n")
    r = harness.parse_response(data)
    assert r.status == 200 and r.body == {"path": "/nohost", "host": None}, r
    # a chunked request body, sent slowly in pieces
    pieces = [b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n",
              b"Content-Type: text/plain\r\n\r\n", b"5\r\nhello\r\n", b"6\r\n world\r\n",
              b"0\r\n\r\n"]
    t0 = time.monotonic()
    r = harness.parse_response(harness.raw("127.0.0.1", port, pieces, delay=0.1))
    assert time.monotonic() - t0 >= 0.4, "pieces were not sent slowly"
    assert r.body == {"got": "hello world", "type": "text/plain"}, r
    # two pipelined requests on one connection, then a close
    with harness.RawConnection("127.0.0.1", port) as c:
        c.send(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /chunked HTTP/1.1\r\nHost: x\r\n"
               b"Connection: close\r\n\r\n")
        r1, r2 = c.read_response(), c.read_response()
        assert r1.body["path"] == "/one", r1
        assert r2.body == b"hello chunked world", r2
        assert c.wait_closed(5)
    # nothing answers a half-sent request
    with harness.RawConnection("127.0.0.1", port) as c:
        c.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n")
        assert c.read_response(timeout=0.3) is None
    p.terminate()


def test_redis_using_process_stops_and_continues():
    key = "harness-test:%d" % os.getpid()
    red = harness.Redis()
    red("DEL", key)
    p = harness.start_process("counter", [PY, "-u", write("counter.py", REDIS_COUNTER), key],
                              env={"MALL_REDIS_ADDR": harness.redis_addr()})

    def count():
        v = red("GET", key)
        return int(v) if v else 0
    harness.wait_until(lambda: count() >= 3, 10, "the counter counting")
    p.stop()
    time.sleep(0.1)
    frozen = count()
    time.sleep(0.3)
    assert count() == frozen, "a stopped process kept writing"
    p.cont()
    harness.wait_until(lambda: count() > frozen + 3, 10, "the counter going on")
    p.kill9()
    red("DEL", key)
    red.close()
    # a private Redis
    own = harness.start_redis()
    r2 = harness.Redis(own.addr)
    assert r2("SET", "k", "v") == "OK" and r2("GET", "k") == b"v"
    assert r2("DBSIZE") == 1
    r2.close()


def test_runner_reports_failures_and_cleans_up():
    # a test program of its own: one passing test, one failing, a process
    # that logs a marker, a database; it must report, exit 1 and clean up.
    marker = "marker-%d" % os.getpid()
    prog = write("test_inner.py", textwrap.dedent('''
        import sys
        sys.path.insert(0, %r)
        import harness
        def test_passes():
            db = harness.cluster().create_database("inner")
            # the marker is built at run time: the command line must not match
            p = harness.start_process("talker", [sys.executable, "-u", "-c",
                "import time; print(%r + '-' + str(6 * 7), flush=True); time.sleep(60)"])
            p.wait_log(%r + "-42")
            print("DB", db.name, "PID", p.pid, flush=True)
        def test_fails():
            assert 1 + 1 == 3, "arithmetic is broken"
        def test_crash_is_reported():
            q = harness.start_process("crasher", [sys.executable, "-c",
                "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"])
            s = harness.start_process("sanitized", [sys.executable, "-c",
                "print('x.c:1:2: runtime' + ' error: signed integer overflow')"])
            assert s.wait() == 0
            import time; time.sleep(0.5)
        def helper_not_a_test():
            raise RuntimeError("must not run")
        harness.run()
    ''' % (HERE, marker, marker)))
    out = subprocess.run([PY, "-u", prog], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, MALL_IT_KEEP="0", TMPDIR=harness.workdir()))
    text = out.stdout + out.stderr
    assert out.returncode == 1, "exit %d:\n%s" % (out.returncode, text)
    assert re.search(r"^ok   test_passes", text, re.M), text
    assert re.search(r"^FAIL test_fails .*arithmetic is broken", text, re.M), text
    after_fail = re.search(r"^FAIL test_fails.*?(?=^ok|^FAIL)", text, re.M | re.S)
    assert after_fail and marker + "-42" in after_fail.group(0), "no log tail after the failure:\n" + text
    assert re.search(r"^FAIL processes: .*crasher exited on its own with signal SIGSEGV", text, re.M), text
    assert re.search(r"^FAIL processes: .*sanitized printed a sanitizer report", text, re.M), text
    assert "must not run" not in text
    assert text.rstrip().splitlines()[-1] == "2 passed, 2 failed", text
    db = re.search(r"DB (\S+) PID (\d+)", text)
    assert db, text
    c = harness.cluster()
    assert c.sql("SELECT count(*) FROM pg_database WHERE datname = '%s'" % db.group(1)) == [("0",)]
    assert not os.path.exists("/proc/%s" % db.group(2)), "the inner process survived"


def test_killed_runner_takes_its_processes_along():
    # ctest kills a test program that times out with SIGKILL: no atexit runs,
    # yet its processes must not live on.
    prog = write("test_killed.py", textwrap.dedent('''
        import sys, time
        sys.path.insert(0, %r)
        import harness
        p = harness.start_process("sleeper", [sys.executable, "-c", "import time; time.sleep(120)"])
        print("PID", p.pid, flush=True)
        time.sleep(120)
    ''' % HERE))
    inner = subprocess.Popen([PY, "-u", prog], stdout=subprocess.PIPE, text=True,
                             env=dict(os.environ, TMPDIR=harness.workdir()))
    line = inner.stdout.readline()
    pid = int(line.split()[1])
    assert os.path.exists("/proc/%d" % pid)
    inner.kill()
    inner.wait()
    inner.stdout.close()
    harness.wait_until(lambda: not os.path.exists("/proc/%d" % pid), 5,
                       "the orphan (pid %d) dying" % pid)


def test_missing_environment_fails_clearly():
    env = dict(os.environ)
    for k in ("MALL_TEST_PG_ADMIN", "MALL_TEST_REDIS", "MALL_BUILD_DIR"):
        env.pop(k, None)
    code = ("import sys; sys.path.insert(0, %r); import harness\n"
            "for f in (harness.cluster, harness.redis_addr, harness.build_dir):\n"
            "    try:\n        f(); print('no error')\n"
            "    except harness.HarnessError as e:\n        print(e)\n") % HERE
    out = subprocess.run([PY, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    assert "no error" not in out.stdout, out.stdout
    for name in ("MALL_TEST_PG_ADMIN", "MALL_TEST_REDIS", "MALL_BUILD_DIR"):
        assert "%s is not set" % name in out.stdout, out.stdout + out.stderr


harness.run()
