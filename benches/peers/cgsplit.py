#!/usr/bin/env python3
"""cgsplit.py CALLGRIND_OUT REQUESTS [CALLGRIND_OUT REQUESTS ...]

Instructions per request of writ's hot path, split by part, from callgrind profiles written by
`benches/peers/profile.sh callgrind|abcg`: one column per profile (before, after). Inclusive
counts (a part includes what it calls), so the parts overlap where one calls another (`handle`
includes the engine, the headers and the client); the indented rows are inside the row above.
Kernel time is not in these counts: callgrind counts user-space instructions only (syscalls per
request come from `profile.sh syscalls`).
"""
import re
import subprocess
import sys

PARTS = [
    ("everything (user space)", ["PROGRAM TOTALS"]),
    ("hyper server connection (read, parse, dispatch, write)", ["hyper_util::server::conn::auto::Connection<I,S,E> as core::future::future::Future>::poll", "writ::serve::Conn::serve::{{closure}}"]),
    ("  request head parse (hyper Server::parse)", ["<hyper::proto::h1::role::Server as hyper::proto::h1::Http1Transaction>::parse"]),
    ("  response head encode (hyper Server::encode)", ["<hyper::proto::h1::role::Server as hyper::proto::h1::Http1Transaction>::encode"]),
    ("  writ::proxy::handle (one request, start to response head)", ["writ::proxy::handle::{{closure}}"]),
    ("    engine: decide (normalize, classify, authenticate, authorize)", ["writ_engine::decide::decide"]),
    ("    headers: forward::prepare", ["writ::proxy::forward::prepare"]),
    ("    request id", ["writ::proxy::request_id"]),
    ("    upstream send: pool checkout + dispatch to the connection task, until the head", ["hyper_util::client::legacy::client::Client<C,B>::send_request::{{closure}}", "<tokio::time::timeout::Timeout<T> as core::future::future::Future>::poll"]),
    ("      pool checkout (hyper-util's pool; writ's pool is inlined in the send)", ["<hyper_util::client::legacy::pool::Checkout<T,K> as core::future::future::Future>::poll"]),
    ("    record: metrics (+ decision-log line built)", ["writ::proxy::Ctx::record"]),
    ("pool: connection returned (Pooled drop / PooledBody::release)", ["core::ptr::drop_in_place<hyper_util::client::legacy::pool::Pooled<", "writ::proxy::pool::PooledBody::release"]),
    ("hyper client connection task (write request, parse response)", ["<hyper::client::conn::http1::upgrades::UpgradeableConnection<I,B> as core::future::future::Future>::poll", "writ::proxy::pool::Pool::connect::{{closure}}::{{closure}}"]),
    ("  response head parse (hyper Client::parse)", ["<hyper::proto::h1::role::Client as hyper::proto::h1::Http1Transaction>::parse"]),
    ("decision-log writer thread", ["writ::telemetry::decision_log::write_loop"]),
    ("allocation (malloc)", ["__rustc::__rust_alloc"]),
    ("allocation (free)", ["mi_free"]),
    ("memcpy (moves of futures, buffers)", ["__memcpy_avx_unaligned_erms"]),
]


def inclusive(path):
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", "--auto=no", path],
                         capture_output=True, text=True, check=True).stdout
    best = {}
    for line in out.split("\n"):
        m = re.match(r"^ *([0-9,]+) \(.*?\)  (.*)$", line)
        if not m:
            continue
        n = int(m.group(1).replace(",", ""))
        name = re.sub(r" \[.*\]$", "", m.group(2))
        best[name] = max(best.get(name, 0), n)
    return best


def part(best, needles):
    return max((n for name, n in best.items() if any(x in name for x in needles)), default=0)


args = sys.argv[1:]
if len(args) < 2 or len(args) % 2:
    sys.exit(__doc__)
cols = [(inclusive(args[i]), int(args[i + 1])) for i in range(0, len(args), 2)]
print("| part | " + " | ".join(f"instructions/req ({i + 1})" for i in range(len(cols))) + " |")
print("|---|" + "--:|" * len(cols))
for label, needles in PARTS:
    vals = [part(b, needles) / n for b, n in cols]
    print(f"| {label.replace('  ', '&nbsp;&nbsp;')} | " + " | ".join(f"{v:,.0f}" for v in vals) + " |")
