"""A gateway on loopback in front of two simulators, for the reliability
suite (`run`) and the soak (`soak`): certificates made with openssl, every
process a child of this one and stopped with it, addresses read from their
logs (each listens on port 0). Python standard library only."""

import json
import os
import queue
import re
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import http.client
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOKEN_SECRET = "00000000-0000-0000-0000-000000000000"
TOKEN = f"PVEAPIToken=root@pam!ci={TOKEN_SECRET}"
CONTROL_SECRET = "reliability"
NET = "/api2/json/nodes/pve1/network"
VERSION = "/api2/json/version"

INTERFACES = """auto lo
iface lo inet loopback

iface eno1 inet manual

auto vmbr0
iface vmbr0 inet static
\taddress 192.0.2.10/24
\tgateway 192.0.2.1
\tbridge-ports eno1
\tbridge-stp off
\tbridge-fd 0
"""


def die(msg):
    print(f"reliability: {msg}", file=sys.stderr)
    sys.exit(2)


def need(*tools):
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        die("missing tools: " + ", ".join(missing)
            + " (apt-get install nghttp2-client slowhttptest openssl curl; pip install sslyze)")


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def make_ca(d: Path, name: str):
    """A CA and a leaf for localhost/127.0.0.1 (ECDSA P-256, 365 days: the
    shape Mozilla's intermediate profile accepts)."""
    ca_key, ca = d / f"{name}-ca.key", d / f"{name}-ca.pem"
    key, csr, pem = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.pem"
    ext = d / f"{name}.ext"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n"
                   "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", ca_key])
    run(["openssl", "req", "-x509", "-new", "-key", ca_key, "-sha256", "-days", "3650",
         "-subj", f"/CN={name} reliability CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", ca])
    run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key])
    run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=localhost", "-out", csr])
    run(["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-days", "365", "-sha256", "-extfile", ext, "-out", pem])
    return ca, pem, key


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class Proc:
    """A child process logging to a file; its listen address from the log."""

    def __init__(self, name, argv, log: Path, env=None, stdin=subprocess.DEVNULL):
        self.name, self.log = name, log
        out = open(log, "w")
        e = dict(os.environ, NO_COLOR="1", RUST_LOG=os.environ.get("RUST_LOG", "info"))
        e.update(env or {})
        self.p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=e, stdin=stdin,
                                  preexec_fn=raise_nofile)

    def wait_for(self, pattern, timeout=60):
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while time.monotonic() < deadline:
            text = ANSI.sub("", self.log.read_text(errors="replace"))
            m = rx.search(text)
            if m:
                return m
            if self.p.poll() is not None:
                die(f"{self.name} exited ({self.p.returncode}):\n{text}")
            time.sleep(0.05)
        die(f"{self.name}: no '{pattern}' within {timeout} s")

    def rss_kib(self):
        with open(f"/proc/{self.p.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        return self.p.returncode


class Env:
    """Perl and Rust simulators (a third Rust one with a certificate nobody
    trusts, for TLS failures) and the gateway, in `shadow`."""

    def __init__(self, bin_dir: Path, extra_limits="", keep=False, socket_activated=False):
        self.bin = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="pve-reliability-"))
        self.keep = keep
        self.procs = []
        d = self.dir
        self.ca, cert, key = make_ca(d, "node")
        _, bad_cert, bad_key = make_ca(d, "stranger")
        self.cert = cert
        (d / "interfaces").write_text(INTERFACES)
        common = ["--interfaces", str(d / "interfaces"), "--token", f"root@pam!ci={TOKEN_SECRET}",
                  "--control-secret", CONTROL_SECRET, "--listen", "127.0.0.1:0"]
        self.perl = self.sim("perl", ["--flavor", "perl", "--tls-cert", cert, "--tls-key", key] + common)
        self.rust = self.sim("rust", ["--flavor", "rust", "--tls-cert", cert, "--tls-key", key] + common)
        self.rust_badtls = self.sim("rust-badtls", ["--flavor", "rust", "--tls-cert", bad_cert,
                                                    "--tls-key", bad_key] + common)
        # a port that refuses connections and stays ours: bound, not listening
        self.refusing = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.refusing.bind(("127.0.0.1", 0))
        self.refusing_addr = "127.0.0.1:%d" % self.refusing.getsockname()[1]
        self.config = d / "migration.toml"
        self.admin = d / "control.sock"
        self.write_config(self.rust.addr, extra_limits)
        self.listener = None
        self.starts = 0
        if socket_activated:
            # systemd's part: the listening socket outlives every gateway
            self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.listener.bind(("127.0.0.1", 0))
            self.listener.listen(4096)
            # systemd's notification socket, read all the time as systemd
            # does (its queue holds only 10 datagrams)
            self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.notify.bind(str(d / "notify"))
            self.notes = queue.Queue()
            threading.Thread(target=self.read_notify, daemon=True).start()
        self.gw = self.start_gateway()
        m = self.gw.wait_for(r"listening addr=(\S+)")
        host, port = m.group(1).rsplit(":", 1)
        self.addr = (host, int(port))
        self.url = f"https://127.0.0.1:{port}"
        self.ctx = ssl.create_default_context(cafile=str(self.ca))

    def start_gateway(self):
        self.starts += 1
        argv = [str(self.bin / "pve-network-migration"), "serve", "--config", str(self.config)]
        log = self.dir / f"gateway-{self.starts}.log"
        if self.listener is None:
            gw = Proc("gateway", argv, log)
        else:
            # as systemd starts a socket-activated service: the socket as
            # descriptor 3, LISTEN_PID the pid exec keeps
            # only what the new process says counts (the old one has exited)
            while not self.notes.empty():
                self.notes.get_nowait()
            wrap = ['/bin/sh', '-c', 'exec 3<&0 0</dev/null; export LISTEN_PID=$$ LISTEN_FDS=1 '
                    'LISTEN_FDNAMES=https; exec "$0" "$@"']
            gw = Proc("gateway", wrap + argv, log, env={"NOTIFY_SOCKET": str(self.dir / "notify")},
                      stdin=self.listener.fileno())
            self.wait_ready()
        self.procs.append(gw)
        return gw

    def read_notify(self):
        while True:
            try:
                self.notes.put(self.notify.recv(512).decode(errors="replace"))
            except OSError:
                return

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self.notes.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                die(f"the gateway sent no READY=1 within {timeout} s")
            if "READY=1" in msg.splitlines():
                return

    def restart(self):
        """A socket-activated restart (systemctl restart): SIGTERM, wait for
        the exit, start the next process on the same socket. Returns the
        seconds from SIGTERM to READY."""
        t = time.monotonic()
        code = self.gw.stop()
        if code != 0:
            die(f"the gateway exited with {code} on SIGTERM")
        self.procs.remove(self.gw)
        self.gw = self.start_gateway()
        return time.monotonic() - t

    def sim(self, name, args):
        p = Proc(name, [str(self.bin / "pve-sim")] + [str(a) for a in args], self.dir / f"{name}.log")
        self.procs.append(p)
        m = p.wait_for(r"addr=(\S+)")
        p.addr = m.group(1)
        return p

    def write_config(self, rust_addr, extra_limits="", perl_addr=None):
        d = self.dir
        self.extra_limits = extra_limits or getattr(self, "extra_limits", "")
        extra_limits = self.extra_limits
        perl_addr = perl_addr or self.perl.addr
        self.config.write_text(f"""node = "pve1"
phase = "shadow"
perl_api_base_url = "https://{perl_addr}"
state_dir = "{d}/state"

[listen]
addresses = ["127.0.0.1:0"]
tls_cert = "{self.cert}"
tls_key = "{d}/node.key"

[backends.perl]
ca = "{self.ca}"

[backends.rust]
url = "https://{rust_addr}"
ca = "{self.ca}"
timeout_ms = 500

[access]
pveproxy_defaults = "{d}/pveproxy"

[log]
migration_log = "{d}/migration.log"

[admin]
socket = "{self.admin}"
config_check_interval_ms = 200

[limits]
max_connections = 12000
shutdown_grace_ms = 5000
{extra_limits}
""")

    def use_backends(self, rust=None, perl=None):
        """Points the gateway at other backend addresses (a reload, picked up
        by polling the file) and waits until the health check names them."""
        rust, perl = rust or self.rust.addr, perl or self.perl.addr
        phase = self.ctl("phase", "get").get("configured", "shadow")
        self.write_config(rust, perl_addr=perl)
        self.config.write_text(self.config.read_text().replace('phase = "shadow"', f'phase = "{phase}"', 1))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            h = json.dumps(self.ctl("health"))
            if f"https://{rust}" in h and f"https://{perl}" in h:
                return
            time.sleep(0.05)
        die(f"the gateway did not take up rust={rust} perl={perl}: {h}")

    def ctl(self, *args):
        out = subprocess.run([str(self.bin / "migration-ctl"), "--socket", str(self.admin), "--json",
                              *args], capture_output=True, text=True, timeout=60)
        if out.returncode not in (0, 1):
            die(f"migration-ctl {' '.join(args)}: {out.returncode} {out.stderr}")
        return json.loads(out.stdout) if out.stdout.strip() else {}

    def set_phase(self, phase):
        self.ctl("phase", "set", phase)
        self.ctl("trip", "reset")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            v = self.ctl("phase", "get")
            if v.get("effective") == phase and v.get("configured") == phase:
                return
            time.sleep(0.05)
        die(f"phase {phase} not in effect: {v}")

    def tripped(self):
        return self.ctl("trip", "status").get("state") == "tripped"

    def set_faults(self, sim, faults):
        """Replaces a simulator's faults (a list of fault strings or objects)."""
        host, port = sim.addr.rsplit(":", 1)
        c = http.client.HTTPSConnection(host, int(port), context=self.ctx, timeout=30)
        c.request("PUT", "/_sim/faults", body=json.dumps({"faults": faults}),
                  headers={"X-Sim-Control-Secret": CONTROL_SECRET, "Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        if r.status != 200:
            die(f"set faults on {sim.name}: {r.status} {r.reason}")

    def metrics(self):
        out = subprocess.run(["curl", "-s", "--unix-socket", str(self.admin), "http://gateway/metrics"],
                             capture_output=True, text=True, timeout=30)
        return out.stdout

    def get(self, path=VERSION, timeout=10):
        """One GET on a new connection: (status, reason) or raises."""
        c = http.client.HTTPSConnection(self.addr[0], self.addr[1], context=self.ctx, timeout=timeout)
        try:
            c.request("GET", path, headers={"Authorization": TOKEN, "Host": "localhost"})
            r = c.getresponse()
            r.read()
            return r.status, r.reason
        finally:
            c.close()

    def close(self):
        for p in reversed(self.procs):
            p.stop()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


class Prober:
    """GETs through the gateway every `every` s on new connections while a
    case runs; counts what failed."""

    def __init__(self, env: Env, path=VERSION, every=0.2):
        self.env, self.path, self.every = env, path, every
        self.ok, self.failed, self.slowest = 0, [], 0.0
        self.stop_flag = threading.Event()
        self.t = threading.Thread(target=self.loop, daemon=True)

    def loop(self):
        while not self.stop_flag.is_set():
            t = time.monotonic()
            try:
                status, reason = self.env.get(self.path)
                if status == 200:
                    self.ok += 1
                else:
                    self.failed.append(f"{status} {reason}")
            except Exception as e:  # noqa: BLE001 - any failure counts
                self.failed.append(repr(e))
            self.slowest = max(self.slowest, time.monotonic() - t)
            self.stop_flag.wait(self.every)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        self.t.join(30)


H2LOAD_REQ = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                        r"(\d+) failed, (\d+) errored, (\d+) timeout")
H2LOAD_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
H2LOAD_RATE = re.compile(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s")


def h2load(env: Env, path, n, c, m=1, h1=False, extra=()):
    argv = ["h2load", "-n", str(n), "-c", str(c), "-m", str(m), "-H", f"authorization: {TOKEN}",
            *extra]
    if h1:
        argv.append("--h1")
    argv.append(env.url + path)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600).stdout
    req, st, rate = H2LOAD_REQ.search(out), H2LOAD_STATUS.search(out), H2LOAD_RATE.search(out)
    if not (req and st and rate):
        die(f"h2load output not understood:\n{out}")
    total, _, done, ok, failed, errored, timeout = map(int, req.groups())
    s2, s3, s4, s5 = map(int, st.groups())
    return {"total": total, "done": done, "succeeded": ok, "failed": failed, "errored": errored,
            "timeout": timeout, "2xx": s2, "3xx": s3, "4xx": s4, "5xx": s5,
            "rps": float(rate.group(3))}


def open_idle_tls(env: Env, count, alpn="http/1.1"):
    """Opens `count` TLS connections and keeps them (a list of sockets)."""
    raise_nofile()
    ctx = ssl.create_default_context(cafile=str(env.ca))
    ctx.set_alpn_protocols([alpn])
    socks = []
    lock = threading.Lock()
    errors = []

    def worker(k):
        for _ in range(k):
            try:
                s = socket.create_connection(env.addr, timeout=30)
                t = ctx.wrap_socket(s, server_hostname="localhost")
                with lock:
                    socks.append(t)
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
    threads = [threading.Thread(target=worker, args=(count // 50,)) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return socks, errors
