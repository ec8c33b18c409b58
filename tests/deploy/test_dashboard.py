"""deploy/grafana-dashboard.json queries only metrics that a real gateway exposes (issue 15).

A gateway with 2 workers gets the traffic that makes every labelled family appear (a token
issued, a refused token request, a proxied request, a reload); then every metric name in the
dashboard's PromQL must be a sample name of its /metrics.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import ssl
import time
from pathlib import Path
from typing import Any

import aiohttp

from edgeauth import tls
from tests.conftest import ROOT, Backend, ServeProcess, write_config
from tests.oauth.conftest import PROVISION_KEY, SECRET, consumers, events_service

DASHBOARD = ROOT / "deploy" / "grafana-dashboard.json"
METRIC = re.compile(r"\bedgeauth_[a-z0-9_]+")


def queries(node: Any) -> list[str]:
    """Every PromQL text of the dashboard: panel targets' `expr` and template queries."""
    if isinstance(node, list):
        return [text for item in node for text in queries(item)]
    if not isinstance(node, dict):
        return []
    found = [node["expr"]] if isinstance(node.get("expr"), str) else []
    if isinstance(node.get("query"), str | dict) and "definition" in node:
        query = node["query"]
        found.append(query["query"] if isinstance(query, dict) else query)
    return found + [text for value in node.values() for text in queries(value)]


def sample_names(text: str) -> set[str]:
    return {
        re.split(r"[{ ]", line, maxsplit=1)[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def test_the_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert [t["expr"] for t in panel["targets"] if t.get("expr")], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
    assert "label_values(edgeauth_build_info, instance)" in queries(dashboard)


async def _traffic(url: str, client_ssl: ssl.SSLContext) -> None:
    """A token issued, a refused token request, a proxied request with the token."""
    token_url = f"{url}/events/oauth2/token"
    body = {
        "client_id": "clientid",
        "grant_type": "password",
        "provision_key": PROVISION_KEY,
        "authenticated_userid": "1",
    }
    connector = aiohttp.TCPConnector(ssl=client_ssl)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post(token_url, json={**body, "client_secret": "wrong"}) as resp:
            assert resp.status == 400, await resp.text()  # Kong: invalid_client in a body
        async with session.post(token_url, json={**body, "client_secret": SECRET}) as resp:
            assert resp.status == 200, await resp.text()
            token = (await resp.json())["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        async with session.get(f"{url}/events/echo", headers=headers) as resp:
            assert resp.status == 200, await resp.text()


RELOADED = 'edgeauth_config_reloads_total{result="success"} 1'


async def _metrics_with(url: str, names: set[str]) -> str:
    """The status listener's /metrics once it holds every name (the workers flush their
    tallies periodically) and counts the reload, or the last one seen after the deadline."""
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(f"{url}/metrics") as resp:
                assert resp.status == 200
                text = await resp.text()
            done = names <= sample_names(text) and RELOADED in text
            if done or time.monotonic() > deadline:
                return text
            await asyncio.sleep(0.05)


async def test_every_metric_the_dashboard_queries_is_exposed(
    tmp_path: Path, dev_cert: tls.DevCertificate, backend: Backend, client_ssl: ssl.SSLContext
) -> None:
    wanted = {
        name for text in queries(json.loads(DASHBOARD.read_text())) for name in METRIC.findall(text)
    }
    config = write_config(
        tmp_path,
        dev_cert,
        [events_service(backend)],
        consumers=consumers(tmp_path),
        tables={"status": {"listen": "127.0.0.1:0", "metrics": True}},
        workers=2,
    )
    proc = ServeProcess(config)
    try:
        status = next(e for e in proc.log if e.get("msg") == "ready")["status"][0]
        await _traffic(proc.url, client_ssl)
        proc.proc.send_signal(signal.SIGHUP)  # a reload, counted
        text = await _metrics_with(status, wanted)
    finally:
        proc.stop()
    assert wanted - sample_names(text) == set()
    assert len(wanted) >= 15  # the dashboard covers the families the issue lists
    oauth = [line for line in text.splitlines() if line.startswith("edgeauth_oauth_")]
    refused = (
        'edgeauth_oauth_errors_total{endpoint="token",error="invalid_client",service="events"}'
    )
    assert any(line.startswith(refused) for line in oauth), oauth
    assert RELOADED in text
