"""The client side: send a conversation over TLS with plain sockets, read what comes back
within a bound, and read it with h11 as a strict client would."""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from dataclasses import dataclass, field

import h11

from tests.fuzz.model import Conversation, Unit

READ_BOUND = 2.0  # seconds without a byte before a conversation is judged "timeout"
STALL_BOUND = 0.6  # a conversation that stops mid-request waits this long for an answer
CLOSE_BOUND = 0.3  # after an answer that ends the connection, wait this long for the close


@dataclass
class Outcome:
    data: bytes = b""
    eof: bool = False  # the gateway closed (or reset) the connection
    timed_out: bool = False
    sent: int = 0  # bytes the client managed to send


@dataclass
class Resp:
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    interim: list[tuple[int, list[tuple[bytes, bytes]]]] = field(default_factory=list)

    def header(self, name: bytes) -> list[bytes]:
        return [v for n, v in self.headers if n == name]


@dataclass
class Parsed:
    responses: list[Resp]
    partial: bool = False  # an unfinished response at the end of the stream
    error: str | None = None  # h11 refused the bytes
    closing: bool = False  # the last response ends the connection
    extra: bytes = b""  # bytes after the last response when nothing more could follow


def parse(data: bytes, units: tuple[Unit, ...], eof: bool) -> Parsed:
    """The responses in `data`, matched in order to the requests of `units`."""
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=1 << 20)
    out = Parsed([])
    fed = False
    for unit in units:
        method = "HEAD" if unit.method == "HEAD" else "GET"
        conn.send(h11.Request(method=method, target="/", headers=[("Host", "h")]))
        conn.send(h11.EndOfMessage())
        if not fed:
            if data:
                conn.receive_data(data)  # (b"" would mean the end of the stream to h11)
            if eof:
                conn.receive_data(b"")
            fed = True
        resp: Resp | None = None
        interim: list[tuple[int, list[tuple[bytes, bytes]]]] = []
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                if resp is None and eof and not conn.trailing_data[0]:
                    return out  # closed with nothing (more) said
                cut_body = resp is not None and "complete message body" in str(exc)
                cut_head = resp is None and conn.trailing_data[0] and _incomplete_head(conn)
                if eof and (cut_body or cut_head):
                    out.partial = True
                else:
                    out.error = f"{exc} (after {len(out.responses)} responses)"
                return out
            if isinstance(event, h11.InformationalResponse):
                interim.append((event.status_code, list(event.headers)))
            elif isinstance(event, h11.Response):
                resp = Resp(event.status_code, event.reason, list(event.headers), b"", interim)
            elif isinstance(event, h11.Data):
                assert resp is not None
                resp.body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert resp is not None
                out.responses.append(resp)
                break
            else:  # NEED_DATA, ConnectionClosed, PAUSED: nothing more to read now
                if resp is not None or (eof and conn.trailing_data[0]):
                    out.partial = True
                return out
        if conn.their_state is h11.MUST_CLOSE or conn.our_state is h11.MUST_CLOSE:
            out.closing = True
            out.extra = conn.trailing_data[0]
            return out
        try:
            conn.start_next_cycle()
        except h11.LocalProtocolError as exc:
            out.error = f"cannot go on after response {len(out.responses)}: {exc}"
            return out
    out.extra = conn.trailing_data[0]
    return out


def _incomplete_head(conn: h11.Connection) -> bool:
    return b"\r\n\r\n" not in conn.trailing_data[0]


def answered(data: bytes, units: tuple[Unit, ...], eof: bool) -> tuple[int, bool]:
    """How many responses are complete, and whether nothing more can come."""
    p = parse(data, units, eof)
    done = p.closing or p.error is not None or len(p.responses) >= len(units)
    return len(p.responses), done


def converse(
    port: int, ctx: ssl.SSLContext, conv: Conversation, token: bytes, placeholder: bytes
) -> Outcome:
    """Send the conversation and read the answers, every wait bounded."""
    units = tuple(
        Unit(u.marker, u.method, u.raw.replace(placeholder, token), u.protected, u.token, u.expect)
        for u in conv.units
    )
    out = Outcome()
    raw = socket.create_connection(("127.0.0.1", port), timeout=READ_BOUND)
    try:
        sock = ctx.wrap_socket(raw, server_hostname="localhost")
    except (OSError, ssl.SSLError):
        raw.close()
        out.eof = True
        return out
    stalls = any(u.expect == "stall" for u in units)
    try:
        if conv.pipelined:
            data = b"".join(u.raw for u in units)
            ok = _send(sock, data, conv.cuts, conv.pause, out)
            if ok:
                _read(sock, out, units, len(units), STALL_BOUND if stalls else READ_BOUND)
            else:
                _read(sock, out, units, len(units), 0.3)
        else:
            offset = 0
            for i, u in enumerate(units):
                cuts = tuple(c - offset for c in conv.cuts if offset < c < offset + len(u.raw))
                offset += len(u.raw)
                if not _send(sock, u.raw, cuts, conv.pause, out):
                    _read(sock, out, units, len(units), 0.3)
                    break
                bound = STALL_BOUND if u.expect == "stall" else READ_BOUND
                _read(sock, out, units, i + 1, bound)
                if out.eof or out.timed_out:
                    break
        if not out.eof and not out.timed_out:
            _drain(sock, out, CLOSE_BOUND if parse(out.data, units, False).closing else 0.02)
    finally:
        with contextlib.suppress(OSError):
            sock.close()
    return out


def _drain(sock: ssl.SSLSocket, out: Outcome, bound: float) -> None:
    """Whatever else arrives shortly after the last expected answer (it should be nothing)."""
    sock.settimeout(bound)
    try:
        while chunk := sock.recv(1 << 16):
            out.data += chunk
    except TimeoutError:
        return
    except (OSError, ssl.SSLError):
        pass
    out.eof = True


def _send(
    sock: ssl.SSLSocket, data: bytes, cuts: tuple[int, ...], pause: float, out: Outcome
) -> bool:
    pieces = []
    last = 0
    for cut in cuts:
        pieces.append(data[last:cut])
        last = cut
    pieces.append(data[last:])
    try:
        for i, piece in enumerate(pieces):
            if i and pause:
                time.sleep(pause)
            if piece:
                sock.sendall(piece)
                out.sent += len(piece)
    except (OSError, ssl.SSLError):
        return False
    return True


def _read(
    sock: ssl.SSLSocket, out: Outcome, units: tuple[Unit, ...], want: int, bound: float
) -> None:
    """Read until `want` responses are complete, the connection ends, or `bound` seconds
    pass without a byte."""
    if out.eof:
        return
    sock.settimeout(bound)
    while True:
        count, done = answered(out.data, units, False)
        if done or count >= want:
            return
        try:
            chunk = sock.recv(1 << 16)
        except TimeoutError:
            out.timed_out = True
            return
        except (OSError, ssl.SSLError):
            out.eof = True
            return
        if not chunk:
            out.eof = True
            return
        out.data += chunk
