#!/usr/bin/env python3
"""Builds the markdown results table of bench/load/run from its work dir.

Reads WORK/meta.env (KEY=VALUE lines), WORK/results.tsv (one line per
measurement: round, scenario, target, tool, raw output file, h2load log file
or -, accepted-connection delta or -), WORK/rss.tsv and WORK/fail2ban.tsv,
parses the raw wrk/h2load outputs and prints the table on stdout.

Usage: report.py WORK
"""

import re
import statistics
import sys
from pathlib import Path

TARGETS = ["direct", "nginx", "haproxy", "erpguard"]
SCENARIOS = [
    ("h1", "HTTP/1.1 keep-alive GET /api/method/ping (wrk)"),
    ("h2", "HTTP/2 GET /api/method/ping (h2load)"),
    ("hs", "New TLS connection per request (wrk, Connection: close, full handshakes)"),
    ("post", "POST /api/method/frappe.client.get_list, form body (wrk)"),
]
UNIT = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}
BIN = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def read_meta(work):
    meta = {}
    for line in (work / "meta.env").read_text().splitlines():
        if "=" in line:
            k, _, v = line.partition("=")
            meta[k.strip()] = v.strip()
    return meta


def parse_wrk(text):
    r = {"ok": False}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not m:
        return r
    r["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+), ([\d.]+)(\w+) read", text)
    if m:
        r["requests"] = int(m.group(1))
        r["bytes"] = float(m.group(4)) * BIN.get(m.group(5), 1)
    for pct, key in (("50", "p50"), ("99", "p99")):
        m = re.search(r"^\s+" + pct + r"(?:\.000)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M)
        if m:
            r[key] = float(m.group(1)) * UNIT[m.group(2)]
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    r["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    r["sockerr"] = sum(int(x) for x in m.groups()) if m else 0
    r["sockerr_detail"] = (
        f"c{m.group(1)}/r{m.group(2)}/w{m.group(3)}/t{m.group(4)}" if m else ""
    )
    r["ok"] = True
    return r


def percentile(sorted_vals, p):
    if not sorted_vals:
        return None
    k = (len(sorted_vals) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


def parse_h2load(text, log_path):
    r = {"ok": False}
    m = re.search(r"finished in ([\d.]+)(\w+), ([\d.]+) req/s", text)
    if not m:
        return r
    r["rps"] = float(m.group(3))
    m = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
        r"(\d+) failed, (\d+) errored, (\d+) timeout",
        text,
    )
    if m:
        r["requests"] = int(m.group(4))
        r["sockerr"] = int(m.group(5)) + int(m.group(6)) + int(m.group(7))
        r["sockerr_detail"] = f"f{m.group(5)}/e{m.group(6)}/t{m.group(7)}"
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    r["non2xx"] = sum(int(x) for x in m.groups()[1:]) if m else 0
    m = re.search(r"traffic: .*?, [\d.]+\w* \((\d+)\) data", text)
    if m:
        r["bytes"] = float(m.group(1))
    vals = []
    if log_path and log_path != "-" and Path(log_path).exists():
        with open(log_path) as f:
            for line in f:
                parts = line.split("\t")
                if len(parts) >= 3 and parts[1] == "200":
                    vals.append(int(parts[2]) / 1000.0)
    if vals:
        vals.sort()
        r["p50"] = percentile(vals, 50)
        r["p99"] = percentile(vals, 99)
    else:
        m = re.search(r"time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", text)
        if m:
            r["p50"] = float(m.group(1)) * UNIT[m.group(2)]  # mean, no log
    r["ok"] = True
    return r


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt_rps(v):
    return "n/a" if v is None else f"{v:,.0f}"


def fmt_ms(v):
    if v is None:
        return "n/a"
    return f"{v:.2f} ms" if v < 100 else f"{v:.0f} ms"


def fmt_ratio(a, b):
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}x"


def fmt_mib(kib):
    return "n/a" if kib is None else f"{kib / 1024:.1f} MiB"


def main():
    work = Path(sys.argv[1])
    meta = read_meta(work)
    runs = {}
    for line in (work / "results.tsv").read_text().splitlines():
        rnd, scen, target, tool, raw, h2log, conns = line.split("\t")
        text = Path(raw).read_text(errors="replace") if Path(raw).exists() else ""
        r = parse_wrk(text) if tool == "wrk" else parse_h2load(text, h2log)
        r["conns"] = None if conns in ("-", "") else float(conns)
        r["round"] = rnd
        runs.setdefault((scen, target), []).append(r)

    out = []
    p = out.append
    p("# erpguard load benchmark (GitHub issue 6)")
    p("")
    p(f"- Date: {meta.get('DATE', '?')}")
    p(f"- Machine: {meta.get('NPROC', '?')} CPUs ({meta.get('CPU', '?')}), "
      f"{meta.get('MEM', '?')} RAM, kernel {meta.get('KERNEL', '?')}")
    p(f"- erpguard: {meta.get('ERPGUARD_VERSION', '?')}, commit {meta.get('COMMIT', '?')}")
    p(f"- nginx {meta.get('NGINX_V', '?')}, HAProxy {meta.get('HAPROXY_V', '?')}, "
      f"wrk {meta.get('WRK_V', '?')}, h2load {meta.get('H2LOAD_V', '?')}, "
      f"OpenSSL {meta.get('OPENSSL_V', '?')}, fail2ban {meta.get('F2B_V', '?')}")
    p(f"- Rounds: {meta.get('ROUNDS')} interleaved (target order rotated each round); "
      f"{meta.get('DURATION')}s per measurement; figures are medians over the rounds, "
      f"error counts are totals over the rounds.")
    p(f"- Load: wrk -t{meta.get('WRK_THREADS')} -c{meta.get('CONNECTIONS')} --latency; "
      f"h2load -t{meta.get('WRK_THREADS')} -c{meta.get('H2_CLIENTS')} -m{meta.get('H2_STREAMS')} "
      f"-D {meta.get('DURATION')} --warm-up-time=1 (p50/p99 computed from --log-file). "
      f"Everything on 127.0.0.1: the load generator, the proxies and the upstream share "
      f"the {meta.get('NPROC', '?')} CPUs.")
    p(f"- Certificate: one self-signed {meta.get('KEY_DESC', '?')} for `localhost`, "
      f"used by every TLS listener; clients send SNI `localhost`.")
    p(f"- Upstream: one nginx ({meta.get('NPROC')} workers) answering every path and "
      f"method with the same {meta.get('BODY_LEN')}-byte JSON body (200).")
    p(f"- Targets: **direct** = that upstream nginx itself over TLS (its own TLS+h2 "
      f"listener, no proxy hop); **nginx** = nginx TLS reverse proxy "
      f"(worker_processes {meta.get('NPROC')}, http2, upstream keepalive 64); "
      f"**haproxy** = HAProxy TLS reverse proxy (nbthread {meta.get('NPROC')}, "
      f"alpn h2,http/1.1, http-reuse always); **erpguard** = erpguard, app "
      f"`erpnext` profile with login guard on (per_ip 1000000/min), allow list, "
      f"audit log, SQLite state ([listen] workers default: {meta.get('NPROC')} HTTPS "
      f"workers, one thread and one SO_REUSEPORT socket each). "
      f"nginx and HAProxy do no security checks.")
    p(f"- Idle timeouts raised to {meta.get('IDLE_TIMEOUT')} everywhere: erpguard "
      f"`[limits] header_read_timeout` (hyper applies it while a keep-alive connection "
      f"waits for its next request, so it is erpguard's idle timeout) and "
      f"`max_connections = {meta.get('MAXCONN')}`; nginx keepalive_timeout and "
      f"client_header_timeout; HAProxy timeout client/http-request/http-keep-alive.")
    if meta.get("LOADAVG"):
        p(f"- Load average just before the measurements (the bench's own processes idle): "
          f"{meta['LOADAVG']}; other work on the machine skews the figures when this is "
          f"well above 0.")
    if meta.get("NOISE"):
        p(f"- **Note:** {meta['NOISE']}")
    p("")
    p("## Throughput and latency")
    p("")
    p("| Scenario | Target | req/s | p50 | p99 | non-2xx | socket errors | "
      "bytes/resp | req/s per round |")
    p("|---|---|---:|---:|---:|---:|---:|---:|---|")
    medians = {}
    warnings = []
    for scen, title in SCENARIOS:
        for target in TARGETS:
            rs = [r for r in runs.get((scen, target), []) if r.get("ok")]
            nruns = len(runs.get((scen, target), []))
            if nruns == 0:
                continue
            m = {
                "rps": med([r.get("rps") for r in rs]),
                "p50": med([r.get("p50") for r in rs]),
                "p99": med([r.get("p99") for r in rs]),
            }
            medians[(scen, target)] = m
            non2xx = sum(r.get("non2xx", 0) for r in rs)
            sockerr = sum(r.get("sockerr", 0) for r in rs)
            details = " ".join(r.get("sockerr_detail", "") for r in rs if r.get("sockerr"))
            bpr = med([r["bytes"] / r["requests"] for r in rs
                       if r.get("bytes") and r.get("requests")])
            per_round = ", ".join(fmt_rps(r.get("rps")) for r in rs)
            if len(rs) < nruns:
                per_round += f" ({nruns - len(rs)} run(s) produced no result)"
            se = f"{sockerr}" + (f" ({details})" if details else "")
            short = bpr is not None and bpr < int(meta.get("BODY_LEN", "1024"))
            if non2xx or sockerr or short:
                warnings.append(f"{scen}/{target}: {non2xx} non-2xx, {sockerr} socket errors"
                                + (", responses shorter than the body" if short else ""))
            p(f"| {title if target == TARGETS[0] else ''} | {target} | {fmt_rps(m['rps'])} | "
              f"{fmt_ms(m['p50'])} | {fmt_ms(m['p99'])} | {non2xx} | {se} | "
              f"{'n/a' if bpr is None else f'{bpr:,.0f}'} | {per_round} |")
    p("")
    if warnings:
        p("**WARNING: some runs had errors; their req/s and latencies are not comparable:** "
          + "; ".join(warnings) + ".")
        p("")
    p("bytes/resp: bytes read per response including headers (wrk) or body bytes per "
      "response (h2load); a value below the body size would mean the front end did not "
      "return the real body. socket errors: wrk connect/read/write/timeout; h2load "
      "failed/errored/timeout.")
    p("")
    p("## erpguard relative to the others (median over rounds)")
    p("")
    p("| Scenario | Metric | erpguard/nginx | erpguard/haproxy | erpguard/direct |")
    p("|---|---|---:|---:|---:|")
    for scen, title in SCENARIOS:
        eg = medians.get((scen, "erpguard"))
        if not eg:
            continue
        for key, label in (("rps", "req/s (higher is better)"),
                           ("p50", "p50 latency (lower is better)"),
                           ("p99", "p99 latency (lower is better)")):
            cells = []
            for other in ("nginx", "haproxy", "direct"):
                o = medians.get((scen, other))
                cells.append(fmt_ratio(eg.get(key), o.get(key) if o else None))
            p(f"| {title if key == 'rps' else ''} | {label} | " + " | ".join(cells) + " |")
    p("")
    p("## New TLS handshakes per second")
    p("")
    p("wrk with `Connection: close`: every request opens a new TCP connection and makes "
      "a full TLS handshake. wrk on its own resumes the TLS session on every reconnect "
      "(it keeps the session across SSL_clear), which would measure resumptions; the "
      "bench runs it with an LD_PRELOAD shim (bench/load/noresume.c) that drops the "
      "session, so every connection is a full handshake (ECDHE + certificate signature). "
      f"Self-test against a listener that offers resumption and logs it: plain wrk "
      f"resumed {meta.get('RESUME_PLAIN', '?')} connections, wrk with the shim "
      f"{meta.get('RESUME_SHIM', '?')}. The last column checks one connection per "
      "request: connections the front end counted (nginx stub_status accepts, HAProxy "
      "frontend conn_tot, erpguard tls_handshakes_total{result=\"ok\"}) divided by the "
      "requests wrk completed; it should be about 1.")
    p("")
    p("| Target | handshakes/s | p50 | p99 | non-2xx | socket errors | connections per request |")
    p("|---|---:|---:|---:|---:|---:|---:|")
    for target in TARGETS:
        rs = [r for r in runs.get(("hs", target), []) if r.get("ok")]
        if not rs:
            continue
        m = medians[("hs", target)]
        cpr = med([r["conns"] / r["requests"] for r in rs
                   if r.get("conns") is not None and r.get("requests")])
        p(f"| {target} | {fmt_rps(m['rps'])} | {fmt_ms(m['p50'])} | {fmt_ms(m['p99'])} | "
          f"{sum(r.get('non2xx', 0) for r in rs)} | {sum(r.get('sockerr', 0) for r in rs)} | "
          f"{'n/a' if cpr is None else f'{cpr:.2f}'} |")
    p("")

    rss_file = work / "rss.tsv"
    f2b_file = work / "fail2ban.tsv"
    rows = []
    if rss_file.exists():
        rows = [l.split("\t") for l in rss_file.read_text().splitlines() if l.strip()]
    if not rows and f2b_file.exists():
        f2b = f2b_file.read_text().split("\t")
        p("## Memory")
        p("")
        p(f"Idle test skipped (IDLE_CONNS=0). fail2ban-server idle RSS: "
          f"{fmt_mib(float(f2b[0])) if f2b[0].strip() not in ('', '-') else 'n/a'}.")
        p("")
    if rows:
        n = meta.get("IDLE_CONNS", "?")
        p(f"## Memory: RSS with {n} idle keep-alive TLS connections")
        p("")
        p(f"Each connection: TLS handshake (ALPN http/1.1), one GET with the {meta.get('BODY_LEN')}"
          f"-byte answer read, then idle for {meta.get('IDLE_HOLD')}s. RSS = sum of VmRSS "
          f"(/proc/PID/status) over every process of the front end (nginx: master + "
          f"workers; HAProxy: its one process; erpguard: its one process). 'idle' = "
          f"after start-up and the curl checks, before any load; 'after load' = "
          f"just before the idle test, after all the throughput rounds; 'held' = with "
          f"the connections open. PSS (/proc/PID/smaps_rollup) splits pages shared "
          f"between processes (nginx's master and workers) instead of counting them "
          f"once per process. 'still open' = connections the front end had not "
          f"closed at the end of the hold.")
        p("")
        p("| Front end | processes | RSS idle | RSS after load | RSS held | "
          "RSS per held conn | PSS idle | PSS held | opened/failed | still open |")
        p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        rss = {}

        def num(x):
            return float(x) if x.strip() not in ("", "-", "?") else None

        for row in rows:
            row = row + [""] * (11 - len(row))
            (target, procs, base, after, held, opened, failed, still) = row[:8]
            base_k, after_k, held_k = num(base), num(after), num(held)
            pss_idle, pss_held = num(row[8]), num(row[10])
            rss[target] = (base_k, after_k, held_k)
            per = None
            if held_k is not None and after_k is not None and opened not in ("", "0", "-"):
                per = (held_k - after_k) / int(opened)
            p(f"| {target} | {procs} | {fmt_mib(base_k)} | {fmt_mib(after_k)} | "
              f"{fmt_mib(held_k)} | {'n/a' if per is None else f'{per:.1f} KiB'} | "
              f"{fmt_mib(pss_idle)} | {fmt_mib(pss_held)} | {opened}/{failed} | {still} |")
        if f2b_file.exists():
            f2b = f2b_file.read_text().split("\t")
            f2b_k = float(f2b[0]) if f2b[0].strip() not in ("", "-") else None
            f2b_pss = num(f2b[2]) if len(f2b) > 2 else None
            p(f"| fail2ban-server (idle, {f2b[1].strip() if len(f2b) > 1 else '?'}) | 1 | "
              f"{fmt_mib(f2b_k)} | | | | {fmt_mib(f2b_pss)} | | | |")
            ng = rss.get("nginx")
            if ng and f2b_k is not None:
                cells = [fmt_mib(x + f2b_k) if x is not None else "n/a" for x in ng]
                p(f"| nginx + fail2ban | | {cells[0]} | {cells[1]} | {cells[2]} | | | | | |")
        p("")
        eg = rss.get("erpguard")
        if eg:
            p("| RSS ratio | idle | held |")
            p("|---|---:|---:|")
            for other in ("nginx", "haproxy", "direct"):
                o = rss.get(other)
                if o:
                    p(f"| erpguard/{other} | {fmt_ratio(eg[0], o[0])} | {fmt_ratio(eg[2], o[2])} |")
            ng = rss.get("nginx")
            if ng and f2b_file.exists() and f2b_k is not None:
                p(f"| erpguard/(nginx + fail2ban) | {fmt_ratio(eg[0], ng[0] + f2b_k)} | "
                  f"{fmt_ratio(eg[2], ng[2] + f2b_k) if ng[2] is not None else 'n/a'} |")
            p("")
        closed = [r[0] for r in rows if len(r) > 7 and r[7].isdigit() and r[5].isdigit()
                  and int(r[7]) < int(r[5])]
        if closed:
            p(f"**WARNING: {', '.join(closed)} closed idle connections during the hold; "
              f"their 'held' RSS is not for {n} connections.**")
            p("")
    p(f"Raw logs: {meta.get('RAW_NOTE', 'deleted (run with KEEP=1 to keep them)')}")
    print("\n".join(out))


if __name__ == "__main__":
    main()
