"""Seed lists: every shipped file loads, the lab's matches the lab, and each mistake is
reported as file:line: key: reason, with no secret ever in a message or repr."""

from __future__ import annotations

from pathlib import Path

import pytest

from deliver.errors import ConfigError, InputError
from probes.seedlist import Seed, SeedList, load_seedlist, seeds_to_toml

SEEDLISTS = Path(__file__).resolve().parent.parent / "seedlists"
LAB_ADDRESSES = {"gmail": "127.0.0.21", "yahoo": "127.0.0.22", "outlook": "127.0.0.23",
                 "others": "127.0.0.24"}  # fmt: skip

ONE_SEED = """\
[[seed]]
address = "a@gmail.com"
provider = "gmail"
imap_host = "imap.gmail.com"
secret_env = "A_PASSWORD"
"""


def write(tmp_path: Path, text: str, name: str = "x.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path, *, lab_dir: Path | None = None) -> str:
    with pytest.raises(InputError) as caught:
        load_seedlist(path, lab_dir=lab_dir)
    return str(caught.value)


@pytest.mark.parametrize("path", sorted(SEEDLISTS.glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_seed_list_loads(path: Path, tmp_path: Path) -> None:
    seeds = load_seedlist(path, lab_dir=tmp_path)
    assert seeds.seeds and seeds.path == path
    for seed in seeds.seeds:
        assert seed.secret_env.isupper()
        assert seed.tls == "implicit" or seed.imap_host.startswith("127.")


def test_the_shipped_examples_are_the_three_providers() -> None:
    names = {p.name for p in SEEDLISTS.glob("*.toml")}
    assert {"lab.toml", "gmail.example.toml", "yahoo.example.toml",
            "outlook.example.toml"} <= names  # fmt: skip
    outlook = load_seedlist(SEEDLISTS / "outlook.example.toml")
    assert {s.auth for s in outlook.seeds} == {"xoauth2"}
    assert {s.imap_host for s in outlook.seeds} == {"outlook.office365.com"}
    yahoo = load_seedlist(SEEDLISTS / "yahoo.example.toml")
    assert {(s.imap_host, s.imap_port) for s in yahoo.seeds} == {("imap.mail.yahoo.com", 993)}


def test_the_lab_list_matches_the_lab(tmp_path: Path) -> None:
    lab = load_seedlist(SEEDLISTS / "lab.toml", lab_dir=tmp_path)
    assert lab.name == "lab"
    assert lab.providers() == ("gmail", "yahoo", "outlook", "others")
    counts = {p: len(lab.for_provider(p)) for p in lab.providers()}
    assert counts == {"gmail": 2, "yahoo": 3, "outlook": 3, "others": 1}
    addresses = {s.address for s in lab.seeds}
    assert {"junk.seed@outlook.com", "blackhole.seed@yahoo.com"} <= addresses
    for seed in lab.seeds:
        assert seed.imap_host == LAB_ADDRESSES[seed.provider]
        assert (seed.imap_port, seed.tls, seed.auth) == (10143, "none", "password")
        assert seed.secret_env == "SOKURES_LAB_PASSWORD"
        assert seed.imap_user == seed.address
        local, domain = seed.address.split("@")
        assert seed.maildir == tmp_path / "mail" / domain / local / "Maildir"
    assert {s.domain for s in lab.for_provider("others")} == {"example.net"}


def test_defaults_fill_in_and_ports_follow_tls(tmp_path: Path) -> None:
    path = write(tmp_path, """\
description = "two"
[defaults]
provider = "yahoo"
imap_host = "imap.mail.yahoo.com"
secret_env = "Y"

[[seed]]
address = "a@yahoo.com"

[[seed]]
address = "b@yahoo.com"
imap_user = "b-login"
tls = "starttls"
auth = "xoauth2"
maildir = "boxes/b"
""", "my-seeds.toml")  # fmt: skip
    seeds = load_seedlist(path)
    assert (seeds.name, seeds.description) == ("my-seeds", "two")
    a, b = seeds.seeds
    assert a == Seed("a@yahoo.com", "yahoo", "imap.mail.yahoo.com", 993, "a@yahoo.com", "Y")
    assert (b.imap_port, b.imap_user, b.tls, b.auth) == (143, "b-login", "starttls", "xoauth2")
    assert b.maildir == tmp_path / "boxes" / "b"  # relative to the seed list's directory


def test_the_secret_comes_from_the_named_variable_and_never_shows() -> None:
    seed = Seed("a@gmail.com", "gmail", "imap.gmail.com", 993, "a@gmail.com", "SEED_A_PW")
    assert seed.secret({"SEED_A_PW": "hunter2-secret"}) == "hunter2-secret"
    assert "hunter2" not in repr(seed)
    with pytest.raises(ConfigError) as caught:
        seed.secret({})
    assert str(caught.value) == (
        "seed a@gmail.com: environment variable SEED_A_PW is not set"
    )  # fmt: skip
    with pytest.raises(ConfigError, match="SEED_A_PW is empty"):
        seed.secret({"SEED_A_PW": ""})


def seeds(n: int, **overrides: object) -> str:
    """A list of n seeds, six lines each (seed[i]'s header on line 6i+1, then address,
    provider, imap_host, secret_env); ``overrides`` are keys added to the last seed, from
    line 6i+6 on."""
    out = []
    for i in range(n):
        out += ["[[seed]]", f'address = "s{i}@gmail.com"', 'provider = "gmail"',
                'imap_host = "imap.gmail.com"', 'secret_env = "S"']  # fmt: skip
        if i == n - 1:
            out += [f"{k} = {v!r}".replace("'", '"') for k, v in overrides.items()]
        out.append("")
    return "\n".join(out)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the key's own line, within the third [[seed]] block
        (seeds(3, tls="tls1.3"), "18: seed[2].tls: must be one of implicit, starttls, none"),
        (seeds(2, auth="oauth"), "12: seed[1].auth: must be one of password, xoauth2"),
        (seeds(1, imap_port=0), "6: seed[0].imap_port: must be a port number (1-65535)"),
        (seeds(1, imap_port="993"), "6: seed[0].imap_port: must be a port number (1-65535)"),
        (seeds(1, provider2="x"), "6: seed[0].provider2: unknown key (did you mean 'provider'?)"),
        (seeds(1, imap_hots="x"), "6: seed[0].imap_hots: unknown key (did you mean 'imap_host'?)"),
        (seeds(1).replace('secret_env = "S"', 'secret_env = "MY-VAR"'),
         "5: seed[0].secret_env: must be the name of an environment variable"),
        (seeds(2).replace('provider = "gmail"\nimap_host = "imap.gmail.com"\nsecret_env = "S"\n\n',
                          'provider = "Gmail"\nimap_host = "imap.gmail.com"\nsecret_env = "S"\n\n',
                          1),
         "3: seed[0].provider: must be a lowercase name"),
        (seeds(1).replace("s0@gmail.com", "not-an-address"),
         "2: seed[0].address: not an email address 'not-an-address'"),
        (seeds(1).replace('imap_host = "imap.gmail.com"', 'imap_host = "imap.gmail.com:993"'),
         "4: seed[0].imap_host: not a host name or IP address: 'imap.gmail.com:993'; "
         "put the port in imap_port"),
        # a missing key: the line of its [[seed]] header
        (seeds(2).replace('address = "s1@gmail.com"\n', ""),
         "7: seed[1]: missing address (required)"),
        (seeds(3).replace("s2@gmail.com", "S0@Gmail.com"),
         "14: seed[2].address: S0@Gmail.com is listed twice (also seed[0])"),
        # plaintext IMAP only on loopback
        (seeds(1, tls="none"), "6: seed[0].tls: none (no encryption) is only for loopback hosts,"
                               " not imap.gmail.com"),
        ('nmae = "x"\n' + seeds(1), "1: nmae: unknown key (did you mean 'name'?)"),
        ("[defaults]\nzzz = 1\n" + seeds(1),
         "2: defaults.zzz: unknown key (known: address, provider, imap_host, imap_port,"),
        ("name = 3\n" + seeds(1), "1: name: must be a non-empty string"),
        ('name = "x"\n', "no seeds: add at least one [[seed]] table"),
        ("seed = []\n", "1: seed: no seeds: add at least one [[seed]] table"),
        ("seed = 1\n", "1: seed: must be an array of tables ([[seed]])"),
        ('[defaults]\naddress = "a@b.example"\n' + seeds(1),
         "2: defaults.address: every seed has its own address: no default"),
        # a bad default is reported where it is written, not on every seed
        ('[defaults]\ntls = "ssl"\n\n' + seeds(2),
         "2: defaults.tls: must be one of implicit, starttls, none"),
        # TOML syntax errors keep tomllib's line
        (seeds(1) + "tls = \n", "6: invalid TOML: Invalid value"),
    ],
)  # fmt: skip
def test_mistakes_name_file_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    message = error_of(path)
    if expected[0].isdigit():
        assert message.startswith(f"{path}:{expected}"), message
    else:
        assert message.startswith(f"{path}: {expected}"), message


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (seeds(1, password="hunter2-secret"), ":6: seed[0].password"),
        (seeds(2, imap_token="hunter2-secret"), ":12: seed[1].imap_token"),
        ('[defaults]\nSecret = "hunter2-secret"\n' + seeds(1), ":2: defaults.Secret"),
        ('token = "hunter2-secret"\n' + seeds(1), ":1: token"),
        ('[defaults.extra]\npasswd = "hunter2-secret"\n' + seeds(1), ": defaults.extra.passwd"),
    ],
)
def test_a_secret_in_the_file_is_refused_without_being_repeated(
    tmp_path: Path, text: str, where: str
) -> None:
    path = write(tmp_path, text)
    message = error_of(path)
    assert message == (
        f"{path}{where}: refused: put the secret in an environment variable and name it in"
        " secret_env"
    )
    assert "hunter2" not in message


@pytest.mark.parametrize("host", ["127.0.0.21", "localhost", "::1", "[::1]", "lab.localhost"])
def test_plaintext_imap_is_allowed_on_loopback(tmp_path: Path, host: str) -> None:
    text = seeds(1, tls="none").replace('"imap.gmail.com"', f'"{host}"')
    (seed,) = load_seedlist(write(tmp_path, text)).seeds
    assert (seed.tls, seed.imap_port) == ("none", 143)


def test_lab_dir_placeholder_needs_a_lab_dir(tmp_path: Path) -> None:
    path = write(tmp_path, seeds(1, maildir="{lab_dir}/mail/gmail.com/s0/Maildir"))
    assert error_of(path) == (
        f"{path}:6: seed[0].maildir: uses {{lab_dir}} but no lab directory was given"
        " (this list is for the lab)"
    )
    (seed,) = load_seedlist(path, lab_dir=tmp_path / "lab").seeds
    assert seed.maildir == tmp_path / "lab" / "mail" / "gmail.com" / "s0" / "Maildir"
    other = write(tmp_path, seeds(1, maildir="{home}/Maildir"), "y.toml")
    assert error_of(other, lab_dir=tmp_path).endswith("unknown placeholder {home} (only {lab_dir})")


def test_an_unreadable_file_is_an_input_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    assert error_of(missing) == f"{missing}: cannot read: No such file or directory"
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    assert error_of(binary) == f"{binary}: not UTF-8 text"


def test_seeds_to_toml_writes_a_list_that_loads_back_the_same(tmp_path: Path) -> None:
    written = (
        Seed("a@gmail.com", "gmail", "127.0.0.21", 10143, "a@gmail.com", "LAB_PW",
             tls="none", maildir=tmp_path / 'odd "dir"\\x' / "Maildir"),
        Seed("b@outlook.com", "outlook", "outlook.office365.com", 993, "b-user", "B_TOKEN",
             auth="xoauth2"),
    )  # fmt: skip
    text = seeds_to_toml(written, 'lab "ports"', description="made\nby a test")
    path = write(tmp_path, text)
    loaded = load_seedlist(path)
    assert loaded == SeedList('lab "ports"', "made\nby a test", written, path)
    assert load_seedlist(write(tmp_path, ONE_SEED, "one.toml")).seeds[0].imap_port == 993
