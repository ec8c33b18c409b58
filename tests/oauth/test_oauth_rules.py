"""The pure OAuth rules as plain values: bodies, client auth, scopes, bearer tokens, errors
(design §4, §4.5, §5 step 2)."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from edgeauth import crypto, errors
from edgeauth.errors import (
    InvalidClient,
    InvalidRequest,
    InvalidScope,
    OAuthError,
)
from edgeauth.models import ClientType, Credential
from edgeauth.oauth import bearer, scopes
from edgeauth.oauth.client_auth import (
    ClientCredentials,
    SecretCheck,
    credentials_from,
    secret_check,
)
from edgeauth.oauth.grants.provisioned import authenticated_userid, given_userid
from edgeauth.oauth.params import SECRET_PARAMS, Params, parse_body, refuse_secrets_in_query
from edgeauth.oauth.routes import says_http
from edgeauth.oauth.throttle import MAX_KEY_CHARS, Throttle, keys_of, source_key
from edgeauth.rendering import headers as headers_of
from edgeauth.rendering import oauth_body

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
BOUNDARY = "----edgeauth-test-boundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def _multipart(*parts: tuple[str | None, bytes]) -> bytes:
    chunks: list[bytes] = []
    for name, value in parts:
        disposition = "form-data" if name is None else f'form-data; name="{name}"'
        chunks.append(
            f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"
        )
    return b"".join(chunks) + f"--{BOUNDARY}--\r\n".encode()


def _basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode("ascii")


# --- params.parse_body ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        (
            FORM,
            b"grant_type=password&scope=read+write",
            {"grant_type": "password", "scope": "read write"},
        ),
        (f"{FORM}; charset=UTF-8", b"a=%2B%26%3D&b=", {"a": "+&=", "b": ""}),
        ("Application/X-WWW-Form-Urlencoded", b"a=1", {"a": "1"}),
        (FORM, b"", {}),
        (FORM, b"name=J%C3%BCrgen", {"name": "J\u00fcrgen"}),
        (
            JSON,
            b'{"grant_type": "password", "scope": "read"}',
            {"grant_type": "password", "scope": "read"},
        ),
        (JSON, b'{"authenticated_userid": 1}', {"authenticated_userid": "1"}),  # Kong takes ints
        (JSON, b'{"a": "x", "b": null}', {"a": "x"}),
        (f"{JSON}; charset=utf-8", b"{}", {}),
        (
            MULTIPART,
            _multipart(("grant_type", b"password"), ("scope", b"read write")),
            {"grant_type": "password", "scope": "read write"},
        ),
        (MULTIPART, _multipart(("name", "J\u00fcrgen".encode())), {"name": "J\u00fcrgen"}),
        ("text/plain", b"", {}),
        ("", b"", {}),
    ],
)
def test_parse_body_accepts(content_type: str, body: bytes, expected: Params) -> None:
    assert parse_body(content_type, body) == expected


@pytest.mark.parametrize(
    ("content_type", "body", "description"),
    [
        (FORM, b"a=1&a=2", "A parameter was sent more than once"),
        (FORM, b"a=1&b=2&a=1", "A parameter was sent more than once"),
        (FORM, b"a=1&&b=2", "The request body is not valid form data"),
        (FORM, b"novalue", "The request body is not valid form data"),
        (FORM, b"a=%ff", "The request body is not valid form data"),
        (FORM, b"a=\xff", "The request body is not valid form data"),
        (JSON, b"{not json", "The request body is not valid JSON"),
        (JSON, b"", "The request body is not valid JSON"),
        (JSON, b'["a", "b"]', "The request body must be a JSON object"),
        (JSON, b'"text"', "The request body must be a JSON object"),
        (JSON, b'{"a": true}', "JSON parameters must be strings"),
        (JSON, b'{"a": 1.5}', "JSON parameters must be strings"),
        (JSON, b'{"a": ["x"]}', "JSON parameters must be strings"),
        (JSON, b'{"a": {"b": "c"}}', "JSON parameters must be strings"),
        (JSON, b'{"a": "1", "a": "2"}', "A parameter was sent more than once"),
        (MULTIPART, _multipart(("a", b"1"), ("a", b"2")), "A parameter was sent more than once"),
        (MULTIPART, _multipart((None, b"x")), "The request body is not valid multipart data"),
        (MULTIPART, _multipart(("a", b"\xff")), "The request body is not valid multipart data"),
        (MULTIPART, b"garbage", "The request body is not valid multipart data"),
        (
            "multipart/form-data",
            _multipart(("a", b"1")),
            "The request body is not valid multipart data",
        ),
        ("text/plain", b"grant_type=password", "Unsupported Content-Type"),
        ("", b"a=1", "Unsupported Content-Type"),
    ],
)
def test_parse_body_refuses(content_type: str, body: bytes, description: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_body(content_type, body)
    assert type(info.value) is InvalidRequest
    assert info.value.status == 400
    assert oauth_body(info.value) == {"error": "invalid_request", "error_description": description}


@pytest.mark.parametrize("name", sorted(SECRET_PARAMS))
def test_refuse_secrets_in_query_refuses_each_credential(name: str) -> None:
    for query in (f"{name}=x", f"a=1&{name}=", f"{name.replace('_', '%5F')}=x&b=2"):
        with pytest.raises(InvalidRequest) as info:
            refuse_secrets_in_query(query)
        assert oauth_body(info.value) == {
            "error": "invalid_request",
            "error_description": "Credentials must be sent in the request body",
        }


@pytest.mark.parametrize("query", ["", "grant_type=password&scope=read", "state=x", "client=1"])
def test_refuse_secrets_in_query_lets_other_parameters_be(query: str) -> None:
    refuse_secrets_in_query(query)


def test_secret_params_cover_every_credential() -> None:
    assert {
        "client_id",
        "client_secret",
        "provision_key",
        "refresh_token",
        "code",
        "code_verifier",
        "authenticated_userid",
    } <= SECRET_PARAMS


# --- client_auth.credentials_from ----------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "client_id", "candidates"),
    [
        (b"clientid:plain", "clientid", ("plain",)),
        # form-decoded first (RFC 6749 §2.3.1), the raw value as Kong's fallback
        (
            b"clientid:s3cr3t%3Awith%25colon",
            "clientid",
            ("s3cr3t:with%colon", "s3cr3t%3Awith%25colon"),
        ),
        (b"clientid:a+b", "clientid", ("a b", "a+b")),
        (b"clientid:a%2Bb", "clientid", ("a+b", "a%2Bb")),
        # an unencoded ':' in the secret: only the first ':' separates
        (b"clientid:s3cr3t:with%colon", "clientid", ("s3cr3t:with%colon",)),
        (b"client%20id:x", "client id", ("x",)),
        (b"client+id:x", "client id", ("x",)),
        (b"clientid:", "clientid", ("",)),
        ("cli\u00e9nt:s\u00e9cret".encode(), "cli\u00e9nt", ("s\u00e9cret",)),
    ],
)
def test_basic_credentials_are_form_decoded_with_a_raw_fallback(
    raw: bytes, client_id: str, candidates: tuple[str, ...]
) -> None:
    creds = credentials_from(_basic(raw), {})
    assert creds == ClientCredentials(client_id, candidates, basic=True)


def test_basic_scheme_is_case_insensitive_and_tolerates_spaces() -> None:
    value = base64.b64encode(b"clientid:x").decode()
    for header in (f"basic {value}", f"BASIC {value}", f"  Basic   {value}  "):
        assert credentials_from(header, {}) == ClientCredentials("clientid", ("x",), basic=True)


@pytest.mark.parametrize(
    "header",
    [
        "Basic !!!notbase64",
        "Basic Y2xpZW50aWQ6eA",  # unpadded
        "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),  # not UTF-8
        _basic(b"clientid"),  # no ':'
        _basic(b":secret"),  # no client id
        "Basic ",
    ],
)
def test_malformed_basic_is_401_invalid_client_with_a_basic_challenge(header: str) -> None:
    with pytest.raises(InvalidClient) as info:
        credentials_from(header, {"client_id": "clientid"})
    exc = info.value
    assert exc.basic is True
    assert exc.status == 401
    assert headers_of(exc, "edgeauth") == {"WWW-Authenticate": 'Basic realm="edgeauth"'}
    assert oauth_body(exc) == {
        "error": "invalid_client",
        "error_description": "Invalid client authentication",
    }


@pytest.mark.parametrize(
    "params",
    [
        {"client_secret": "x"},
        {"client_id": "clientid", "client_secret": "x"},
        {"client_secret": ""},
        {"client_id": "otherclient"},
    ],
)
def test_basic_beside_a_body_secret_or_another_body_id_is_invalid_request(
    params: Params,
) -> None:
    with pytest.raises(InvalidRequest) as info:
        credentials_from(_basic(b"clientid:x"), params)
    assert type(info.value) is InvalidRequest
    assert info.value.status == 400
    assert oauth_body(info.value) == {
        "error": "invalid_request",
        "error_description": "Only one client authentication method may be used",
    }


def test_basic_beside_the_same_body_client_id_is_fine() -> None:
    creds = credentials_from(_basic(b"clientid:x"), {"client_id": "clientid"})
    assert creds == ClientCredentials("clientid", ("x",), basic=True)


@pytest.mark.parametrize(
    ("authorization", "params", "expected"),
    [
        (None, {"client_id": "c", "client_secret": "s"}, ClientCredentials("c", ("s",), False)),
        (None, {"client_id": "c"}, ClientCredentials("c", (), False)),
        (None, {"client_id": "c", "client_secret": ""}, ClientCredentials("c", ("",), False)),
        # a secret in the body is taken as sent: no form-decoding there
        (
            None,
            {"client_id": "c", "client_secret": "a+b%20"},
            ClientCredentials("c", ("a+b%20",), False),
        ),
        # another scheme is no client authentication at all
        (
            "Bearer abc",
            {"client_id": "c", "client_secret": "s"},
            ClientCredentials("c", ("s",), False),
        ),
        ("", {"client_id": "c"}, ClientCredentials("c", (), False)),
    ],
)
def test_body_credentials(
    authorization: str | None, params: Params, expected: ClientCredentials
) -> None:
    assert credentials_from(authorization, params) == expected


@pytest.mark.parametrize(
    ("authorization", "params"),
    [(None, {}), (None, {"client_id": ""}), (None, {"client_secret": "s"}), ("Bearer x", {})],
)
def test_no_client_at_all_is_400_invalid_client(authorization: str | None, params: Params) -> None:
    with pytest.raises(InvalidClient) as info:
        credentials_from(authorization, params)
    assert info.value.basic is False
    assert info.value.status == 400
    assert headers_of(info.value, "edgeauth") == {}
    assert oauth_body(info.value)["error"] == "invalid_client"


# --- client_auth.secret_check ---------------------------------------------------------------


def _client(client_type: ClientType, secret_hash: str | None) -> Credential:
    return Credential(
        id="cred-1",
        consumer_id="consumer-1",
        name="App",
        client_id="c",
        secret_hash=secret_hash,
        redirect_uris=("https://app.example/cb",),
        client_type=client_type,
        tags=(),
        created_at=0,
    )


PUBLIC = _client(ClientType.PUBLIC, None)
CONFIDENTIAL = _client(ClientType.CONFIDENTIAL, "$pbkdf2-sha512$i=1,l=32$c2FsdA$aGFzaA")
CONFIDENTIAL_NO_HASH = _client(ClientType.CONFIDENTIAL, None)


@pytest.mark.parametrize(
    "creds",
    [
        ClientCredentials("c", (), False),
        ClientCredentials("c", ("",), False),  # an empty secret is no secret
    ],
)
def test_public_client_without_secret_needs_no_verification(creds: ClientCredentials) -> None:
    assert secret_check(creds, PUBLIC) is PUBLIC


@pytest.mark.parametrize(
    "creds", [ClientCredentials("c", ("s",), False), ClientCredentials("c", ("s", "raw"), True)]
)
def test_confidential_client_is_verified_against_its_own_hash(creds: ClientCredentials) -> None:
    assert secret_check(creds, CONFIDENTIAL) == SecretCheck(
        CONFIDENTIAL.secret_hash or "", CONFIDENTIAL
    )


@pytest.mark.parametrize(
    ("creds", "client"),
    [
        pytest.param(ClientCredentials("c", ("s",), False), None, id="unknown"),
        pytest.param(ClientCredentials("c", ("s", "raw"), True), None, id="unknown-basic"),
        pytest.param(ClientCredentials("c", ("s",), False), PUBLIC, id="public-with-secret"),
        pytest.param(ClientCredentials("c", ("s",), True), PUBLIC, id="public-with-secret-basic"),
        pytest.param(ClientCredentials("c", ("s",), False), CONFIDENTIAL_NO_HASH, id="no-hash"),
    ],
)
def test_a_sent_secret_that_cannot_match_is_verified_against_the_dummy(
    creds: ClientCredentials, client: Credential | None
) -> None:
    """Same PBKDF2 work as a wrong secret for a real client, and never a success."""
    assert secret_check(creds, client) == SecretCheck(crypto.DUMMY_HASH, None)


def test_the_dummy_hash_costs_what_a_real_one_costs() -> None:
    dummy = crypto.parse_phc(crypto.DUMMY_HASH)
    real = crypto.parse_phc(crypto.hash_secret("any"))
    assert dummy is not None
    assert real is not None
    assert dummy[:2] == real[:2] == (crypto.PBKDF2_ITERATIONS, crypto.PBKDF2_LENGTH)
    assert len(dummy[2]) == len(real[2])


@pytest.mark.parametrize(
    ("creds", "client", "status"),
    [
        (ClientCredentials("c", (), False), CONFIDENTIAL, 400),
        (ClientCredentials("c", ("",), False), CONFIDENTIAL, 400),
        (ClientCredentials("c", ("",), True), CONFIDENTIAL, 401),
        (ClientCredentials("c", (), False), None, 400),
        (ClientCredentials("c", ("",), True), None, 401),
    ],
)
def test_missing_secret_is_refused_at_once(
    creds: ClientCredentials, client: Credential | None, status: int
) -> None:
    """No secret, nothing to verify: refused without PBKDF2 whether or not the client exists."""
    with pytest.raises(InvalidClient) as info:
        secret_check(creds, client)
    assert info.value.basic is creds.basic
    assert info.value.status == status
    assert oauth_body(info.value) == {
        "error": "invalid_client",
        "error_description": "Invalid client authentication",
    }


# --- throttle -------------------------------------------------------------------------------

KEYS = keys_of("app", "192.0.2.7")


def test_throttle_allows_a_burst_of_limit_failures_then_one_per_window_share() -> None:
    throttle = Throttle(limit=3, window=60)
    for _ in range(2):
        assert throttle.failed(KEYS, now=100.0) == []
        assert throttle.retry_after(KEYS, now=100.0) is None
    assert throttle.failed(KEYS, now=100.0) == list(KEYS)  # the third failure throttles both
    assert throttle.retry_after(KEYS, now=100.0) == 20  # 60 s / 3
    assert throttle.retry_after(KEYS, now=119.5) == 1
    assert throttle.retry_after(KEYS, now=120.0) is None
    assert throttle.failed(KEYS, now=120.0) == list(KEYS)  # one more, then 20 s again
    assert throttle.retry_after(KEYS, now=120.0) == 20
    assert throttle.retry_after(KEYS, now=100.0 + 60 + 20) is None


def test_throttle_counts_each_key_on_its_own() -> None:
    throttle = Throttle(limit=2, window=10)
    throttle.failed(keys_of("app", "192.0.2.1"), now=0.0)
    throttle.failed(keys_of("app", "192.0.2.2"), now=0.0)  # the client_id's second failure
    assert throttle.retry_after(keys_of("app", "192.0.2.3"), now=0.0) == 5
    assert throttle.retry_after(keys_of("other", "192.0.2.1"), now=0.0) is None
    throttle.failed(keys_of("other", "192.0.2.1"), now=0.0)  # the address's second failure
    assert throttle.retry_after(keys_of("third", "192.0.2.1"), now=0.0) == 5


def test_throttle_failures_spread_over_the_window_never_throttle() -> None:
    throttle = Throttle(limit=10, window=60)
    assert all(throttle.failed(KEYS, now=6.0 * i) == [] for i in range(100))
    assert throttle.retry_after(KEYS, now=600.0) is None


def test_throttle_reports_a_key_once_when_it_becomes_throttled() -> None:
    throttle = Throttle(limit=1, window=60)
    assert throttle.failed(KEYS, now=0.0) == list(KEYS)
    assert throttle.failed(KEYS, now=1.0) == []  # a concurrent failure while throttled


def test_throttle_forgive_gives_back_one_failure() -> None:
    throttle = Throttle(limit=2, window=10)
    throttle.failed(KEYS, now=0.0)
    throttle.failed(KEYS, now=0.0)
    assert throttle.retry_after(KEYS, now=0.0) == 5
    throttle.forgive(KEYS)
    assert throttle.retry_after(KEYS, now=0.0) is None
    throttle.forgive([("client_id", "never-failed")])
    assert throttle.retry_after([("client_id", "never-failed")], now=0.0) is None


def test_throttle_off() -> None:
    throttle = Throttle(limit=0, window=60)
    for _ in range(100):
        assert throttle.failed(KEYS, now=0.0) == []
    assert throttle.retry_after(KEYS, now=0.0) is None
    assert len(throttle) == 0


def test_throttle_memory_is_bounded_and_forgets_the_least_recently_failed() -> None:
    throttle = Throttle(limit=1, window=60, max_keys=4)
    throttle.failed([("client_id", "victim")], now=0.0)
    for n in range(3):
        throttle.failed([("client_id", f"rotating-{n}")], now=0.0)
    throttle.failed([("client_id", "victim")], now=1.0)  # refreshed: now the most recent
    for n in range(3, 1000):
        throttle.failed([("client_id", f"rotating-{n}")], now=2.0)
        assert len(throttle) <= 4
    assert throttle.retry_after([("client_id", "rotating-999")], now=2.0) == 60
    assert throttle.retry_after([("client_id", "rotating-0")], now=2.0) is None  # forgotten


def test_long_client_ids_are_kept_as_a_digest() -> None:
    (kind, value), _ = keys_of("x" * 16_000, "192.0.2.7")
    assert kind == "client_id"
    assert len(value) <= MAX_KEY_CHARS + len("sha256:")
    assert keys_of("x" * 16_000, "a")[0] != keys_of("x" * 15_999, "a")[0]
    assert keys_of("short", "a")[0] == ("client_id", "short")


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),  # one host, one /64, one key
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("not an address", "not an address"),
    ],
)
def test_source_key(address: str, key: str) -> None:
    assert source_key(address) == key


# --- routes.says_http (X-Forwarded-Proto) ---------------------------------------------------


@pytest.mark.parametrize(
    ("protos", "expected"),
    [
        ([], False),
        (["https"], False),
        (["https", "https"], False),
        (["http"], True),
        ([" HTTP "], True),
        (["https, http"], True),
        (["https", "http"], True),
        (["wss"], False),
    ],
)
def test_says_http(protos: list[str], expected: bool) -> None:
    assert says_http(protos) is expected


# --- grants.provisioned: authenticated_userid ---------------------------------------------


@pytest.mark.parametrize("userid", ["", " ", "\t", "  \n ", "\u00a0", "\u3000"])
def test_blank_authenticated_userid_names_nobody(userid: str) -> None:
    assert given_userid({"authenticated_userid": userid}) is None
    with pytest.raises(errors.InvalidAuthenticatedUser):
        authenticated_userid({"authenticated_userid": userid})


@pytest.mark.parametrize("userid", ["1", "alice", " alice ", "\u200b"])
def test_authenticated_userid_is_kept_as_sent(userid: str) -> None:
    assert given_userid({"authenticated_userid": userid}) == userid
    assert authenticated_userid({"authenticated_userid": userid}) == userid


def test_missing_authenticated_userid() -> None:
    assert given_userid({}) is None
    with pytest.raises(errors.InvalidAuthenticatedUser):
        authenticated_userid({})


# --- scopes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        (None, ()),
        ("", ()),
        ("   ", ()),
        ("read", ("read",)),
        ("write read", ("write", "read")),
        ("read  write read", ("read", "write")),
        (" read\twrite ", ("read", "write")),
    ],
)
def test_parse(scope: str | None, expected: tuple[str, ...]) -> None:
    assert scopes.parse(scope) == expected


ALLOWED = ("read", "write")


@pytest.mark.parametrize(
    ("requested", "mandatory", "expected"),
    [
        (None, False, ()),
        ("", False, ()),
        ("read", False, ("read",)),
        ("write read", True, ("write", "read")),
        ("read read", True, ("read",)),
    ],
)
def test_grant(requested: str | None, mandatory: bool, expected: tuple[str, ...]) -> None:
    assert scopes.grant(requested, ALLOWED, mandatory) == expected


@pytest.mark.parametrize(
    ("requested", "mandatory", "allowed", "description"),
    [
        (None, True, ALLOWED, "You must specify a scope"),
        (" ", True, ALLOWED, "You must specify a scope"),
        ("admin", False, ALLOWED, "The requested scope is invalid or unknown"),
        ("read admin", True, ALLOWED, "The requested scope is invalid or unknown"),
        ("READ", False, ALLOWED, "The requested scope is invalid or unknown"),
        ("read", False, (), "The requested scope is invalid or unknown"),
    ],
)
def test_grant_refuses(
    requested: str | None, mandatory: bool, allowed: tuple[str, ...], description: str
) -> None:
    with pytest.raises(InvalidScope) as info:
        scopes.grant(requested, allowed, mandatory)
    assert info.value.status == 400
    assert oauth_body(info.value) == {"error": "invalid_scope", "error_description": description}


@pytest.mark.parametrize(
    ("requested", "granted", "expected"),
    [
        (None, ("read", "write"), ("read", "write")),
        ("", ("read", "write"), ("read", "write")),
        ("write", ("read", "write"), ("write",)),
        ("write read", ("read", "write"), ("write", "read")),
        (None, (), ()),
    ],
)
def test_narrow(requested: str | None, granted: tuple[str, ...], expected: tuple[str, ...]) -> None:
    assert scopes.narrow(requested, granted) == expected


@pytest.mark.parametrize(
    ("requested", "granted"), [("admin", ("read",)), ("read write", ("read",)), ("read", ())]
)
def test_narrow_never_widens(requested: str, granted: tuple[str, ...]) -> None:
    with pytest.raises(InvalidScope) as info:
        scopes.narrow(requested, granted)
    assert oauth_body(info.value) == {
        "error": "invalid_scope",
        "error_description": "The requested scope exceeds the scope originally granted",
    }


def test_join() -> None:
    assert scopes.join(("read", "write")) == "read write"
    assert scopes.join(()) == ""


# --- bearer ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], None),
        (["Bearer abc"], "abc"),
        (["bearer abc"], "abc"),
        (["BEARER abc"], "abc"),
        (["token abc"], "abc"),
        (["Token abc"], "abc"),
        (["  Bearer   abc  "], "abc"),
        (["Bearer"], None),
        (["Bearer "], None),
        ([""], None),
        (["Basic Y2xpZW50aWQ6eA=="], None),
        (["Bearerabc"], None),
        (["MAC abc"], None),
    ],
)
def test_from_header(values: list[str], expected: str | None) -> None:
    assert bearer.from_header(values) == expected


@pytest.mark.parametrize("values", [["Bearer a", "Bearer a"], ["Bearer a", "Basic eDp5"], ["", ""]])
def test_from_header_refuses_two_headers(values: list[str]) -> None:
    with pytest.raises(InvalidRequest) as info:
        bearer.from_header(values)
    assert oauth_body(info.value) == {
        "error": "invalid_request",
        "error_description": "More than one authorization header was sent",
    }


@pytest.mark.parametrize(
    ("raw_query", "token", "rest"),
    [
        ("", None, ""),
        ("a=1&b=2", None, "a=1&b=2"),
        ("access_token=abc", "abc", ""),
        ("a=1&access_token=abc&b=x%20y", "abc", "a=1&b=x%20y"),
        ("access_token=a%2Bb+c", "a+b c", ""),
        ("access_token=", None, ""),
        ("access_token", None, ""),
        ("x_access_token=1&access_tokens=2", None, "x_access_token=1&access_tokens=2"),
        ("x_access_token=1&access_token=t", "t", "x_access_token=1"),
    ],
)
def test_split_query_token(raw_query: str, token: str | None, rest: str) -> None:
    assert bearer.split_query_token(raw_query) == (token, rest)


@pytest.mark.parametrize(
    "raw_query", ["access_token=a&access_token=b", "access_token=a&x=1&access_token=a"]
)
def test_split_query_token_refuses_two_tokens(raw_query: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        bearer.split_query_token(raw_query)
    assert oauth_body(info.value) == {
        "error": "invalid_request",
        "error_description": "More than one access_token was sent",
    }


@pytest.mark.parametrize(
    ("header", "query", "expected"),
    [(None, None, None), ("h", None, "h"), (None, "q", "q")],
)
def test_choose(header: str | None, query: str | None, expected: str | None) -> None:
    assert bearer.choose(header, query) == expected


def test_choose_refuses_a_token_in_two_places() -> None:
    with pytest.raises(InvalidRequest) as info:
        bearer.choose("h", "h")
    assert oauth_body(info.value) == {
        "error": "invalid_request",
        "error_description": "The access token was sent in more than one place",
    }


# --- errors ---------------------------------------------------------------------------------

INVALID_TOKEN_TEXT = "The access token is invalid or has expired"
ERROR_TABLE: list[tuple[OAuthError, int, str, dict[str, str]]] = [
    (errors.InvalidRequest(), 400, "invalid_request", {}),
    (errors.InvalidProvisionKey(), 400, "invalid_provision_key", {}),
    (errors.InvalidAuthenticatedUser(), 400, "invalid_authenticated_userid", {}),
    (errors.InvalidMethod(), 405, "invalid_method", {"Allow": "POST"}),
    (errors.RequestTooLarge(), 413, "invalid_request", {}),
    (errors.InvalidClient(), 400, "invalid_client", {}),
    (
        errors.InvalidClient(basic=True),
        401,
        "invalid_client",
        {"WWW-Authenticate": 'Basic realm="r"'},
    ),
    (errors.ClientThrottled(7), 429, "invalid_client", {"Retry-After": "7"}),
    (errors.InvalidGrant(), 400, "invalid_grant", {}),
    (errors.UnauthorizedClient(), 400, "unauthorized_client", {}),
    (errors.UnsupportedGrantType(), 400, "unsupported_grant_type", {}),
    (errors.UnsupportedResponseType(), 400, "unsupported_response_type", {}),
    (errors.InvalidScope(), 400, "invalid_scope", {}),
    (errors.AccessDenied(), 400, "access_denied", {}),
    (errors.TemporarilyUnavailable(), 503, "temporarily_unavailable", {"Retry-After": "1"}),
    (errors.MissingToken(), 401, "invalid_request", {"WWW-Authenticate": 'Bearer realm="r"'}),
    (
        errors.InvalidToken(),
        401,
        "invalid_token",
        {
            "WWW-Authenticate": 'Bearer realm="r", error="invalid_token", '
            f'error_description="{INVALID_TOKEN_TEXT}"'
        },
    ),
    (
        errors.InsufficientScope(("read", "write")),
        403,
        "insufficient_scope",
        {"WWW-Authenticate": 'Bearer realm="r", error="insufficient_scope", scope="read write"'},
    ),
]


def _subclasses(cls: type[OAuthError]) -> Iterator[type[OAuthError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_the_error_table_covers_every_oauth_error() -> None:
    covered = {type(exc) for exc, *_ in ERROR_TABLE}
    assert set(_subclasses(OAuthError)) <= covered


@pytest.mark.parametrize(
    ("exc", "status", "code", "headers"), ERROR_TABLE, ids=lambda v: type(v).__name__
)
def test_oauth_error_status_code_and_headers(
    exc: OAuthError, status: int, code: str, headers: dict[str, str]
) -> None:
    assert exc.status == status
    assert exc.error == code
    assert headers_of(exc, "r") == headers
    body = oauth_body(exc)
    assert body == {"error": code, "error_description": exc.message}
    assert oauth_body(exc, state="xyz") == {**body, "state": "xyz"}
    assert oauth_body(exc, state="") == {**body, "state": ""}


@pytest.mark.parametrize(
    ("exc", "description"),
    [
        (errors.InvalidProvisionKey(), "Invalid provision_key"),
        (errors.InvalidAuthenticatedUser(), "Missing authenticated_userid parameter"),
        (errors.InvalidClient(), "Invalid client authentication"),
        (errors.InvalidToken(), INVALID_TOKEN_TEXT),
        (errors.MissingToken(), "The access token is missing"),
        (errors.AccessDenied(), "You must use HTTPS"),
        (errors.UnsupportedGrantType(), "Invalid grant_type"),
    ],
)
def test_descriptions_reuse_kongs_wording(exc: OAuthError, description: str) -> None:
    assert oauth_body(exc)["error_description"] == description


def test_realm_default_is_edgeauth() -> None:
    assert headers_of(errors.MissingToken()) == {"WWW-Authenticate": 'Bearer realm="edgeauth"'}
    assert headers_of(errors.InvalidClient(basic=True)) == {
        "WWW-Authenticate": 'Basic realm="edgeauth"'
    }


def test_oauth_body_carries_nothing_but_error_description_and_state() -> None:
    exc = errors.InsufficientScope(("write",))
    exc.__notes__ = ["internal detail"]
    body = oauth_body(exc, state="s")
    assert set(body) == {"error", "error_description", "state"}
    assert "write" not in body["error_description"]
    assert set(oauth_body(errors.InvalidClient(basic=True))) == {"error", "error_description"}
