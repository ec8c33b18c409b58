"""3. issue: tokens issued per second, client_credentials and password grants."""

from __future__ import annotations

import urllib.parse

from benchmarks.loadgen import LoadSpec
from benchmarks.results import ScenarioResult, ratio
from benchmarks.runner import CLIENT_ID, PROVISION, SECRET, TOKEN_PATH, Bench

NAME = "issue"
DESCRIPTION = "token issuance per second: client_credentials and password grants"

GRANTS = {
    "client_credentials": {"grant_type": "client_credentials", "scope": "read"},
    "password": {
        "grant_type": "password",
        "scope": "read",
        "provision_key": PROVISION,
        "authenticated_userid": "bench-user",
    },
}


def run(bench: Bench, result: ScenarioResult) -> None:
    p = bench.profile
    with bench.gateway(workers=1) as gw:
        for _ in range(p.rounds):
            for grant, form in GRANTS.items():
                body = urllib.parse.urlencode(
                    {**form, "client_id": CLIENT_ID, "client_secret": SECRET}
                )
                spec = LoadSpec(
                    url=gw.url(TOKEN_PATH),
                    duration=p.duration,
                    connections=p.connections,
                    warmup=p.warmup,
                    method="POST",
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                    body=body,
                )
                result.measurements.append(bench.measure(gw, grant, spec))
    cc = result.median_rps("edgeauth", "client_credentials")
    pw = result.median_rps("edgeauth", "password")
    result.summary |= {
        "client_credentials_per_s": cc,
        "password_per_s": pw,
        "password/client_credentials": ratio(pw, cc),
    }
    result.check(
        "issue ≥ 3,000 tokens/s (client_credentials)",
        cc,
        "≥ 3000",
        None if cc is None else cc >= 3000,
    )
