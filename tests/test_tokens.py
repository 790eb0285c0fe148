"""deliver.tokens: VERP return paths, unsubscribe tokens, the token key file."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deliver.errors import ConfigError
from deliver.tokens import TokenSigner, b36, generate_token_key, load_token_key

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
ids = st.integers(min_value=0, max_value=2**63 - 1)


@pytest.fixture
def signer() -> TokenSigner:
    return TokenSigner(KEY)


def flip(ch: str) -> str:
    """Another character of the same alphabet class, so only the value changes."""
    return "b" if ch == "a" else "a"


# -------------------------------------------------------------------- b36 --
@pytest.mark.parametrize(
    ("n", "text"), [(0, "0"), (9, "9"), (10, "a"), (35, "z"), (36, "10"), (12345, "9ix")]
)
def test_b36(n: int, text: str) -> None:
    assert b36(n) == text


@given(ids)
def test_b36_round_trips(n: int) -> None:
    text = b36(n)
    assert re.fullmatch(r"[0-9a-z]+", text)
    assert int(text, 36) == n


def test_b36_refuses_negative_numbers() -> None:
    with pytest.raises(ValueError):
        b36(-1)


# ------------------------------------------------------------------- VERP --
@given(message_id=ids)
def test_verp_round_trips(message_id: int) -> None:
    signer = TokenSigner(KEY)
    local = signer.verp_local("bounce", message_id)
    assert local == local.lower()
    assert re.fullmatch(r"bounce-[0-9a-z]+-[0-9a-f]{10}", local)
    assert signer.parse_verp(local) == message_id


def test_verp_survives_an_mta_that_changes_case(signer: TokenSigner) -> None:
    local = signer.verp_local("bounce", 4242)
    assert signer.parse_verp(local.upper()) == 4242


def test_verp_prefix_may_contain_dashes(signer: TokenSigner) -> None:
    local = signer.verp_local("my-bounces", 77)
    assert local.startswith("my-bounces-")
    assert signer.parse_verp(local) == 77


def test_verp_from_another_key_is_rejected(signer: TokenSigner) -> None:
    local = TokenSigner(OTHER_KEY).verp_local("bounce", 4242)
    assert signer.parse_verp(local) is None


def test_verp_with_another_message_id_is_rejected(signer: TokenSigner) -> None:
    _, _, mac = signer.verp_local("bounce", 4242).rpartition("-")
    assert signer.parse_verp(f"bounce-{b36(4243)}-{mac}") is None


@pytest.mark.parametrize("position", range(8))
def test_verp_with_an_altered_mac_is_rejected(signer: TokenSigner, position: int) -> None:
    local = signer.verp_local("bounce", 4242)
    i = len(local) - 8 + position
    altered = local[:i] + flip(local[i]) + local[i + 1 :]
    assert altered != local
    assert signer.parse_verp(altered) is None


@pytest.mark.parametrize(
    "forged",
    [
        "",
        "bounce",
        "bounce-1",
        "bounce-1-",
        "bounce-1-abcdefgh",
        "bounce-3b-abcdefg",
        "bounce-3b-abcdefghi",
        "bounce-3b-abcdefg1",
        "jane.doe",
        "-3b-abcdefgh",
    ],
)
def test_forged_verp_is_rejected(signer: TokenSigner, forged: str) -> None:
    assert signer.parse_verp(forged) is None


# ------------------------------------------------------------ unsubscribe --
@given(campaign_id=ids, contact_id=ids)
def test_unsubscribe_token_round_trips(campaign_id: int, contact_id: int) -> None:
    signer = TokenSigner(KEY)
    token = signer.unsubscribe(campaign_id, contact_id)
    assert token == token.lower()
    assert re.fullmatch(r"[0-9a-z]+\.[0-9a-z]+\.[0-9a-f]{16}", token)
    assert signer.parse_unsubscribe(token) == (campaign_id, contact_id)


def test_unsubscribe_token_is_per_recipient(signer: TokenSigner) -> None:
    assert signer.unsubscribe(7, 1) != signer.unsubscribe(7, 2)
    assert signer.unsubscribe(7, 1) != signer.unsubscribe(8, 1)
    assert signer.unsubscribe(7, 1) == TokenSigner(KEY).unsubscribe(7, 1)  # deterministic


def test_unsubscribe_token_cannot_be_moved_to_another_contact(signer: TokenSigner) -> None:
    c, _, mac = signer.unsubscribe(7, 1).split(".")
    assert signer.parse_unsubscribe(f"{c}.{b36(2)}.{mac}") is None
    assert signer.parse_unsubscribe(f"{b36(8)}.{b36(1)}.{mac}") is None


def test_unsubscribe_token_from_another_key_is_rejected(signer: TokenSigner) -> None:
    assert signer.parse_unsubscribe(TokenSigner(OTHER_KEY).unsubscribe(7, 1)) is None


@pytest.mark.parametrize("position", range(16))
def test_unsubscribe_with_an_altered_mac_is_rejected(signer: TokenSigner, position: int) -> None:
    token = signer.unsubscribe(7, 1)
    i = len(token) - 16 + position
    altered = token[:i] + flip(token[i]) + token[i + 1 :]
    assert signer.parse_unsubscribe(altered) is None


@pytest.mark.parametrize(
    "forged",
    [
        "",
        "7.1",
        "7.1.",
        "7.1.abcdefghabcdefgh",
        "7..abcdefghabcdefgh",
        "a.b.c.d",
        "7.1.abcdefghabcdefg",
        "7.1.abcdefghabcdefgh0",
    ],
)
def test_forged_unsubscribe_token_is_rejected(signer: TokenSigner, forged: str) -> None:
    assert signer.parse_unsubscribe(forged) is None


def test_verp_and_unsubscribe_macs_are_not_interchangeable(signer: TokenSigner) -> None:
    # a MAC made for one purpose must not validate the other
    verp_mac = signer.verp_local("bounce", 5).rpartition("-")[2]
    unsub_mac = signer.unsubscribe(5, 5).rpartition(".")[2]
    assert verp_mac != unsub_mac[:8]
    assert signer.message_id_tag(5) != verp_mac


def test_message_id_tag(signer: TokenSigner) -> None:
    tag = signer.message_id_tag(99)
    assert re.fullmatch(r"[0-9a-f]{10}", tag)
    assert tag != signer.message_id_tag(100)
    assert tag != TokenSigner(OTHER_KEY).message_id_tag(99)


def test_repr_hides_the_key(signer: TokenSigner) -> None:
    assert repr(signer) == "TokenSigner(<key hidden>)"
    assert KEY.hex() not in repr(signer) and str(KEY) not in str(signer)


# ---------------------------------------------------------------- key file --
def test_key_file_is_written_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "token.key"
    generate_token_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = load_token_key(path)
    assert len(key) == 32
    assert path.read_text() == key.hex() + "\n"


def test_key_file_is_kept_if_present(tmp_path: Path) -> None:
    path = tmp_path / "token.key"
    generate_token_key(path)
    first = path.read_bytes()
    generate_token_key(path)
    assert path.read_bytes() == first
    other = tmp_path / "other.key"
    generate_token_key(other)
    assert other.read_bytes() != first  # fresh randomness each time


def test_no_key_file_configured() -> None:
    with pytest.raises(ConfigError, match="sokures init"):
        load_token_key(None)


def test_missing_key_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.key"
    with pytest.raises(ConfigError) as info:
        load_token_key(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "content",
    [
        "this is not hex but it is a secret",
        "zz" * 32,
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeef",  # odd length
    ],
)
def test_unusable_key_file_does_not_print_the_key(tmp_path: Path, content: str) -> None:
    path = tmp_path / "token.key"
    path.write_text(content + "\n")
    with pytest.raises(ConfigError) as info:
        load_token_key(path)
    message = str(info.value)
    assert str(path) in message
    assert content not in message
    assert content[:8] not in message


def test_short_key_is_refused_without_printing_it(tmp_path: Path) -> None:
    path = tmp_path / "token.key"
    path.write_text("0badc0ffee\n")
    with pytest.raises(ConfigError, match="shorter than 16 bytes") as info:
        load_token_key(path)
    assert "0badc0ffee" not in str(info.value)


def test_unreadable_key_file(tmp_path: Path) -> None:
    path = tmp_path / "token.key"
    path.mkdir()  # unreadable as a file, even for root
    with pytest.raises(ConfigError, match="cannot read the token key") as info:
        load_token_key(path)
    assert str(path) in str(info.value)
