#!/usr/bin/env python3
"""Writes N decision-log lines in writ's format (the fields `writ run` writes, with the
basis fields replay reads) for config/examples/job-runner-sidecar.yaml: a day of traffic
mixing allowed reads and runs, delegated agents, tenant mismatches, missing tokens, refused
tokens and unmatched paths. Deterministic (seeded)."""
import json, random, sys
from datetime import datetime, timezone

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
rnd = random.Random(7)
start = 1_800_000_000  # 2027-01-15T08:00:00Z
iss = "https://login.example.com/"
out = sys.stdout
tenants = ["acme", "globex", "initech", "umbrella"]

def ts(t):
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

for i in range(n):
    t = start + i * 86400 / n
    tenant = rnd.choice(tenants)
    kind = rnd.random()
    line = {"ts": ts(t), "request_id": f"r{i}", "host": None, "execution": False,
            "enforced": True, "subject": None, "actor_chain": [], "client_id": None,
            "issuer": None, "duration_us": rnd.randint(40, 400)}
    def verified(scope, own=True, act=None):
        line.update({"credential": "verified", "subject": f"user{rnd.randint(1, 5000)}",
                     "issuer": iss, "client_id": "web", "scopes": scope.split(),
                     "aud": ["orders-api"], "iat": int(t) - 60, "exp": int(t) + 600,
                     "claims": {"tenant": tenant if own else "other"}})
        if act:
            line["actor_chain"] = [act]
    if kind < 0.55:
        verified("jobs:read")
        line.update({"method": "GET", "path": f"/tenants/{tenant}/jobs/{i % 977}",
                     "action": "read-job", "decision": "allow", "reason": "allowed", "status": 200})
    elif kind < 0.70:
        verified("jobs:execute")
        line.update({"method": "POST", "path": f"/tenants/{tenant}/jobs/{i % 977}/run",
                     "action": "run-job", "execution": True, "decision": "allow",
                     "reason": "allowed", "status": 200})
    elif kind < 0.80:
        verified("jobs:execute", act="agent:ci-7")
        line.update({"method": "POST", "path": f"/tenants/{tenant}/jobs/{i % 977}/run",
                     "action": "run-job", "execution": True, "decision": "allow",
                     "reason": "allowed", "status": 200})
    elif kind < 0.88:
        verified("jobs:read", own=False)
        line.update({"method": "GET", "path": f"/tenants/{tenant}/jobs/{i % 977}",
                     "action": "read-job", "decision": "deny", "reason": "claim_mismatch",
                     "status": 403})
    elif kind < 0.94:
        line.update({"credential": "none", "method": "GET", "path": f"/tenants/{tenant}/jobs/1",
                     "action": "read-job", "decision": "deny", "reason": "no_token", "status": 401})
    elif kind < 0.97:
        line.update({"credential": "rejected", "method": "GET", "path": f"/tenants/{tenant}/jobs/1",
                     "action": "read-job", "decision": "deny", "reason": "bad_signature",
                     "status": 401})
    else:
        line.update({"credential": "none", "method": "GET", "path": f"/wp-admin/{i % 50}.php",
                     "action": None, "decision": "deny", "reason": "no_matching_action",
                     "status": 403})
    out.write(json.dumps(line, separators=(",", ":")) + "\n")
