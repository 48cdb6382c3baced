#!/usr/bin/env python3
"""Open N keep-alive connections to one front end, do one HTTP/1.1 GET on
each (so the TLS handshake and a full request/response are done), then hold
them idle.

Protocol on stdin/stdout (driven by bench/load/run):
  after opening, prints   READY opened=N failed=F seconds=S
  on the line "status":   STATUS open=N closed=C   (closed = EOF from server)
  on the line "quit" or EOF on stdin: closes everything and exits.

Usage: idle_conns.py --port P [--host 127.0.0.1] [--sni localhost]
                     [--count 10000] [--parallel 64] [--plain]
"""

import argparse
import asyncio
import ssl
import sys
import time

REQUEST = (
    b"GET /api/method/ping HTTP/1.1\r\n"
    b"Host: localhost\r\n"
    b"User-Agent: erpguard-bench-idle\r\n"
    b"Accept: */*\r\n\r\n"
)


async def open_one(args, ctx, expect_len):
    """Connects, does one request, returns (reader, writer) or raises."""
    kw = {}
    if ctx is not None:
        kw = {"ssl": ctx, "server_hostname": args.sni, "ssl_handshake_timeout": 60}
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(args.host, args.port, limit=65536, **kw), 90
    )
    writer.write(REQUEST)
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)
    if len(status) < 2 or status[1] != "200":
        writer.close()
        raise RuntimeError(f"status line {lines[0]!r}")
    length = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if chunked:
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    elif length is not None:
        body = await asyncio.wait_for(reader.readexactly(length), 60)
    else:
        writer.close()
        raise RuntimeError("response without length (connection not kept alive)")
    if len(body) != expect_len:
        writer.close()
        raise RuntimeError(f"body of {len(body)} bytes, expected {expect_len}")
    return reader, writer


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--sni", default="localhost")
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--parallel", type=int, default=64)
    ap.add_argument("--body-len", type=int, default=1024)
    ap.add_argument("--plain", action="store_true")
    args = ap.parse_args()

    ctx = None
    if not args.plain:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["http/1.1"])

    conns = []
    errors = {}
    sem = asyncio.Semaphore(args.parallel)

    async def worker():
        async with sem:
            try:
                conns.append(await open_one(args, ctx, args.body_len))
            except Exception as e:  # noqa: BLE001 - counted and reported
                key = f"{type(e).__name__}: {e}"[:160]
                errors[key] = errors.get(key, 0) + 1

    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(args.count)))
    took = time.monotonic() - t0
    failed = args.count - len(conns)
    print(f"READY opened={len(conns)} failed={failed} seconds={took:.1f}", flush=True)
    for msg, n in sorted(errors.items(), key=lambda kv: -kv[1])[:5]:
        print(f"ERROR {n}x {msg}", file=sys.stderr, flush=True)

    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        cmd = line.strip()
        if cmd == "status":
            closed = sum(1 for r, _ in conns if r.at_eof())
            print(f"STATUS open={len(conns) - closed} closed={closed}", flush=True)
        elif cmd == "quit" or line == "":
            break
    for _, w in conns:
        w.transport.abort()


if __name__ == "__main__":
    asyncio.run(main())
