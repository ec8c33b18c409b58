"""Token-endpoint request bodies → one flat dict of parameters (RFC 6749 §3.2, design §4).

Rule 1: form-urlencoded (the RFC), JSON (Kong and the seed's examples) and multipart bodies
are accepted; anything else is `invalid_request`.
Rule 2: a repeated parameter is `invalid_request` (RFC 6749 §3.1), never first-or-last wins.
Rule 3: credentials never come from the query string; their presence there is refused.
Rule 4: every name and value is text a store can keep: a lone surrogate (which a JSON `\\u`
escape can spell; SQLite cannot encode it) or a NUL (PostgreSQL refuses it) is
`invalid_request` here, so it never reaches the store (whose refusal would answer 503), a log
or a reply.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
from urllib.parse import parse_qsl

from edgeauth.errors import InvalidRequest

MAX_BODY_BYTES = 16 * 1024
# Parameters that must not travel in a URL, where logs and proxies keep them.
SECRET_PARAMS = frozenset(
    {
        "client_id",
        "client_secret",
        "provision_key",
        "refresh_token",
        "code",
        "code_verifier",
        "password",
        "authenticated_userid",
        "token",
    }
)
Params = dict[str, str]


def _is_text(value: str) -> bool:
    """Rule 4: no NUL, and well-formed Unicode (only lone surrogates fail strict UTF-8)."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _unique(pairs: list[tuple[str, str]]) -> Params:
    params: Params = {}
    for name, value in pairs:
        if name in params:
            raise InvalidRequest("A parameter was sent more than once")
        if not (_is_text(name) and _is_text(value)):
            raise InvalidRequest("A parameter holds a NUL or malformed text")
        params[name] = value
    return params


def _form(body: bytes) -> Params:
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text), errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest("The request body is not valid form data") from exc
    return _unique(pairs)


def _scalar(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # Kong takes `"authenticated_userid": 1` as well as "1"
    raise InvalidRequest("JSON parameters must be strings")


def _pairs(pairs: list[tuple[str, object]]) -> list[tuple[str, object]]:
    """Keep every key, so that a repeated one is seen (a dict would keep the last)."""
    return pairs


def _json(body: bytes) -> Params:
    try:
        doc = json.loads(body, object_pairs_hook=_pairs)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest("The request body is not valid JSON") from exc
    if not isinstance(doc, list) or not all(isinstance(item, tuple) for item in doc):
        raise InvalidRequest("The request body must be a JSON object")
    return _unique([(name, _scalar(value)) for name, value in doc if value is not None])


def _multipart(content_type: str, body: bytes) -> Params:
    try:
        head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("ascii")
    except UnicodeEncodeError as exc:  # a boundary is ASCII (RFC 2046 §5.1.1)
        raise InvalidRequest("The request body is not valid multipart data") from exc
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise InvalidRequest("The request body is not valid multipart data")
    pairs: list[tuple[str, str]] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if not isinstance(name, str) or not isinstance(payload, bytes):
            raise InvalidRequest("The request body is not valid multipart data")
        try:
            pairs.append((name, payload.decode("utf-8")))
        except UnicodeDecodeError as exc:
            raise InvalidRequest("The request body is not valid multipart data") from exc
    return _unique(pairs)


def parse_body(content_type: str, body: bytes) -> Params:
    """The parameters of a token/authorize/revoke/introspect request body."""
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime == "application/x-www-form-urlencoded":
        return _form(body)
    if mime == "application/json":
        return _json(body)
    if mime == "multipart/form-data":
        return _multipart(content_type, body)
    if not body:
        return {}
    raise InvalidRequest("Unsupported Content-Type")


def refuse_secrets_in_query(query: str) -> None:
    """RFC 6749 §3.2: credentials in the URL are refused rather than silently ignored."""
    for name, _ in parse_qsl(query, keep_blank_values=True):
        if name in SECRET_PARAMS:
            raise InvalidRequest("Credentials must be sent in the request body")
