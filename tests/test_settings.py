"""deliver.settings.load_settings: defaults, the file, the environment, overrides, errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from deliver.errors import ConfigError
from deliver.settings import (
    DEFAULT_DATABASE_URL,
    DkimKey,
    RetrySettings,
    Settings,
    SmtpSettings,
    load_settings,
)

KEYS = """
[[dkim.keys]]
selector = "r1"
algorithm = "rsa-sha256"
key_file = "keys/r1.pem"

[[dkim.keys]]
selector = "e1"
algorithm = "ed25519-sha256"
key_file = "/abs/e1.pem"
"""


def write_config(directory: Path, text: str, name: str = "sokures.toml") -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def config_error(directory: Path, text: str, env: dict[str, str] | None = None) -> tuple[Path, str]:
    path = write_config(directory, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, env=env or {})
    return path, str(info.value)


# ----------------------------------------------------------------- defaults --
def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # ./sokures.toml does not exist here
    s = load_settings(env={})
    assert s.config_path == Path("sokures.toml")
    assert s.database_url == DEFAULT_DATABASE_URL == "sqlite:///sokures.db"
    assert s.smtp == SmtpSettings()
    assert s.smtp.port == 25 and s.smtp.relay is None
    assert s.retry == RetrySettings()
    assert s.retry.max_age == 5 * 86400.0
    assert s.dkim_keys == () and s.signing_keys == ()
    assert s.sender.domain is None and s.sender.bounce_domain is None
    assert s.sender.helo_name == "localhost"
    assert s.shaping_file is None
    assert s == Settings()


def test_config_from_environment_variable_must_exist(tmp_path: Path) -> None:
    missing = tmp_path / "elsewhere.toml"
    with pytest.raises(ConfigError, match="no such config file"):
        load_settings(env={"SOKURES_CONFIG": str(missing)})
    path = write_config(tmp_path, "[smtp]\nport = 2526\n", "elsewhere.toml")
    assert load_settings(env={"SOKURES_CONFIG": str(path)}).smtp.port == 2526


def test_explicitly_named_missing_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_settings(missing, env={})
    assert str(missing) in str(info.value)


# ----------------------------------------------------------------- the file --
def test_reads_the_file(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
[sender]
domain = "example.com"
unsubscribe_url = "https://example.com/u"
[smtp]
port = 2525
relay = "127.0.0.1:2526"
connect_timeout = "45s"
[dns]
nameservers = ["127.0.0.1:5353", "[::1]:53"]
concurrency = 8
[retry]
initial = "1m"
max_interval = "2h"
max_age = "3d"
factor = 3
jitter = 0.1
[engine]
linger = 10
[contacts]
allow_test_domains = true
region = "FR"
[database]
url = "postgresql://db/sokures"
""",
    )
    s = load_settings(path, env={})
    assert s.config_path == path
    assert s.sender.domain == "example.com"
    assert s.sender.bounce_domain == "example.com"  # defaults to the sender domain
    assert s.sender.helo_name == "mail.example.com"
    assert s.smtp == SmtpSettings(port=2525, relay="127.0.0.1:2526", connect_timeout=45.0)
    assert s.dns.nameservers == ("127.0.0.1:5353", "[::1]:53")
    assert s.dns.concurrency == 8
    assert s.retry == RetrySettings(
        initial=60.0, factor=3.0, max_interval=7200.0, max_age=3 * 86400.0, jitter=0.1
    )
    assert s.engine.linger == 10.0
    assert s.contacts.allow_test_domains is True and s.contacts.region == "FR"
    assert s.database_url == "postgresql://db/sokures"


def test_relative_paths_are_relative_to_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf_dir = tmp_path / "etc" / "sokures"
    write_config(
        conf_dir,
        '[sender]\ntoken_key_file = "keys/token.key"\n[shaping]\nfile = "my-shaping.toml"\n' + KEYS,
    )
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    relative = Path("..") / "etc" / "sokures" / "sokures.toml"
    s = load_settings(relative, env={})
    base = conf_dir.resolve()
    assert s.sender.token_key_file == base / "keys" / "token.key"
    assert s.shaping_file == base / "my-shaping.toml"
    assert s.dkim_keys == (
        DkimKey("r1", "rsa-sha256", base / "keys" / "r1.pem"),
        DkimKey("e1", "ed25519-sha256", Path("/abs/e1.pem")),
    )


def test_explicit_bounce_domain_is_kept(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[sender]\ndomain = "a.example"\nbounce_domain = "b.example"\n')
    assert load_settings(path, env={}).sender.bounce_domain == "b.example"


# -------------------------------------------------------------- environment --
@pytest.mark.parametrize(
    ("variable", "value", "attribute", "expected"),
    [
        ("SOKURES_SMTP_PORT", "2525", ("smtp", "port"), 2525),
        ("SOKURES_DNS_CONCURRENCY", "3", ("dns", "concurrency"), 3),
        ("SOKURES_RETRY_FACTOR", "1.5", ("retry", "factor"), 1.5),
        ("SOKURES_RETRY_JITTER", "0", ("retry", "jitter"), 0.0),
        ("SOKURES_CONTACTS_ALLOW_TEST_DOMAINS", "yes", ("contacts", "allow_test_domains"), True),
        ("SOKURES_CONTACTS_ALLOW_TEST_DOMAINS", "off", ("contacts", "allow_test_domains"), False),
        (
            "SOKURES_DNS_NAMESERVERS",
            "127.0.0.1:5353, [::1]:53",
            ("dns", "nameservers"),
            ("127.0.0.1:5353", "[::1]:53"),
        ),
        ("SOKURES_DNS_NAMESERVERS", "", ("dns", "nameservers"), ()),
        ("SOKURES_RETRY_MAX_AGE", "2d", ("retry", "max_age"), 2 * 86400.0),
        ("SOKURES_RETRY_INITIAL", "90", ("retry", "initial"), 90.0),
        ("SOKURES_ENGINE_LEASE_SECONDS", "5m", ("engine", "lease_seconds"), 300.0),
        ("SOKURES_SMTP_RELAY", "relay.example:587", ("smtp", "relay"), "relay.example:587"),
        ("SOKURES_SMTP_RELAY", "", ("smtp", "relay"), None),
        ("SOKURES_SENDER_DOMAIN", "env.example", ("sender", "domain"), "env.example"),
    ],
)
def test_environment_overrides_the_file(
    tmp_path: Path, variable: str, value: str, attribute: tuple[str, str], expected: Any
) -> None:
    path = write_config(
        tmp_path,
        '[smtp]\nport = 25\nrelay = "file:25"\n[dns]\nnameservers = ["file"]\n'
        '[sender]\ndomain = "file.example"\n[contacts]\nallow_test_domains = true\n',
    )
    s = load_settings(path, env={variable: value})
    section, name = attribute
    assert getattr(getattr(s, section), name) == expected


def test_database_url_from_environment(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[database]\nurl = "sqlite:///file.db"\n')
    assert load_settings(path, env={}).database_url == "sqlite:///file.db"
    env = {"SOKURES_DATABASE_URL": "postgresql://env/db"}
    assert load_settings(path, env=env).database_url == "postgresql://env/db"


def test_dkim_sign_with_from_environment(tmp_path: Path) -> None:
    path = write_config(tmp_path, KEYS)
    s = load_settings(path, env={"SOKURES_DKIM_SIGN_WITH": "e1, r1"})
    assert s.dkim_sign_with == ("e1", "r1")
    assert [k.selector for k in s.signing_keys] == ["e1", "r1"]


def test_environment_is_read_only_from_the_mapping_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOKURES_SMTP_PORT", "2999")
    path = write_config(tmp_path, "[smtp]\nport = 26\n")
    assert load_settings(path, env={}).smtp.port == 26


def test_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[smtp]\nport = 25\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={"SOKURES_SMTP_PORT": "abc"})
    message = str(info.value)
    assert "SOKURES_SMTP_PORT" in message
    assert "smtp.port" in message
    assert "'abc'" in message
    # the value is not in the file, so the message must not send the reader there
    assert not message.startswith(str(path))


# ---------------------------------------------------------------- overrides --
def test_dotted_overrides_win_and_none_is_ignored(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[smtp]\nport = 26\nrelay = "file:25"\n')
    env = {"SOKURES_SMTP_PORT": "27", "SOKURES_DATABASE_URL": "sqlite:///env.db"}
    s = load_settings(
        path,
        env=env,
        overrides={
            "smtp.port": 28,
            "smtp.relay": None,
            "database.url": "sqlite:///flag.db",
            "dns.nameservers": ("10.0.0.1",),
        },
    )
    assert s.smtp.port == 28
    assert s.smtp.relay == "file:25"
    assert s.database_url == "sqlite:///flag.db"
    assert s.dns.nameservers == ("10.0.0.1",)
    s = load_settings(path, env=env, overrides={"smtp.port": None, "database.url": None})
    assert s.smtp.port == 27
    assert s.database_url == "sqlite:///env.db"


def test_unknown_override_is_an_error(tmp_path: Path) -> None:
    path = write_config(tmp_path, "")
    with pytest.raises(ConfigError, match=r"smtp\.colour: unknown setting"):
        load_settings(path, env={}, overrides={"smtp.colour": 1})


# ------------------------------------------------------------------- errors --
@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[smtp]\nport = "abc"\n', "smtp.port"),
        ("[smtp]\nport = 1.5\n", "smtp.port"),
        ("[smtp]\nport = true\n", "smtp.port"),
        ("[smtp]\nport = inf\n", "smtp.port"),
        ("[retry]\nfactor = true\n", "retry.factor"),
        ('[retry]\njitter = "lots"\n', "retry.jitter"),
        ('[retry]\ninitial = "1y"\n', "retry.initial"),
        ("[retry]\nmax_age = -5\n", "retry.max_age"),
        ("[retry]\nmax_age = nan\n", "retry.max_age"),
        ('[contacts]\nallow_test_domains = "maybe"\n', "contacts.allow_test_domains"),
        ("[dns]\nnameservers = 5\n", "dns.nameservers"),
        ('[sender]\ndomain = ["a"]\n', "sender.domain"),
        ('[smtp]\ncolour = "blue"\n', "smtp.colour"),
        ("[dkim]\nfoo = 1\n", "dkim.foo"),
        ("[nonsense]\na = 1\n", "[nonsense]"),
        ('sender = "example.com"\n', "[sender]"),
        ("[dkim]\nsign_with = 5\n", "dkim.sign_with"),
        ("[dkim]\nsign_with = [1, 2]\n", "dkim.sign_with"),
        ("[dkim]\nkeys = [1]\n", "dkim.keys[0]"),
        ('[dkim]\nkeys = "k"\n', "dkim.keys"),
        ('[[dkim.keys]]\nselector = "a"\nkey_file = "k"\n', "dkim.keys[0].algorithm"),
        (
            '[[dkim.keys]]\nselector = "a"\nalgorithm = "rsa"\nkey_file = "k"\n',
            "dkim.keys[0].algorithm",
        ),
        (
            '[[dkim.keys]]\nselector = "a"\nalgorithm = "rsa-sha256"\nkey_file = "k"\n'
            "bits = 2048\n",
            "dkim.keys[0].bits",
        ),
        ("[smtp\n", "line 1"),
    ],
)
def test_bad_file_names_the_file_and_the_key(tmp_path: Path, text: str, key: str) -> None:
    path, message = config_error(tmp_path, text)
    assert message.startswith(f"{path}: ")
    assert key in message


def test_bad_value_is_quoted_in_the_message(tmp_path: Path) -> None:
    _, message = config_error(tmp_path, '[smtp]\nport = "abc"\n')
    assert "'abc'" in message


def test_sign_with_must_name_a_configured_selector(tmp_path: Path) -> None:
    path, message = config_error(tmp_path, '[dkim]\nsign_with = ["r1", "zz9"]\n' + KEYS)
    assert message.startswith(f"{path}: dkim.sign_with")
    assert "zz9" in message
    assert "r1" not in message.split("selector", 1)[1]


# -------------------------------------------------------------- signing keys --
def test_signing_keys_follow_sign_with_order(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[dkim]\nsign_with = ["e1", "r1"]\n' + KEYS)
    s = load_settings(path, env={})
    assert [k.selector for k in s.signing_keys] == ["e1", "r1"]
    path = write_config(tmp_path, '[dkim]\nsign_with = "r1"\n' + KEYS)
    assert [k.selector for k in load_settings(path, env={}).signing_keys] == ["r1"]


def test_without_sign_with_the_first_key_signs(tmp_path: Path) -> None:
    path = write_config(tmp_path, KEYS)
    s = load_settings(path, env={})
    assert s.dkim_sign_with == ()
    assert [k.selector for k in s.signing_keys] == ["r1"]


def test_dkim_key_repr_shows_where_not_what(tmp_path: Path) -> None:
    key = DkimKey("r1", "rsa-sha256", tmp_path / "r1.pem")
    assert repr(key) == f"DkimKey('r1', 'rsa-sha256', {str(tmp_path / 'r1.pem')!r})"


# ----------------------------------------------------------- require_domain --
def test_require_domain(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[smtp]\nport = 25\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={}).require_domain()
    assert str(path) in str(info.value)
    assert "sokures init" in str(info.value)
    path = write_config(tmp_path, '[sender]\ndomain = "example.com"\n')
    assert load_settings(path, env={}).require_domain() == "example.com"


# ------------------------------------------------------------------- frozen --
def test_settings_cannot_be_mutated(tmp_path: Path) -> None:
    s = load_settings(write_config(tmp_path, '[sender]\ndomain = "example.com"\n'), env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.database_url = "sqlite:///other.db"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.smtp.port = 26  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.sender.domain = "evil.example"  # type: ignore[misc]
    with pytest.raises((AttributeError, TypeError)):
        s.extra = 1  # type: ignore[attr-defined]
    assert s.sender.domain == "example.com"
