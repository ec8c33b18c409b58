"""Process management for the harness: start, pin, watch and always stop what it started.

Rule 1: every process is started through a tiny launcher that sets its CPU affinity and asks
the kernel to SIGTERM it if the harness dies (PR_SET_PDEATHSIG), then execs the command, so
pinning covers every thread it will ever start and nothing outlives a killed harness.
Rule 2: each process leads its own process group; `Processes.close()` stops the groups
(SIGTERM, then SIGKILL after a grace period) in reverse order of start, whatever happened.
Rule 3: what a process costs is read from /proc: CPU time of the whole tree, RSS sampled
every few ms plus the kernel's own high-water mark, and each core's busy share.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

CLK_TCK = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parent.parent  # so that `python -m benchmarks.x` works anywhere
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024

# Runs as `python -c LAUNCHER <cpus> <command...>`: affinity, parent-death signal, exec.
LAUNCHER = """\
import ctypes, os, signal, sys
cpus = sys.argv[1]
if cpus:
    os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
except Exception:
    pass
os.execvp(sys.argv[2], sys.argv[2:])
"""


def free_port() -> int:
    """A TCP port free on loopback right now (the kernel's choice)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raise_fd_limit() -> int:
    """Raise this process's (and so its children's) open-file limit to the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return int(soft)


def cpu_list(cpus: Sequence[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def children_of() -> dict[int, list[int]]:
    """ppid -> child pids, for every process visible in /proc."""
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it."""
    tree = children_of()
    found = [pid]
    index = 0
    while index < len(found):
        found.extend(tree.get(found[index], []))
        index += 1
    return found


def pin(pids: Sequence[int], cpus: Sequence[int]) -> None:
    """Set the affinity of every thread of every given process."""
    for pid in pids:
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            continue
        for tid in tids:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, set(cpus))


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time of these processes (live ones only)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / CLK_TCK


def rss_kib(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KIB
    except OSError:
        return 0


def hwm_kib(pid: int) -> int:
    """The kernel's peak-RSS mark (VmHWM) of a process, 0 if unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_hwm(pids: Sequence[int]) -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0; silently not elsewhere)."""
    for pid in pids:
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/clear_refs").write_text("5")


def core_times() -> dict[int, tuple[int, int]]:
    """cpu index -> (busy, total) jiffies since boot."""
    found: dict[int, tuple[int, int]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        numbers = [int(v) for v in values[:8]]
        idle = numbers[3] + numbers[4]
        found[int(name[3:])] = (sum(numbers) - idle, sum(numbers))
    return found


@dataclass
class Usage:
    """What the watched processes cost while a load ran."""

    seconds: float
    cpu_seconds: float
    rss_start_kib: int
    rss_peak_kib: int
    rss_end_kib: int
    hwm_kib: int
    core_busy: dict[int, float]

    @property
    def cpu_percent(self) -> float:
        return 100.0 * self.cpu_seconds / self.seconds if self.seconds > 0 else 0.0


class Watch:
    """Samples the RSS of a process tree in a thread; CPU and core load from start to stop."""

    def __init__(self, pids: Callable[[], list[int]], interval: float = 0.02) -> None:
        self._pids = pids
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="bench-watch", daemon=True)
        self._peak = 0
        self._start_rss = 0
        self._started = 0.0
        self._cpu0 = 0.0
        self._cores0: dict[int, tuple[int, int]] = {}
        self._known: list[int] = []

    def _rss(self) -> int:
        self._known = self._pids()
        return sum(rss_kib(pid) for pid in self._known)

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            self._peak = max(self._peak, self._rss())

    def start(self) -> Watch:
        pids = self._pids()
        reset_hwm(pids)
        self._start_rss = self._peak = self._rss()
        self._cpu0 = cpu_seconds(pids)
        self._cores0 = core_times()
        self._started = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> Usage:
        seconds = time.monotonic() - self._started
        self._stop.set()
        self._thread.join()
        pids = self._pids() or self._known
        end = sum(rss_kib(pid) for pid in pids)
        cores1 = core_times()
        busy = {}
        for cpu, (b1, t1) in cores1.items():
            b0, t0 = self._cores0.get(cpu, (0, 0))
            busy[cpu] = round(100.0 * (b1 - b0) / (t1 - t0), 1) if t1 > t0 else 0.0
        return Usage(
            seconds=seconds,
            cpu_seconds=cpu_seconds(pids) - self._cpu0,
            rss_start_kib=self._start_rss,
            rss_peak_kib=max(self._peak, end),
            rss_end_kib=end,
            hwm_kib=sum(hwm_kib(pid) for pid in pids),
            core_busy=busy,
        )


@dataclass
class Proc:
    """One started process (the leader of its own process group)."""

    name: str
    command: list[str]
    popen: subprocess.Popen[bytes]
    log_path: Path | None
    cpus: tuple[int, ...]
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def pids(self) -> list[int]:
        return descendants(self.pid) if self.alive() else []

    def alive(self) -> bool:
        return self.popen.poll() is None

    def pin(self, cpus: Sequence[int]) -> None:
        pin(self.pids(), cpus)

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the group, then SIGKILL it if it is still there after `grace` seconds."""
        if self.popen.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait()
        # stragglers of the group (a worker that outlived its supervisor)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None


class Processes:
    """Owns every process the harness starts; closing it stops them all, newest first."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        path = os.environ.get("PYTHONPATH", "")
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), path) if p)}
        self.started: list[Proc] = []
        self.commands: list[tuple[str, str]] = []

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(
        self,
        name: str,
        command: Sequence[str],
        *,
        cpus: Sequence[int] = (),
        env: dict[str, str] | None = None,
        stdin: int | None = subprocess.DEVNULL,
        stdout: int | None = None,
        cwd: Path | None = None,
    ) -> Proc:
        """Start `command` pinned to `cpus` (all if empty); its output goes to a log file
        unless `stdout` is subprocess.PIPE."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        log = log_path.open("ab")
        argv = [sys.executable, "-c", LAUNCHER, cpu_list(cpus), *command]
        try:
            popen = subprocess.Popen(
                argv,
                stdin=stdin,
                stdout=log if stdout is None else stdout,
                stderr=log,
                env=self.env if env is None else env,
                cwd=cwd,
                start_new_session=True,
            )
        except BaseException:
            log.close()
            raise
        proc = Proc(name, list(command), popen, log_path, tuple(cpus), log)
        self.started.append(proc)
        self.commands.append((name, _shell(command, cpus)))
        return proc

    def stop(self, proc: Proc, grace: float = 10.0) -> None:
        proc.stop(grace)
        if proc in self.started:
            self.started.remove(proc)

    def close(self) -> None:
        errors: list[BaseException] = []
        for proc in reversed(self.started):
            try:
                proc.stop()
            except BaseException as exc:
                errors.append(exc)
        self.started.clear()
        if errors:
            raise errors[0]


def _shell(command: Sequence[str], cpus: Sequence[int]) -> str:
    text = " ".join(_quote(part) for part in command)
    return f"taskset -c {cpu_list(cpus)} {text}" if cpus else text


def _quote(part: str) -> str:
    if part and all(c.isalnum() or c in "-_./:=,@%+" for c in part):
        return part
    return "'" + part.replace("'", "'\\''") + "'"


def wait_port(port: int, proc: Proc | None = None, timeout: float = 90.0) -> None:
    """Until something accepts on 127.0.0.1:port; fails early if `proc` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.05)
    name, tail = (proc.name, proc.log_tail()) if proc is not None else ("", "")
    raise RuntimeError(f"{name}: nothing listens on port {port} after {timeout:.0f} s\n{tail}")


@contextlib.contextmanager
def pinned_to(procs: Sequence[Proc], cpus: Sequence[int]) -> Iterator[None]:
    """Temporarily move processes to other cores (e.g. the backend when it is measured)."""
    before = [(p, p.cpus) for p in procs]
    for proc in procs:
        proc.pin(cpus)
    try:
        yield
    finally:
        for proc, old in before:
            proc.pin(old or sorted(os.sched_getaffinity(0)))
