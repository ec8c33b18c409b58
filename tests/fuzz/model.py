"""What an example is: client conversations of request byte strings, each request with what
the rules let the gateway do with it, and the upstream answer scripted for it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# What the gateway may do with a request, strongest last when mutations combine:
#   valid        RFC 9112-conforming: answered, forwarded if routed and allowed
#   either       a recipient MAY accept it (bare LF, OWS around `chunked`, duplicate equal
#                Content-Length...): answered or refused, and if forwarded then cleanly
#   closes       the connection MUST end after its answer (CL+TE, Upgrade, CONNECT, close)
#   body_invalid refused (status >= 400 or a close); its head may have gone upstream, but
#                the upstream never sees it complete
#   head_invalid refused before anything of it goes upstream (RFC 9112 MUST-400 cases)
#   stall        the client stops sending in the middle of it: the gateway may wait
ORDER = ("valid", "either", "closes", "body_invalid", "head_invalid", "stall")


def stronger(a: str, b: str) -> str:
    return a if ORDER.index(a) >= ORDER.index(b) else b


@dataclass(frozen=True)
class Unit:
    """One request as the client means it."""

    marker: str
    method: str
    raw: bytes
    protected: bool  # aimed at the protected route (before any spelling trick)
    token: bool  # carries the valid token
    expect: str = "valid"
    answer: str = "normal"  # the upstream's scripted answer kind (tests/fuzz/answers.py)
    early: bool = False  # the upstream answers as soon as the head has arrived
    note: str = ""

    def __repr__(self) -> str:  # short: hypothesis prints failing examples
        raw = self.raw if len(self.raw) < 400 else self.raw[:300] + b"...%d bytes" % len(self.raw)
        return (
            f"Unit({self.marker!r}, {self.method!r}, {raw!r}, protected={self.protected}, "
            f"token={self.token}, expect={self.expect!r}, answer={self.answer!r}, "
            f"early={self.early})"
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis's printer
        printer.text(repr(self))


@dataclass(frozen=True)
class Conversation:
    """One client connection: its requests in order, sent pipelined (all at once, cut into
    segments at `cuts`) or one at a time (each after the previous answer)."""

    units: tuple[Unit, ...]
    pipelined: bool = False
    cuts: tuple[int, ...] = ()
    pause: float = 0.0

    @property
    def data(self) -> bytes:
        return b"".join(u.raw for u in self.units)


@dataclass(frozen=True)
class Example:
    conversations: tuple[Conversation, ...]
    smuggled: tuple[str, ...] = ()  # markers that only ever appear inside a body

    def units(self) -> list[Unit]:
        return [u for c in self.conversations for u in c.units]

    def describe(self) -> str:
        lines = []
        for i, conv in enumerate(self.conversations):
            mode = "pipelined" if conv.pipelined else "one at a time"
            lines.append(f"connection {i} ({mode}, cuts {list(conv.cuts)}):")
            for u in conv.units:
                lines.append(
                    f"  {u.marker} expect={u.expect} answer={u.answer}{' early' if u.early else ''}"
                    f" token={u.token} note={u.note!r}\n    {u.raw[:600]!r}"
                )
        return "\n".join(lines)
