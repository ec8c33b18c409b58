"""Tokens, digests, Kong-compatible secret hashes and the token cache as plain values
(design §4.1, §6, §7, §8)."""

from __future__ import annotations

import base64
import gc
import hashlib
import math
import re

import pytest

from edgeauth import crypto
from edgeauth.cache import CLIENT_ID, CONSUMER, EXPIRES_AT, IDENTITY, SCOPES, Entry, TokenCache
from edgeauth.models import TokenRecord, TokenView
from edgeauth.validation import entry_for

KONG_SECRET = "tofu"
KONG_SALT_B64 = "YSBsaXR0ZSBiaXQsIGp1c3QgYSBsaXR0bGUgYml0"
KONG_HASH = (
    "$pbkdf2-sha512$i=10000,l=32$YSBsaXR0ZSBiaXQsIGp1c3QgYSBsaXR0bGUgYml0"
    "$z6ysNworexAhDELywIDi0ba0B0T7F/MBZ6Ige9lWRYI"
)
URLSAFE = re.compile(r"[A-Za-z0-9_-]+")


# --- PBKDF2 secrets in Kong's PHC format ---------------------------------------------------


def test_kong_vector_verifies() -> None:
    assert crypto.verify_secret(KONG_SECRET, KONG_HASH) is True


def test_hash_secret_with_kongs_salt_reproduces_kongs_string_exactly() -> None:
    salt = base64.b64decode(KONG_SALT_B64 + "=" * (-len(KONG_SALT_B64) % 4))
    assert salt == b"a litte bit, just a little bit"
    assert crypto.hash_secret(KONG_SECRET, salt=salt) == KONG_HASH


def test_hash_secret_round_trips_with_a_fresh_salt_each_time() -> None:
    first = crypto.hash_secret("s3cr3t:with%colon")
    second = crypto.hash_secret("s3cr3t:with%colon")
    assert first != second  # a fresh salt
    for encoded in (first, second):
        assert encoded.startswith("$pbkdf2-sha512$i=10000,l=32$")
        assert "=" not in encoded.split("$", 3)[3]  # unpadded base64, as Kong writes it
        assert crypto.verify_secret("s3cr3t:with%colon", encoded) is True
        assert crypto.verify_secret("s3cr3t:with%colon ", encoded) is False
    parsed = crypto.parse_phc(first)
    assert parsed is not None
    iterations, length, salt, derived = parsed
    assert (iterations, length, len(salt), len(derived)) == (10_000, 32, crypto.SALT_BYTES, 32)


def test_hash_secret_honours_the_iteration_count() -> None:
    encoded = crypto.hash_secret("x", salt=b"0123456789abcdef", iterations=1000)
    assert encoded.startswith("$pbkdf2-sha512$i=1000,l=32$")
    expected = hashlib.pbkdf2_hmac("sha512", b"x", b"0123456789abcdef", 1000, 32)
    assert crypto.parse_phc(encoded) == (1000, 32, b"0123456789abcdef", expected)
    assert crypto.verify_secret("x", encoded) is True


@pytest.mark.parametrize("secret", ["", "Tofu", "tofu ", " tofu", "tof", "tofux", "t\u00f6fu"])
def test_wrong_secret_is_false(secret: str) -> None:
    assert crypto.verify_secret(secret, KONG_HASH) is False


_SALT, _HASH = KONG_HASH.split("$")[3:5]


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "tofu",
        "$",
        "$$$$",
        "$pbkdf2-sha512$",
        f"$pbkdf2-sha256$i=10000,l=32${_SALT}${_HASH}",
        f"pbkdf2-sha512$i=10000,l=32${_SALT}${_HASH}",
        f"$pbkdf2-sha512$i=10000,l=32${_SALT}${_HASH}$",
        f"$pbkdf2-sha512$i=10000,l=32${_SALT}",
        f"$pbkdf2-sha512$i=10000${_SALT}${_HASH}",
        f"$pbkdf2-sha512$l=32${_SALT}${_HASH}",
        f"$pbkdf2-sha512$i=abc,l=32${_SALT}${_HASH}",
        f"$pbkdf2-sha512$i=10000,l=x${_SALT}${_HASH}",
        f"$pbkdf2-sha512$i=10000,l=32,junk${_SALT}${_HASH}",
        f"$pbkdf2-sha512$i=10000,l=64${_SALT}${_HASH}",
        f"$pbkdf2-sha512$i=10000,l=0${_SALT}$",
        f"$pbkdf2-sha512$i=0,l=32${_SALT}${_HASH}",
        f"$pbkdf2-sha512$i=-1,l=32${_SALT}${_HASH}",
        f"$pbkdf2-sha512$i=100000000,l=32${_SALT}${_HASH}",
        f"$pbkdf2-sha512$i=10000,l=32$!!!!${_HASH}",
        f"$pbkdf2-sha512$i=10000,l=32${_SALT}$not*base64",
        f"$pbkdf2-sha512$i=10000,l=32${_SALT}${_HASH[:-1]}",
        f"$pbkdf2-sha512$i=10000,l=32${_SALT}$\u00e9\u00e9\u00e9\u00e9",
        f"$pbkdf2-sha512$i=10000,l=32${_SALT}${_HASH}".upper(),
    ],
)
def test_malformed_phc_strings_are_false_not_exceptions(encoded: str) -> None:
    assert crypto.parse_phc(encoded) is None
    assert crypto.verify_secret(KONG_SECRET, encoded) is False


def test_same_is_plain_equality() -> None:
    assert crypto.same("pk-abc", "pk-abc") is True
    assert crypto.same("pk-abc", "pk-abd") is False
    assert crypto.same("pk-abc", "pk-ab") is False
    assert crypto.same("", "") is True


# --- tokens and digests --------------------------------------------------------------------


def test_mint_is_256_bits_of_urlsafe_base64() -> None:
    minted = [crypto.mint() for _ in range(200)]
    assert len(set(minted)) == len(minted)
    for token in minted:
        assert len(token) == 43
        assert URLSAFE.fullmatch(token), token
        assert len(base64.urlsafe_b64decode(token + "=")) == 32
    # Shape of entropy: across 200 tokens, every position takes many values (the 43rd
    # character carries only 4 bits: 256 = 42 * 6 + 4).
    assert len({token[42] for token in minted}) > 8
    for position in range(42):
        assert len({token[position] for token in minted}) > 20


def test_digest_is_sha256_of_the_utf8_token() -> None:
    for token in ("abc", crypto.mint(), "t\u00f6ken", ""):
        assert crypto.digest(token) == hashlib.sha256(token.encode()).digest()
        assert len(crypto.digest(token)) == 32
    assert crypto.digest("a") != crypto.digest("b")


def test_prefix_is_short() -> None:
    token = crypto.mint()
    assert crypto.prefix(token) == token[: crypto.PREFIX_CHARS]
    assert crypto.PREFIX_CHARS == 6


# --- SecretMemo ----------------------------------------------------------------------------


def test_secret_memo_key_depends_on_client_secret_and_stored_hash() -> None:
    key = crypto.SecretMemo.key("clientid", "secret", KONG_HASH)
    assert key == crypto.SecretMemo.key("clientid", "secret", KONG_HASH)
    assert len(key) == 32
    others = {
        crypto.SecretMemo.key("clientid2", "secret", KONG_HASH),
        crypto.SecretMemo.key("clientid", "secret2", KONG_HASH),
        crypto.SecretMemo.key("clientid", "secret", KONG_HASH + "x"),
        # no ambiguity from where the separator falls
        crypto.SecretMemo.key("client", "idsecret", KONG_HASH),
    }
    assert key not in others
    assert len(others) == 4
    assert b"secret" not in key


def test_secret_memo_remembers_and_is_bounded() -> None:
    memo = crypto.SecretMemo(max_entries=3)
    keys = [crypto.SecretMemo.key(f"client{i}", "s", KONG_HASH) for i in range(5)]
    for key in keys[:3]:
        memo.add(key)
    assert all(key in memo for key in keys[:3])
    assert keys[3] not in memo
    memo.add(keys[3])
    memo.add(keys[4])
    assert [key in memo for key in keys] == [False, False, True, True, True]
    memo.clear()
    assert not any(key in memo for key in keys)


# --- TokenCache ----------------------------------------------------------------------------

NOW = 1_000_000.0


def _entry(expires_at: float = NOW + 60, service: str | None = "events") -> Entry:
    return (
        expires_at,
        service,
        ("read",),
        (("X-Consumer-Username", "ClientApp"),),
        "ClientApp",
        "clientid",
    )


def _d(name: str) -> bytes:
    return crypto.digest(name)


def test_get_put_and_miss() -> None:
    cache = TokenCache(10, 2.0)
    assert cache.get(_d("a"), NOW) is None
    entry = _entry()
    cache.put(_d("a"), entry)
    assert cache.get(_d("a"), NOW) == entry
    assert cache.get(_d("b"), NOW) is None
    assert len(cache) == 1


def test_an_entry_never_outlives_its_token() -> None:
    cache = TokenCache(10, 2.0)
    cache.put(_d("a"), _entry(expires_at=NOW + 5))
    assert cache.get(_d("a"), NOW + 4.999) is not None
    assert cache.get(_d("a"), NOW + 5) is None  # expiry is exclusive
    assert len(cache) == 0  # dropped on that hit
    assert cache.get(_d("a"), NOW) is None  # and gone for good


def test_a_never_expiring_entry_stays() -> None:
    cache = TokenCache(10, 2.0)
    cache.put(_d("a"), _entry(expires_at=math.inf))
    assert cache.get(_d("a"), NOW + 10**9) is not None


def test_evict_forgets_only_the_given_digests() -> None:
    cache = TokenCache(10, 2.0)
    for name in "abc":
        cache.put(_d(name), _entry())
    cache.evict([_d("a"), _d("c"), _d("unknown")])
    assert cache.get(_d("a"), NOW) is None
    assert cache.get(_d("b"), NOW) is not None
    assert cache.get(_d("c"), NOW) is None
    assert len(cache) == 1
    cache.evict([])
    assert len(cache) == 1


def test_clear_empties_both_maps() -> None:
    cache = TokenCache(10, 2.0)
    cache.put(_d("a"), _entry())
    cache.put_unknown(_d("x"), NOW)
    cache.clear()
    assert len(cache) == 0
    assert cache.get(_d("a"), NOW) is None
    assert cache.is_unknown(_d("x"), NOW) is False


def test_lru_bound_keeps_recently_hit_entries() -> None:
    cache = TokenCache(3, 2.0)
    for name in "abc":
        cache.put(_d(name), _entry())
    assert cache.get(_d("a"), NOW) is not None  # a is now the most recent
    cache.put(_d("d"), _entry())  # evicts b, the least recently used
    assert len(cache) == 3
    assert cache.get(_d("b"), NOW) is None
    assert cache.get(_d("c"), NOW) is not None
    cache.put(_d("e"), _entry())  # evicts a (c was just hit)
    assert cache.get(_d("a"), NOW) is None
    assert all(cache.get(_d(name), NOW) is not None for name in "cde")
    assert len(cache) == 3


def test_putting_a_cached_digest_again_replaces_it_without_evicting() -> None:
    cache = TokenCache(2, 2.0)
    cache.put(_d("a"), _entry())
    cache.put(_d("b"), _entry())
    newer = _entry(expires_at=NOW + 120)
    cache.put(_d("a"), newer)
    assert len(cache) == 2
    assert cache.get(_d("a"), NOW) == newer
    assert cache.get(_d("b"), NOW) is not None


def test_negative_cache_remembers_unknown_digests_for_its_ttl() -> None:
    cache = TokenCache(10, 2.0)
    assert cache.is_unknown(_d("x"), NOW) is False
    cache.put_unknown(_d("x"), NOW)
    assert cache.is_unknown(_d("x"), NOW) is True
    assert cache.is_unknown(_d("x"), NOW + 1.999) is True  # never less than the TTL
    assert cache.is_unknown(_d("x"), NOW + 2.5) is False  # expired by 1.25 TTL, and forgotten
    assert cache.is_unknown(_d("x"), NOW) is False
    assert len(cache) == 0  # the negative map is not counted as cached tokens


def test_negative_entries_made_together_expire_spread_over_a_quarter_ttl() -> None:
    cache = TokenCache(10, 2.0, max_negative=1000)
    for i in range(1000):
        cache.put_unknown(_d(str(i)), NOW)
    alive = [sum(cache.is_unknown(_d(str(i)), NOW + t) for i in range(1000)) for t in (2.2, 2.4)]
    assert 0 < alive[1] < alive[0] < 1000


def test_negative_ttl_zero_remembers_nothing() -> None:
    cache = TokenCache(10, 0)
    cache.put_unknown(_d("x"), NOW)
    assert cache.is_unknown(_d("x"), NOW) is False


def test_negative_cache_is_bounded() -> None:
    cache = TokenCache(10, 2.0, max_negative=3)
    for name in "wxyz":
        cache.put_unknown(_d(name), NOW)
    assert [cache.is_unknown(_d(name), NOW) for name in "wxyz"] == [False, True, True, True]
    cache.put_unknown(_d("x"), NOW + 1)  # refreshing a known one evicts nothing
    assert [cache.is_unknown(_d(name), NOW + 1) for name in "xyz"] == [True, True, True]


def test_a_validated_token_leaves_the_negative_cache() -> None:
    cache = TokenCache(10, 2.0)
    cache.put_unknown(_d("a"), NOW)
    cache.put(_d("a"), _entry())
    assert cache.is_unknown(_d("a"), NOW) is False
    assert cache.get(_d("a"), NOW) is not None


def _view(name: str) -> TokenView:
    token = crypto.mint()
    record = TokenRecord(
        id=f"id-{name}",
        access_digest=crypto.digest(token),
        refresh_digest=None,
        prefix=crypto.prefix(token),
        credential_id=f"cred-{name}",
        service="events",
        authenticated_userid=f"user-{name}",
        scope=" ".join(["read", "write"]),
        family_id=f"family-{name}",
        created_at=NOW,
        expires_at=NOW + 7200,
        refresh_expires_at=None,
    )
    return TokenView(
        token=record,
        client_id=f"client-{name}",
        consumer_id=f"consumer-{name}",
        username=f"User{name}",
        custom_id=None,
    )


def test_cached_entries_are_untracked_by_the_gc() -> None:
    cache = TokenCache(100, 2.0)
    for i in range(50):
        cache.put(_d(str(i)), entry_for(_view(str(i))))
    # CPython untracks a tuple during a collection only once all it holds is untracked, and
    # it examines an entry before the tuples nested in it, so each full collection peels
    # one level: header pairs, then the identity tuple, then the entry (nesting depth 3).
    for _ in range(3):
        gc.collect()
    for i in range(50):
        entry = cache.get(_d(str(i)), NOW)
        assert entry is not None
        assert entry[CONSUMER] == f"User{i}"
        assert entry[CLIENT_ID] == f"client-{i}"
        assert entry[SCOPES] == ("read", "write")
        assert entry[EXPIRES_AT] == NOW + 7200
        assert gc.is_tracked(entry) is False
        assert gc.is_tracked(entry[SCOPES]) is False
        assert gc.is_tracked(entry[IDENTITY]) is False
        assert not any(gc.is_tracked(header) for header in entry[IDENTITY])
