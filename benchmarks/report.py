"""Output: the table on stdout, and `benchmarks/results/<timestamp>/` with results.json (raw),
report.md (machine, versions, config, commands, results, ratios) and PNG plots made with
matplotlib (the `bench` extra; without it the report says the plots were skipped)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks import loadgen
from benchmarks.baselines import nginx as nginx_baseline
from benchmarks.results import GENERATOR_LIMIT, OTHERS_LIMIT
from benchmarks.targets import GOALS, Goal

ROOT = Path(__file__).resolve().parent.parent


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in _read("/proc/cpuinfo").splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    mem_kib = next(
        (
            int(line.split()[1])
            for line in _read("/proc/meminfo").splitlines()
            if "MemTotal" in line
        ),
        0,
    )
    os_name = next(
        (
            line.split("=", 1)[1].strip('"')
            for line in _read("/etc/os-release").splitlines()
            if line.startswith("PRETTY_NAME=")
        ),
        platform.system(),
    )
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "os": os_name,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "edgeauth": _version("edgeauth"),
        "git_commit": f"{commit}{' (with uncommitted changes)' if dirty else ''}",
        "aiohttp": _version("aiohttp"),
        "uvloop": _version("uvloop"),
        "wrk": loadgen.wrk_version() or "not installed",
        "nginx": nginx_baseline.version() or "not installed",
        "matplotlib": _version("matplotlib"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


# -- the table --------------------------------------------------------------------------------


def _num(value: Any, digits: int = 0) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, (int, float)):
        return f"{value:,.{digits}f}"
    return str(value)


COLUMNS = (
    "scenario",
    "target",
    "measured",
    "req/s",
    "MB/s",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "p99.9 ms",
    "errors",
    "CPU %",
    "gen CPU %",
    "peak RSS MiB",
)


def rows(record: dict[str, Any], *, cores: bool = False) -> list[list[str]]:
    """Table rows; `cores` adds each core's busy % during the run (generator saturated?)."""
    found: list[list[str]] = []
    for scenario in record["scenarios"]:
        if scenario["status"] != "ok":
            found.append(
                [scenario["name"], "-", f"{scenario['status'].upper()}: {scenario['reason']}"[:90]]
                + ["" for _ in COLUMNS[3:]]
                + ([""] if cores else [])
            )
            continue
        for m in scenario["measurements"]:
            lat = m["latency"] or {}
            found.append(
                [
                    scenario["name"],
                    m["target"],
                    m["label"],
                    _num(m["rps"]) if m["mb_per_s"] is None and m["rps"] else "-",
                    _num(m["mb_per_s"]),
                    _num(lat.get("p50"), 2),
                    _num(lat.get("p90"), 2),
                    _num(lat.get("p99"), 2),
                    _num(lat.get("p999"), 2),
                    _num(m["errors"]),
                    _num(m["cpu_percent"]),
                    _generator(m),
                    _num(m["rss_peak_mib"], 1),
                ]
                + ([_cores(m["core_busy"])] if cores else [])
            )
    return found


def _generator(m: dict[str, Any]) -> str:
    """The generator cores' busy %, with "!" when past the limit (the generator set the pace)."""
    busy = m.get("generator_busy_percent")
    return "-" if busy is None else f"{busy:.0f}{'!' if m.get('generator_saturated') else ''}"


def _cores(busy: dict[str, float]) -> str:
    return " ".join(f"{cpu}:{value:.0f}" for cpu, value in sorted(busy.items())) or "-"


def table(record: dict[str, Any]) -> str:
    body = rows(record)
    widths = [
        max(len(c), *(len(r[i]) for r in body)) if body else len(c) for i, c in enumerate(COLUMNS)
    ]
    numeric = set(range(3, len(COLUMNS)))

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ).rstrip()

    out = [line(list(COLUMNS)), line(["-" * w for w in widths])]
    out += [line(r) for r in body]
    out.append("")
    out.append("Ratios and targets:")
    out += [f"  {text}" for text in check_lines(record)]
    return "\n".join(out) + "\n"


def _mark(ok: bool | None) -> str:
    return {True: "PASS", False: "MISS", None: "n/a "}[ok]


def _judged(check: dict[str, Any], goal: Goal | None) -> str:
    value = check["value"]
    if goal is None:
        shown = "-" if value is None else f"{value:g}"
        text = f"{check['name']}: {shown} (goal {check['goal']})"
    else:
        shown = "not measured" if value is None else goal.show(value)
        text = f"{check['name']}: {shown}" + (f" ({check['miss']})" if check.get("miss") else "")
        text += f" (goal {goal.goal})" if check["ok"] is None else ""
    note = f"  [{check['note']}]" if check["note"] else ""
    return f"  {_mark(check['ok'])} {text}{note}"


def _why_not(goal: Goal, scenarios: dict[str, dict[str, Any]]) -> str:
    scenario = scenarios.get(goal.scenario)
    if scenario is None:
        return f"scenario {goal.scenario} not run"
    if scenario["status"] != "ok":
        return f"{goal.scenario} {scenario['status']}: {scenario['reason'][:160]}"
    return "not measured in this run"


def headline(record: dict[str, Any]) -> str:
    """edgeauth/floor with both figures, or why it is missing."""
    proxy = next((s for s in record["scenarios"] if s["name"] == "proxy"), None)
    if proxy is None or proxy["status"] != "ok":
        return "edgeauth/floor: n/a (proxy scenario not run)"
    rps = proxy["summary"]["req_per_s"]
    return (
        f"edgeauth/floor = {proxy['summary']['edgeauth/floor']} (edgeauth "
        f"{_num(rps.get('edgeauth'))} req/s, one worker, access log on; floor proxy "
        f"{_num(rps.get('floor'))} req/s)"
    )


def saturated_runs(record: dict[str, Any]) -> list[str]:
    return [
        f"{s['name']}: {m['target']} {m['label']} ({m['generator_busy_percent']:g} %)"
        for s in record["scenarios"]
        for m in s["measurements"]
        if m.get("generator_saturated")
    ]


# summary keys listed under "Ratios": edgeauth's, the compiled build's, the workers' scaling
RATIOS = ("edgeauth/", "edgeauth-mypyc/", "scaling_factor")


def check_lines(record: dict[str, Any]) -> list[str]:
    """The headline ratio, every target of the issue in order (PASS, MISS with its size, or
    n/a and why), the other ratios and checks, and the runs the generator saturated."""
    scenarios = {s["name"]: s for s in record["scenarios"]}
    checks = [c for s in record["scenarios"] for c in s["checks"]]
    lines = [f"Headline: {headline(record)}"]
    for issue in sorted({goal.issue for goal in GOALS.values()}):
        lines += ["", f"Targets (issue {issue}):"]
        for goal in (g for g in GOALS.values() if g.issue == issue):
            found = [c for c in checks if c.get("key") == goal.key]
            lines += [_judged(c, goal) for c in found]
            if not found:
                lines.append(f"  n/a  {goal.text} ({goal.goal}): {_why_not(goal, scenarios)}")
    lines += ["", "Ratios:"]
    for scenario in record["scenarios"]:
        for key, value in scenario["summary"].items():
            if key.startswith(RATIOS) and value is not None:
                lines.append(f"  {scenario['name']}: {key} = {value}")
    compiled = scenarios.get("proxy", {}).get("summary", {}).get("mypyc")
    if compiled:
        lines += ["", f"Compiled build (mypyc): {compiled}"]
    others = [c for c in checks if not c.get("key")]
    if others:
        lines += ["", "Other checks:", *(_judged(c, None) for c in others)]
    failed = [s for s in record["scenarios"] if s["status"] != "ok"]
    if failed:
        lines += ["", "Scenarios not complete:"]
        lines += [f"  {s['name']}: {s['status']}: {s['reason'][:200]}" for s in failed]
    hot = saturated_runs(record)
    if hot:
        lines += [
            "",
            f"Generator cores past {GENERATOR_LIMIT:g} % (the figure is the generator's):",
        ]
        lines += [f"  {text}" for text in hot]
    shared = shared_runs(record)
    if shared:
        lines += ["", f"Runs whose server core other processes used past {OTHERS_LIMIT:g} %:"]
        lines += [f"  {text}" for text in shared]
    return lines


def shared_runs(record: dict[str, Any]) -> list[str]:
    """Runs during which other processes on the machine took the server core from it."""
    return [
        f"{s['name']}: {m['target']} {m['label']} ({m['others_on_server_percent']:g} % of a core)"
        for s in record["scenarios"]
        for m in s["measurements"]
        if (m.get("others_on_server_percent") or 0.0) > OTHERS_LIMIT
    ]


# -- Markdown ---------------------------------------------------------------------------------


def _md_table(header: list[str], body: list[list[str]]) -> str:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in body]
    return "\n".join(out)


def _summary_lines(summary: dict[str, Any], indent: str = "") -> list[str]:
    lines: list[str] = []
    for key, value in summary.items():
        if isinstance(value, dict):
            lines.append(f"{indent}- {key}:")
            lines += _summary_lines(value, indent + "  ")
        else:
            lines.append(f"{indent}- {key}: {value}")
    return lines


def _backend_lines(record: dict[str, Any]) -> list[str]:
    backends = record.get("backends", {})
    if not backends:
        return []
    lines = ["Backends (on the generator's cores; never the server under test's):", ""]
    uses = {
        "static": "every HTTP scenario but stream",
        "bytes": "stream (large bodies, sink)",
        "tcp": "stream-tcp (the upstream of the TLS streams)",
    }
    for kind, name in backends.items():
        lines.append(f"- {kind}: {name}, used by {uses.get(kind, kind)}")
    return [*lines, ""]


def markdown(record: dict[str, Any], plots: dict[str, list[str]]) -> str:
    m = record["machine"]
    out = [
        f"# edgeauth benchmark, {record['started']}",
        "",
        f"Profile **{record['profile']['name']}**, run time {record['seconds']:.0f} s, "
        f"load generator **{record['tool']}**. Command: `{record['command_line']}`",
        "",
        f"Layout: {record['layout']}.",
        "",
        *_backend_lines(record),
        "## Machine",
        "",
        _md_table(["what", "value"], [[k, str(v)] for k, v in m.items()]),
        "",
    ]
    end = record.get("load_average_at_end", [0.0])
    if m["load_average_at_start"][0] > 0.5 or end[0] > 1.5:
        out += [
            f"Load average at start was {m['load_average_at_start']}, at the end {end}: other "
            "processes were using the CPUs, so absolute figures are lower than on an idle "
            "machine; compare the ratios, which were measured in the same run.",
            "",
        ]
    out += [
        "## Results",
        "",
        _md_table([*COLUMNS, "cores busy %"], rows(record, cores=True)),
        "",
        "CPU % is of one core, for the server under test's whole process tree (supervisor and "
        "workers for edgeauth, master and workers for nginx); peak RSS is the sum over that "
        "tree, sampled every 20 ms. Latencies are from the load generator: wrk and `builtin` "
        "are closed-loop (queueing at that concurrency), `builtin-open-loop` counts from each "
        "request's due time (no coordinated omission). `direct` is plain HTTP to the backend. "
        "`gen CPU %` is the load generator's cores' mean busy share during the run (with the "
        f"backend on them); past {GENERATOR_LIMIT:g} % (marked `!`) the client, not the server, "
        "set the pace, and the figure is the generator's. `cores busy %` is each CPU's busy "
        "share; what the server's cores spent beyond the server's own CPU % went to other "
        "processes (listed under the targets when past "
        f"{OTHERS_LIMIT:g} % of a core).",
        "",
        "## Ratios and targets",
        "",
        "```",
        *check_lines(record),
        "```",
        "",
        "## Scenarios",
        "",
    ]
    for scenario in record["scenarios"]:
        out += [f"### {scenario['name']}", "", scenario["description"] + ".", ""]
        status = scenario["status"]
        if status != "ok":
            out += [f"**{status}**: {scenario['reason']}", ""]
        out += [f"Layout: {scenario['layout']}. Time: {scenario['seconds']:.0f} s.", ""]
        if scenario["summary"]:
            out += [*_summary_lines(scenario["summary"]), ""]
        for note in scenario["notes"]:
            if "Traceback" in note:
                out += ["```", note.strip(), "```", ""]
            else:
                out += [f"> {note}", ""]
        for png in plots.get(scenario["name"], []):
            out += [f"![{png}]({png})", ""]
        commands = sorted({m["command"] for m in scenario["measurements"] if m["command"]})
        if commands:
            out += ["Load commands:", "", "```", *commands, "```", ""]
    if plots.get("_skipped"):
        out += [f"Plots: {plots['_skipped'][0]}", ""]
    out += ["## Configuration", ""]
    for name, text in record["configs"].items():
        out += [f"`{name}`:", "", "```", text.rstrip(), "```", ""]
    out += [
        "## Processes started",
        "",
        "```",
        *(f"{name}: {cmd}" for name, cmd in record["commands"]),
        "```",
        "",
    ]
    return "\n".join(out)


# -- plots ------------------------------------------------------------------------------------


def make_plots(record: dict[str, Any], directory: Path) -> dict[str, list[str]]:
    """PNG files per scenario: latency percentiles and throughput by target."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {"_skipped": ["matplotlib is not installed (pip install -e '.[bench]')"]}
    made: dict[str, list[str]] = {}
    for scenario in record["scenarios"]:
        ms = [m for m in scenario["measurements"] if m["latency"]]
        name = scenario["name"]
        if ms:
            fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(ms) + 3), 4.2))
            keys = (("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p999", "p99.9"))
            width = 0.8 / len(keys)
            for i, (key, shown) in enumerate(keys):
                values = [max(m["latency"][key], 1e-3) for m in ms]
                ax.bar([x + i * width for x in range(len(ms))], values, width, label=shown)
            ax.set_xticks([x + 0.4 - width / 2 for x in range(len(ms))])
            ax.set_xticklabels([_short(m) for m in ms], rotation=20, ha="right", fontsize=7)
            ax.set_yscale("log")
            ax.set_ylabel("latency (ms, log scale)")
            ax.set_title(f"{name}: latency percentiles")
            ax.legend(fontsize=7)
            fig.tight_layout()
            png = f"{name}-latency.png"
            fig.savefig(directory / png, dpi=110)
            plt.close(fig)
            made.setdefault(name, []).append(png)
        tp = [
            m
            for m in scenario["measurements"]
            if (m["mb_per_s"] or m["rps"]) and m["tool"] != "builtin-open-loop"
        ]
        if tp and name not in ("revoke", "idle"):
            fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(tp) + 3), 4.2))
            values = [m["mb_per_s"] if m["mb_per_s"] is not None else m["rps"] for m in tp]
            colors = [
                "tab:orange" if m["target"].startswith("edgeauth") else "tab:gray" for m in tp
            ]
            ax.bar(range(len(tp)), values, color=colors)
            for x, v in enumerate(values):
                ax.text(x, v, f"{v:,.0f}", ha="center", va="bottom", fontsize=7)
            ax.set_xticks(range(len(tp)))
            ax.set_xticklabels([_short(m) for m in tp], rotation=20, ha="right", fontsize=7)
            unit = "MB/s" if any(m["mb_per_s"] is not None for m in tp) else "requests/s"
            ax.set_ylabel(unit)
            ax.set_title(f"{name}: throughput, edgeauth (orange) vs baselines")
            fig.tight_layout()
            png = f"{name}-throughput.png"
            fig.savefig(directory / png, dpi=110)
            plt.close(fig)
            made.setdefault(name, []).append(png)
        if name == "idle" and scenario["measurements"]:
            ms = scenario["measurements"]
            fig, ax = plt.subplots(figsize=(6, 4))
            values = [m["extra"].get("kib_per_connection") or 0 for m in ms]
            ax.bar([m["target"] for m in ms], values, color="tab:blue")
            ax.set_ylabel("RSS per idle TLS connection (KiB)")
            ax.set_title("idle: memory per connection")
            fig.tight_layout()
            fig.savefig(directory / "idle-rss.png", dpi=110)
            plt.close(fig)
            made.setdefault(name, []).append("idle-rss.png")
    return made


def _short(m: dict[str, Any]) -> str:
    label = str(m["label"])
    return f"{m['target']}\n{label[:28]}"


def write(record: dict[str, Any], directory: Path) -> Path:
    """results.json, the PNGs and report.md in `directory`; returns the report's path."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "results.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    plots: dict[str, list[str]] = {}
    try:
        plots = make_plots(record, directory)
    except Exception as exc:
        plots = {"_skipped": [f"plotting failed: {exc}"]}
    report = directory / "report.md"
    report.write_text(markdown(record, plots))
    return report


def emit(text: str) -> None:
    sys.stdout.write(text)
    with contextlib.suppress(OSError):
        sys.stdout.flush()
