"""Who may use a stream: the client certificate's subject and SANs, and the SNI name patterns.

With `client_ca_file` the TLS handshake already refuses a client without a certificate from
that CA; `allowed_subjects` and `allowed_sans` narrow it to named identities, checked here on
the verified certificate as SSLObject.getpeercert() gives it (a dict of tuples of RDNs and
(type, value) SAN pairs). `server_names` chooses a stream by the SNI name.

Rule 1: a subject matches only the whole distinguished name: "CN=studio,O=Acme" is not
"CN=studio,O=Acme,C=US", as a prefix or subset match would let any certificate the CA issues
with more attributes in. RDNs in order, the attributes of a multi-valued RDN in any order.
Rule 2: attribute types are compared by their RFC 4514 short name (CN, O, ...; OpenSSL's long
names as getpeercert spells them otherwise), and values as X.520's caseIgnoreMatch does, case
and runs of spaces aside (RFC 4518's other mappings are not applied).
Rule 3: a SAN matches when its type and value are one of the allowed ones: DNS names and email
domains without regard to case, IP addresses by value (2001:db8::1 is 2001:DB8:0:0:0:0:0:1),
URIs exactly (a SPIFFE ID's path is case-sensitive). A wildcard in a certificate's SAN is only
ever the literal string, never a pattern: a client certificate names one identity.
Rule 4: either list matching is enough; both empty allow any certificate the CA verified. No
certificate at all is never allowed.
Rule 5: a server name pattern is a name or "*." and a name, the star standing for exactly one
non-empty label (RFC 6125 §6.4.3's leftmost-label form), without regard to case.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping

PeerCert = Mapping[str, object]  # SSLObject.getpeercert(): ssl is not imported in core modules
Attribute = tuple[str, str]  # (short type, normalised value)
Subject = tuple[frozenset[Attribute], ...]  # RDNs, least significant first, as RFC 4514 writes

# RFC 4514 §3 short names for the long names getpeercert uses (OpenSSL's).
SHORT_NAMES = {
    "commonName": "CN",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "streetAddress": "STREET",
    "domainComponent": "DC",
    "userId": "UID",
}
_SHORT_BY_KEY = {name.casefold(): name for name in SHORT_NAMES.values()} | {
    long.casefold(): short for long, short in SHORT_NAMES.items()
}
# How allowed_sans spells each SAN type, and how getpeercert does.
SAN_TYPES = {"DNS": "DNS", "email": "email", "URI": "URI", "IP": "IP Address"}
_SPECIAL = frozenset(',+"\\<>;=#')  # RFC 4514 §3: may follow a backslash as themselves
_ESCAPE_ALWAYS = frozenset(',+"\\<>;')
_SPACES = re.compile(r"\s+")


def certificate_allowed(
    cert: PeerCert | None, subjects: tuple[str, ...], sans: tuple[str, ...]
) -> bool:
    """Whether the verified certificate `cert` is one of the allowed identities (Rules 1-4).
    `subjects` are RFC 4514 names, `sans` "DNS:..."/"email:..."/"URI:..."/"IP:..." entries,
    both checked beforehand with parse_subject and parse_san (ValueError otherwise)."""
    if not cert:
        return False
    if not subjects and not sans:
        return True
    if _cert_subject(cert) in {parse_subject(text) for text in subjects}:
        return True
    allowed = {_san_key(*parse_san(text)) for text in sans}
    return any(_san_key(kind, value) in allowed for kind, value in _cert_sans(cert))


def subject_text(cert: PeerCert | None) -> str:
    """The certificate's subject as RFC 4514 writes it ("CN=studio,O=Acme,C=US": most
    specific first, the reverse of the certificate's own order); "" without one."""
    if not cert:
        return ""
    return ",".join(
        "+".join(f"{SHORT_NAMES.get(kind, kind)}={_escape(value)}" for kind, value in rdn)
        for rdn in reversed(_rdns(cert))
    )


def server_name_matches(pattern: str, name: str) -> bool:
    """Whether SNI `name` is `pattern`, or one label more than a "*." pattern (Rule 5)."""
    pattern, name = pattern.lower().removesuffix("."), name.lower().removesuffix(".")
    if not pattern.startswith("*."):
        return pattern == name
    label, dot, rest = name.partition(".")
    return bool(label) and bool(dot) and rest == pattern[2:]


def parse_subject(text: str) -> Subject:
    """An RFC 4514 distinguished name as compared (Rules 1 and 2); ValueError says what is
    wrong with one that is not (a hex-encoded "#..." value is refused: not one a person
    writes)."""
    rdns = []
    for rdn in _split(_trim(text), ","):
        attributes = []
        for attribute in _split(rdn, "+"):
            kind, equals, value = attribute.partition("=")
            if not equals or not kind.strip() or not value.strip():
                raise ValueError(f"not an RFC 4514 name: {text!r} (expected TYPE=value)")
            if value.lstrip().startswith("#"):
                raise ValueError(f"not an RFC 4514 name: {text!r} (hex values are not taken)")
            attributes.append(_attribute(kind.strip(), _unescape(value, text)))
        rdns.append(frozenset(attributes))
    return tuple(rdns)


def _trim(text: str) -> str:
    """`text` without surrounding spaces, except a trailing one that is escaped ("CN=a\\ ",
    as subject_text writes a value that ends in a space): stripping it would leave a lone
    backslash."""
    text = text.lstrip()
    trimmed = text.rstrip()
    backslashes = len(trimmed) - len(trimmed.rstrip("\\"))
    return trimmed + " " if backslashes % 2 and len(text) > len(trimmed) else trimmed


def parse_san(text: str) -> tuple[str, str]:
    """An allowed_sans entry as (getpeercert's SAN type, value); ValueError if the type is not
    one of SAN_TYPES or the value is empty (or, for IP, not an address)."""
    kind, colon, value = text.partition(":")
    if not colon or kind not in SAN_TYPES or not value:
        raise ValueError(f"a SAN is {'/'.join(SAN_TYPES)}:value, not {text!r}")
    if kind == "IP":
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"not an IP address in {text!r}") from None
    return SAN_TYPES[kind], value


def _attribute(kind: str, value: str) -> Attribute:
    """(short type, value) normalised for comparison (Rule 2)."""
    key = _SHORT_BY_KEY.get(kind.casefold(), kind.casefold())
    return key, _SPACES.sub(" ", value.strip()).casefold()


def _rdns(cert: PeerCert) -> list[tuple[tuple[str, str], ...]]:
    """The subject's RDNs in the certificate's order, each its (type, value) pairs."""
    subject = cert.get("subject", ())
    if not isinstance(subject, tuple):
        return []
    return [tuple(_pairs(rdn)) for rdn in subject]


def _pairs(items: object) -> Iterable[tuple[str, str]]:
    """The (str, str) pairs in a getpeercert tuple, anything else skipped."""
    if isinstance(items, tuple):
        for item in items:
            if isinstance(item, tuple) and len(item) == 2:
                kind, value = item
                if isinstance(kind, str) and isinstance(value, str):
                    yield kind, value


def _cert_subject(cert: PeerCert) -> Subject:
    return tuple(
        frozenset(_attribute(kind, value) for kind, value in rdn) for rdn in reversed(_rdns(cert))
    )


def _cert_sans(cert: PeerCert) -> Iterable[tuple[str, str]]:
    return _pairs(cert.get("subjectAltName", ()))


def _san_key(kind: str, value: str) -> tuple[str, str]:
    """A SAN as compared (Rule 3)."""
    if kind == "DNS":
        return kind, value.lower().removesuffix(".")
    if kind == "email":
        local, at, domain = value.rpartition("@")
        return kind, f"{local}{at}{domain.lower()}"
    if kind == "IP Address":
        try:
            return kind, str(ipaddress.ip_address(value.strip()))
        except ValueError:
            return kind, value
    return kind, value


def _split(text: str, separator: str) -> list[str]:
    """`text` split at each `separator` that no backslash escapes."""
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for char in text:
        if char == separator and not escaped:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
        escaped = char == "\\" and not escaped
    parts.append("".join(current))
    return parts


def _unescape(value: str, text: str) -> str:
    """An RFC 4514 value with its escapes undone: "\\," and the like, and "\\C3\\A9" UTF-8."""
    out: list[str] = []
    pending, index = bytearray(), 0
    while index < len(value):
        char = value[index]
        if char != "\\":
            out.append(_decode(pending, text) + char)
            pending.clear()
            index += 1
            continue
        pair = value[index + 1 : index + 3]
        if re.fullmatch(r"[0-9A-Fa-f]{2}", pair):
            pending.append(int(pair, 16))
            index += 3
        elif value[index + 1 : index + 2] in _SPECIAL | {" "}:
            out.append(_decode(pending, text) + value[index + 1])
            pending.clear()
            index += 2
        else:
            raise ValueError(f"not an RFC 4514 name: {text!r} (bad escape)")
    out.append(_decode(pending, text))
    return "".join(out)


def _decode(pending: bytearray, text: str) -> str:
    try:
        return pending.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"not an RFC 4514 name: {text!r} (escapes are not UTF-8)") from None


def _escape(value: str) -> str:
    """`value` escaped as RFC 4514 §2.4 says, so subject_text reads back with parse_subject."""
    last = len(value) - 1
    return "".join(
        _escape_char(char, index == 0, index == last) for index, char in enumerate(value)
    )


def _escape_char(char: str, first: bool, last: bool) -> str:
    if char == "\0":
        return "\\00"
    if char in _ESCAPE_ALWAYS or (first and char in " #") or (last and char == " "):
        return "\\" + char
    return char
