#!/usr/bin/env python3
"""MetaStore (RocksDB engine) and etcd at scale, side by side (issue 17).

Run through scripts/scale.sh, which builds the release binaries and passes
them in. For each server, one member on loopback free ports with a fresh
data dir, these phases (--phases picks some):

  load     --keys Kubernetes-shaped keys (metastore-bench put --k8s-keys:
           /registry/<resource>/<namespace>/<name>, 40-80 B), 256 B values,
           every 10,000th value 100 KiB; in chunks, with throughput, RSS and
           db size after each. etcd runs with --quota-backend-bytes 8 GiB
           and is recorded as far as it gets (a chunk with errors ends it).
  lists    paginated list (--limit 500, 1,000 clients) of /registry/pods/
           (a tenth of the keys): first pages only, then whole lists paged
           as Kubernetes does; one unpaginated range of about 1 % of the
           keys (pods of 100 namespaces) with the RSS it adds; count_only
           (a limit of 1: etcdctl 3.4 has no --count-only) and keys_only
           (--limit 1000) over every key, with time and RSS.
  range    only the unpaginated range of lists (--range-namespaces sets
           its size: with --keys 1000000 --range-namespaces 1000 it holds
           every pod, 100,000 keys, ~30 MiB).
  restart  first 100 event keys on a lease (as Kubernetes' events), so
           leases must be recovered too; then SIGTERM, the time until a
           linearizable read answers and the RSS after; the same after
           kill -9. After each, the lease must still hold its 100 keys.
  online   put p99 at 100 clients: a baseline window, a window during a
           compaction of the whole history, a window during defrag; the
           raft term before and after each (a change = an election).
  join     one more member added (member add, then started empty): the
           time until it has m1's revision, its peak RSS and m1's.

With --members 3 every server runs as a 3-member cluster on loopback:
clients and measurements go to m1 (leader or follower, as the election
went), the restart phase restarts m1 alone, and join adds a fourth member.

A server whose RSS passes --rss-cap-gib (16) is killed, which the results
record, and started again for the phases left. After the paginated list
the script waits for the server's CPU to settle: requests the clients gave
up on may still be running.

Results: one JSON object per server in OUT/results.json, and a table on
stdout. The data dirs are removed at the end unless --keep-data (then
OUT/<server>/<server>-m<N> hold them, to rerun a phase on a copy).
Servers are stopped by PID. Needs etcdctl and, for etcd, /usr/bin/etcd.
"""
import argparse
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

GIB = 1 << 30
PHASES = ["load", "lists", "range", "restart", "online", "join"]


def log(msg):
    print(time.strftime("%H:%M:%S"), msg, file=sys.stderr, flush=True)


def free_ports(n):
    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.check_output([sys.executable, os.path.join(here, "free-ports.py"), str(n)], text=True)
    return [int(p) for p in out.split()]


def proc_kb(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak(pid):
    """Resets VmHWM to the current RSS (Linux clear_refs 5)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def du_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


class Member:
    """One server process of a cluster."""

    def __init__(self, server, name, data_dir, client_port, peer_port, log_path):
        self.server, self.name, self.data_dir = server, name, data_dir
        self.client_port, self.peer_port = client_port, peer_port
        self.endpoint = f"127.0.0.1:{client_port}"
        self.peer_url = f"http://127.0.0.1:{peer_port}"
        self.log_path = log_path
        self.proc = None

    def start(self, cluster, state="new"):
        s = self.server
        args = [
            s.binary, "--name", self.name, "--data-dir", self.data_dir,
            "--listen-client-urls", f"http://{self.endpoint}", "--advertise-client-urls", f"http://{self.endpoint}",
            "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", cluster, "--initial-cluster-state", state, "--initial-cluster-token", "scale",
            "--quota-backend-bytes", str(s.quota), "--log-level", s.log_level,
        ]
        args += s.extra
        self.proc = subprocess.Popen(args, stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT)
        return time.time()

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=120):
        if not self.alive():
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class RssGuard:
    """Kills a member whose RSS passes a cap, so one server's runaway memory
    (etcd building a large list's response many times over) ends that
    server's run instead of the machine's. Records when it fired."""

    def __init__(self, member, cap_mib):
        self.member, self.cap_kb, self.fired = member, cap_mib * 1024, None
        self.phase = "start"
        self.stopped = threading.Event()
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self):
        while not self.stopped.wait(0.2):
            m = self.member
            if m.alive() and proc_kb(m.pid, "VmRSS") > self.cap_kb and self.fired is None:
                self.fired = {"phase": self.phase, "rss_mib": proc_kb(m.pid, "VmRSS") // 1024}
                log(f"{m.server.kind}: RSS cap passed in {self.phase}: {self.fired}; killing it")
                m.proc.kill()


class Server:
    def __init__(self, kind, binary, quota, extra, log_level):
        self.kind, self.binary, self.quota, self.extra = kind, binary, quota, extra
        self.log_level = log_level


def etcdctl(endpoints, *args, timeout="60s", check=True, capture=True, stdout=None):
    cmd = ["etcdctl", "--endpoints", endpoints, "--dial-timeout", "2s", "--command-timeout", timeout, *args]
    env = dict(os.environ, ETCDCTL_API="3")
    if stdout is not None:
        return subprocess.run(cmd, env=env, check=check, stdout=stdout, stderr=subprocess.PIPE)
    return subprocess.run(cmd, env=env, check=check, capture_output=capture, text=True)


def wait_ready(member, deadline_s=900):
    """Waits until a linearizable read answers; returns the seconds it took."""
    t0 = time.time()
    while time.time() - t0 < deadline_s:
        if not member.alive():
            raise RuntimeError(f"{member.name} exited; see {member.log_path}")
        r = etcdctl(member.endpoint, "get", "--consistency=l", "scale-probe", timeout="5s", check=False)
        if r.returncode == 0:
            return time.time() - t0
        time.sleep(0.05)
    raise RuntimeError(f"{member.name} not ready after {deadline_s} s")


def status(endpoint):
    r = etcdctl(endpoint, "endpoint", "status", "-w", "json", timeout="30s")
    return json.loads(r.stdout)[0]["Status"]


def bench(args, bench_bin, endpoint, *workload, conns=100, clients=1000, total=None, duration=None):
    cmd = [bench_bin, "--json", "--timeout", "3600s", "--request-timeout", "60s", "--endpoints", endpoint,
           "--conns", str(conns), "--clients", str(clients)]
    if total is not None:
        cmd += ["--total", str(total)]
    if duration is not None:
        cmd += ["--duration", f"{duration}s"]
    cmd += list(workload)
    # The bench exits 1 when every request failed (a server answering no
    # page of a list in time); its report is still the measurement.
    r = subprocess.run(cmd, capture_output=True, text=True)
    lines = r.stdout.strip().splitlines()
    if r.returncode not in (0, 1) or not lines:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()[-300:]}")
    return json.loads(lines[-1])


def load(res, m, opts):
    chunk = max(1, min(1_000_000, opts.keys // 10))
    res["load"] = chunks = []
    done = 0
    while done < opts.keys:
        n = min(chunk, opts.keys - done)
        r = bench(opts, opts.bench, m.endpoint, "put", "--k8s-keys", "--sequential-keys",
                  "--key-space-size", str(opts.keys), "--key-offset", str(done), "--val-size", "256",
                  "--large-val-every", "10000", "--large-val-size", str(100 * 1024), total=n)
        st = status(m.endpoint)
        row = {"keys": done + n, "ops_per_s": round(r["ops_per_s"]), "errors": r["errors_total"],
               "p99_ms": r["latency_ms"]["p99"], "rss_mib": proc_kb(m.pid, "VmRSS") // 1024,
               "hwm_mib": proc_kb(m.pid, "VmHWM") // 1024, "db_mib": st["dbSize"] >> 20,
               "disk_mib": du_bytes(m.data_dir) >> 20}
        chunks.append(row)
        log(f"{m.server.kind}: {row}")
        if r["errors_total"] > 0:
            res["load_stopped"] = {"at_keys": done, "errors": r.get("errors", {})}
            log(f"{m.server.kind}: load stopped with errors {r.get('errors')}")
            break
        done += n
    res["keys_loaded"] = done
    res["peak_rss_mib_after_load"] = proc_kb(m.pid, "VmHWM") // 1024
    res["rss_mib_after_load"] = proc_kb(m.pid, "VmRSS") // 1024


def range_rss(m, label, *args, out=None):
    """Runs one etcdctl read; returns time, response bytes and RSS growth."""
    reset_peak(m.pid)
    time.sleep(0.2)
    before = proc_kb(m.pid, "VmRSS")
    t0 = time.time()
    with open(out or os.devnull, "wb") as f:
        r = etcdctl(m.endpoint, *args, timeout="600s", check=False, stdout=f)
    took = time.time() - t0
    peak = proc_kb(m.pid, "VmHWM")
    size = os.path.getsize(out) if out else None
    row = {"ok": r.returncode == 0, "s": round(took, 2), "rss_before_mib": before // 1024,
           "rss_growth_mib": max(0, peak - before) // 1024, "response_mib": None if size is None else round(size / 2**20, 1)}
    if r.returncode != 0:
        row["error"] = r.stderr.decode(errors="replace").strip()[-300:]
    log(f"{m.server.kind}: {label}: {row}")
    return row


def settle(m, idle_cpu=0.2, limit_s=600):
    """Waits until the server's CPU use falls below idle_cpu cores."""
    hz = os.sysconf("SC_CLK_TCK")

    def ticks():
        with open(f"/proc/{m.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    t0 = time.time()
    while m.alive() and time.time() - t0 < limit_s:
        try:
            a = ticks()
            time.sleep(1)
            if (ticks() - a) / hz < idle_cpu:
                break
        except OSError:  # it exited meanwhile
            break
    return round(time.time() - t0, 1)


def one_range(res, m, opts, work):
    """One unpaginated range: the pods of the first --range-namespaces
    namespaces (of 1,000; 100 is 1 % of the keys), written to a file."""
    out = res.setdefault("lists", {})
    resp = os.path.join(work, "range.pb")
    end = "/registry/pods0" if opts.range_namespaces >= 1000 else f"/registry/pods/ns-{opts.range_namespaces:04}/"
    out["unpaginated_1pct"] = range_rss(m, "unpaginated range", "get", "/registry/pods/ns-0000/", end,
                                        "-w", "protobuf", out=resp)
    os.unlink(resp)


def list_pods(out, m, opts, name, what, *extra):
    """One 1,000-client run of range --limit 500 over every pod, as out[name]."""
    reset_peak(m.pid)
    r = bench(opts, opts.bench, m.endpoint, "range", "/registry/pods/", "/registry/pods0", "--limit", "500",
              *extra, duration=opts.window)
    out[name] = {"ops_per_s": round(r["ops_per_s"], 1), "p99_ms": r["latency_ms"]["p99"],
                 "errors": r["errors_total"], "server_alive": m.alive()}
    if m.alive():
        out[name]["peak_rss_mib"] = proc_kb(m.pid, "VmHWM") // 1024
    log(f"{m.server.kind}: {what}: {out[name]}")
    # Let the server finish requests the clients gave up on, so they do
    # not count against the next measurement.
    settle(m)
    if not m.alive():
        # Killed by the RSS guard (during the list or after it): start it
        # again for the rest.
        out[name]["killed_at_rss_cap"] = True
        m.start(m.cluster)
        out["restart_after_kill_s"] = round(wait_ready(m), 2)


def lists(res, m, opts, work):
    out = res["lists"] = {}
    # Every request the first page of a list, at the current revision.
    list_pods(out, m, opts, "paginated_pods_limit500", "paginated list (first pages)")
    # Whole lists, as Kubernetes pages: each next page from just past the
    # last key, at the first page's revision.
    list_pods(out, m, opts, "paged_pods_limit500", "paginated list (whole lists)", "--paginate")
    one_range(res, m, opts, work)
    # etcdctl 3.4 has no --count-only; a limit of 1 makes the server count
    # every key just the same (the response's count) and send one.
    out["count_only_all"] = range_rss(m, "count (limit 1)", "get", "", "--from-key", "--limit", "1", "-w", "json")
    out["keys_only_all_limit1000"] = range_rss(m, "keys_only", "get", "", "--from-key", "--keys-only",
                                               "--limit", "1000")


LEASED_KEYS = 100


def leased_key(i):
    return f"/registry/events/ns-0000/scale-{i:04}"


def leased_keys(m, lease):
    """How many of the leased keys `etcdctl lease timetolive --keys` lists
    for `lease` (base64 in its JSON); any other key it lists is an error."""
    r = etcdctl(m.endpoint, "lease", "timetolive", lease, "--keys", "-w", "json", timeout="30s")
    got = {base64.b64decode(k).decode() for k in json.loads(r.stdout).get("keys") or []}
    want = {leased_key(i) for i in range(LEASED_KEYS)}
    if got - want:
        raise RuntimeError(f"lease {lease} holds keys it was never given: {sorted(got - want)[:5]}")
    return len(got & want)


def restart(res, m, cluster):
    out = res["restart"] = {}
    # A restart recovers leases and the keys attached to them; Kubernetes
    # keeps its events on leases, so the data set gets some.
    lease = etcdctl(m.endpoint, "lease", "grant", "86400").stdout.split()[1]
    for i in range(LEASED_KEYS):
        etcdctl(m.endpoint, "put", leased_key(i), "x" * 256, "--lease", lease)
    out["leased_keys"] = LEASED_KEYS
    for how, sig in [("sigterm", signal.SIGTERM), ("kill9", signal.SIGKILL)]:
        m.stop(sig)
        m.start(cluster)
        ready = wait_ready(m)
        time.sleep(1)
        out[how] = {"ready_s": round(ready, 2), "rss_mib": proc_kb(m.pid, "VmRSS") // 1024,
                    "hwm_mib": proc_kb(m.pid, "VmHWM") // 1024, "lease_keys_after": leased_keys(m, lease)}
        log(f"{m.server.kind}: restart after {how}: {out[how]}")
        if out[how]["lease_keys_after"] != LEASED_KEYS:
            raise RuntimeError(f"lease {lease} lost keys across the restart: {out[how]}")


def put_window(opts, m, seconds):
    # Updates of existing keys, as a cluster's steady state.
    return bench(opts, opts.bench, m.endpoint, "put", "--k8s-keys", "--key-space-size", str(max(1, m.keys)),
                 "--val-size", "256", conns=10, clients=100, duration=seconds)


def online(res, m, opts):
    out = res["online"] = {}
    term0 = status(m.endpoint)["raftTerm"]
    base = put_window(opts, m, opts.window)
    out["baseline_p99_ms"] = base["latency_ms"]["p99"]
    out["baseline_ops_per_s"] = round(base["ops_per_s"])
    rev = status(m.endpoint)["header"]["revision"]
    for what in ["compact", "defrag"]:
        proc = subprocess.Popen(
            [opts.bench, "--json", "--timeout", "3600s", "--request-timeout", "60s", "--endpoints", m.endpoint,
             "--conns", "10", "--clients", "100", "--duration", f"{opts.window}s", "put", "--k8s-keys",
             "--key-space-size", str(max(1, m.keys)), "--val-size", "256"],
            stdout=subprocess.PIPE, text=True)
        time.sleep(2)
        t0 = time.time()
        if what == "compact":
            r = etcdctl(m.endpoint, "compact", str(rev), "--physical", timeout="3600s", check=False)
        else:
            r = etcdctl(m.endpoint, "defrag", timeout="3600s", check=False)
        took = time.time() - t0
        during = json.loads(proc.communicate()[0].strip().splitlines()[-1])
        out[what] = {"rpc_s": round(took, 2), "ok": r.returncode == 0, "p99_ms": during["latency_ms"]["p99"],
                     "max_ms": during["latency_ms"]["max"], "ops_per_s": round(during["ops_per_s"]),
                     "errors": during["errors_total"]}
        if r.returncode != 0:
            out[what]["error"] = r.stderr.strip()[-300:]
        log(f"{m.server.kind}: during {what}: {out[what]}")
    out["elections"] = status(m.endpoint)["raftTerm"] != term0
    out["db_mib_after"] = status(m.endpoint)["dbSize"] >> 20


def join(res, m, server, work, cluster, name):
    out = res["join"] = {}
    cport, pport = free_ports(2)
    new = Member(server, name, os.path.join(work, name), cport, pport, os.path.join(work, f"{name}.log"))
    etcdctl(m.endpoint, "member", "add", name, f"--peer-urls={new.peer_url}", timeout="60s")
    reset_peak(m.pid)
    t0 = new.start(f"{cluster},{name}={new.peer_url}", state="existing")
    target = status(m.endpoint)["header"]["revision"]
    try:
        while time.time() - t0 < 3600:
            if not new.alive():
                raise RuntimeError(f"{name} exited; see {new.log_path}")
            r = etcdctl(new.endpoint, "endpoint", "status", "-w", "json", timeout="5s", check=False)
            if r.returncode == 0 and json.loads(r.stdout)[0]["Status"]["header"]["revision"] >= target:
                break
            time.sleep(0.5)
        out.update({"caught_up_s": round(time.time() - t0, 1), "joiner_hwm_mib": proc_kb(new.pid, "VmHWM") // 1024,
                    "leader_hwm_mib": proc_kb(m.pid, "VmHWM") // 1024,
                    "joiner_disk_mib": du_bytes(new.data_dir) >> 20})
        log(f"{server.kind}: join: {out}")
    finally:
        new.stop()


def run_server(server, opts, work):
    res = {"server": server.kind, "keys": opts.keys, "members": opts.members}
    ports = free_ports(2 * opts.members)
    members = [Member(server, f"m{i + 1}", os.path.join(work, f"{server.kind}-m{i + 1}"), ports[2 * i],
                      ports[2 * i + 1], os.path.join(work, f"{server.kind}-m{i + 1}.log"))
               for i in range(opts.members)]
    # Clients and measurements go to m1; the others are its peers.
    m, peers = members[0], members[1:]
    m.keys = opts.keys
    cluster = ",".join(f"{x.name}={x.peer_url}" for x in members)
    for x in members:
        x.cluster = cluster
        x.start(cluster)
    guard = RssGuard(m, opts.rss_cap_gib * 1024)
    peer_guards = [RssGuard(x, opts.rss_cap_gib * 1024) for x in peers]
    try:
        wait_ready(m, 60)
        phases = opts.phases
        for g in peer_guards:
            g.phase = "peer"
        if "load" in phases:
            guard.phase = "load"
            load(res, m, opts)
            m.keys = res["keys_loaded"] or opts.keys
        if "lists" in phases:
            guard.phase = "lists"
            lists(res, m, opts, work)
        if "range" in phases and "lists" not in phases:
            guard.phase = "range"
            one_range(res, m, opts, work)
        if "restart" in phases:
            guard.phase = "restart"
            restart(res, m, cluster)
        if "online" in phases:
            guard.phase = "online"
            online(res, m, opts)
        if "join" in phases:
            guard.phase = "join"
            join(res, m, server, work, cluster, f"m{opts.members + 1}")
        res["disk_mib"] = du_bytes(m.data_dir) >> 20
        if peers:
            res["peers_hwm_mib"] = [proc_kb(x.pid, "VmHWM") // 1024 for x in peers]
    except Exception as e:  # record how far it got, then go on with the next server
        res["failed"] = str(e)
        log(f"{server.kind}: failed: {e}")
    finally:
        for g in [guard, *peer_guards]:
            g.stopped.set()
        res["rss_cap_fired"] = guard.fired or next((g.fired for g in peer_guards if g.fired), None)
        for x in members:
            x.stop()
    return res


def table(results):
    def get(r, *path):
        for p in path:
            if not isinstance(r, dict) or p not in r:
                return "-"
            r = r[p]
        return r

    rows = [
        ("keys loaded", lambda r: get(r, "keys_loaded")),
        ("load: first chunk puts/s", lambda r: r["load"][0]["ops_per_s"] if r.get("load") else "-"),
        ("load: last chunk puts/s", lambda r: r["load"][-1]["ops_per_s"] if r.get("load") else "-"),
        ("peak RSS after load, MiB", lambda r: get(r, "peak_rss_mib_after_load")),
        ("db size after load, MiB", lambda r: r["load"][-1]["db_mib"] if r.get("load") else "-"),
        ("paginated list ops/s", lambda r: get(r, "lists", "paginated_pods_limit500", "ops_per_s")),
        ("paginated list p99 ms", lambda r: get(r, "lists", "paginated_pods_limit500", "p99_ms")),
        ("paginated list errors", lambda r: get(r, "lists", "paginated_pods_limit500", "errors")),
        ("paginated list peak RSS MiB", lambda r: get(r, "lists", "paginated_pods_limit500", "peak_rss_mib")),
        ("whole lists (continue) pages/s", lambda r: get(r, "lists", "paged_pods_limit500", "ops_per_s")),
        ("whole lists p99 ms", lambda r: get(r, "lists", "paged_pods_limit500", "p99_ms")),
        ("whole lists errors", lambda r: get(r, "lists", "paged_pods_limit500", "errors")),
        ("whole lists peak RSS MiB", lambda r: get(r, "lists", "paged_pods_limit500", "peak_rss_mib")),
        ("RSS cap fired in", lambda r: (r.get("rss_cap_fired") or {}).get("phase", "-")),
        ("1% range: response MiB", lambda r: get(r, "lists", "unpaginated_1pct", "response_mib")),
        ("1% range: RSS growth MiB", lambda r: get(r, "lists", "unpaginated_1pct", "rss_growth_mib")),
        ("count_only all: s", lambda r: get(r, "lists", "count_only_all", "s")),
        ("count_only all: RSS growth MiB", lambda r: get(r, "lists", "count_only_all", "rss_growth_mib")),
        ("keys_only all (limit): s", lambda r: get(r, "lists", "keys_only_all_limit1000", "s")),
        ("restart (SIGTERM) to read, s", lambda r: get(r, "restart", "sigterm", "ready_s")),
        ("RSS after restart, MiB", lambda r: get(r, "restart", "sigterm", "rss_mib")),
        ("restart (kill -9) to read, s", lambda r: get(r, "restart", "kill9", "ready_s")),
        ("put p99 baseline ms", lambda r: get(r, "online", "baseline_p99_ms")),
        ("put p99 during compaction ms", lambda r: get(r, "online", "compact", "p99_ms")),
        ("compaction RPC s", lambda r: get(r, "online", "compact", "rpc_s")),
        ("put p99 during defrag ms", lambda r: get(r, "online", "defrag", "p99_ms")),
        ("put max during defrag ms", lambda r: get(r, "online", "defrag", "max_ms")),
        ("defrag s", lambda r: get(r, "online", "defrag", "rpc_s")),
        ("elections", lambda r: get(r, "online", "elections")),
        ("join: caught up, s", lambda r: get(r, "join", "caught_up_s")),
        ("join: joiner peak RSS MiB", lambda r: get(r, "join", "joiner_hwm_mib")),
        ("join: leader peak RSS MiB", lambda r: get(r, "join", "leader_hwm_mib")),
        ("other members' peak RSS MiB", lambda r: "/".join(map(str, r.get("peers_hwm_mib") or [])) or "-"),
    ]
    print(f"{'':34}" + "".join(f"{r['server']:>14}" for r in results))
    for label, f in rows:
        print(f"{label:34}" + "".join(f"{str(f(r)):>14}" for r in results))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keys", type=int, default=10_000_000)
    p.add_argument("--servers", default="metastore,etcd", help="comma-separated: metastore, etcd")
    p.add_argument("--phases", default=",".join(PHASES))
    p.add_argument("--window", type=int, default=30, help="seconds per measured window")
    p.add_argument("--members", type=int, default=1, choices=[1, 3],
                   help="cluster size; clients and measurements go to m1, the others are its peers")
    p.add_argument("--metastore", required=True, help="the metastore binary")
    p.add_argument("--bench", required=True, help="the metastore-bench binary")
    p.add_argument("--etcd", default="/usr/bin/etcd")
    p.add_argument("--key-index", default="auto", help="MetaStore's --key-index")
    p.add_argument("--log-level", default="warn", help="the servers' --log-level (logs stay in the output dir)")
    p.add_argument("--range-namespaces", type=int, default=100,
                   help="the unpaginated range covers the pods of this many namespaces of 1,000")
    p.add_argument("--rss-cap-gib", type=int, default=16,
                   help="a server whose RSS passes this is killed (recorded), then started again")
    p.add_argument("--keep-data", action="store_true",
                   help="leave the members' data dirs in the output dir (to rerun a phase on a loaded copy)")
    p.add_argument("--out", default=None, help="directory for results and logs (default: a new temp dir)")
    opts = p.parse_args()
    opts.phases = [x for x in opts.phases.split(",") if x]
    for ph in opts.phases:
        if ph not in PHASES:
            p.error(f"unknown phase {ph}")
    out = opts.out or tempfile.mkdtemp(prefix="scale.")
    os.makedirs(out, exist_ok=True)
    results = []
    for kind in [s for s in opts.servers.split(",") if s]:
        work = os.path.join(out, kind)
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
        if kind == "metastore":
            server = Server(kind, opts.metastore, 64 * GIB, ["--storage", "rocksdb", "--key-index", opts.key_index],
                            opts.log_level)
        elif kind == "etcd":
            server = Server(kind, opts.etcd, 8 * GIB, ["--logger", "zap", "--log-outputs", "stderr"], opts.log_level)
        else:
            p.error(f"unknown server {kind}")
        log(f"== {kind}: {opts.keys} keys, {opts.members} member(s), phases {','.join(opts.phases)}")
        results.append(run_server(server, opts, work))
        with open(os.path.join(out, "results.json"), "w") as f:
            json.dump(results, f, indent=1)
        for d in [] if opts.keep_data else os.listdir(work):
            path = os.path.join(work, d)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
    table(results)
    log(f"results: {os.path.join(out, 'results.json')}")


if __name__ == "__main__":
    main()
