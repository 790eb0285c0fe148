"""The ``sokures`` command line, run as a real process: exit codes, output contracts, and no
traceback on bad input."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from deliver.errors import NotFound
from deliver.settings import load_settings
from deliver.store import Store
from deliver.tokens import load_token_key

# the console script pyproject installs ([project.scripts] sokures = deliver.cli.app:main)
SOKURES = Path(sys.executable).parent / "sokures"
STATES = {"queued", "deferred", "delivered", "bounced", "expired", "suppressed"}
CONTACTS = "email,name\nana@gmail.com,Ana\nbo@yahoo.com,Bo\ncy@example.org,Cy\n"


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def error_line(self) -> str:
        """The one-line error the CLI promises for bad input."""
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, self.err
        assert lines[0].startswith("sokures: error: "), self.err
        return lines[0]


def sokures(cwd: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SOKURES_")}
    environ.update({"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"})
    environ.update(env or {})
    proc = subprocess.run(
        [str(SOKURES), *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    return Result(proc.returncode, proc.stdout, proc.stderr)


def pem_secrets(path: Path) -> list[str]:
    """Pieces of a private key file that must never be printed: 20-character runs of its
    base64, except those that also occur in the public key (an RSA private key holds the
    modulus, which the DKIM record publishes)."""
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey)
    public = base64.b64encode(
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()
    body = [line for line in path.read_text().splitlines() if not line.startswith("-----")]
    text = "".join(body)
    pieces = [text[i : i + 20] for i in range(len(text) - 20)]
    secret = [p for p in pieces if p not in public]
    assert len(secret) > len(pieces) // 3
    return secret


@dataclass(frozen=True)
class Project:
    root: Path
    campaign: str


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """An initialised directory with three contacts and one campaign."""
    root = tmp_path_factory.mktemp("project")
    assert sokures(root, "init", "--domain", "example.com").code == 0
    (root / "contacts.csv").write_text(CONTACTS)
    assert sokures(root, "contacts", "import", "contacts.csv").code == 0
    (root / "news.txt").write_text("Hello {{ name }}\n")
    created = sokures(
        root,
        "campaign",
        "create",
        "spring",
        "--template",
        "news.txt",
        "--from",
        "News <news@example.com>",
        "--subject",
        "Hello {{ name }}",
        "--json",
    )
    assert created.code == 0, created.err
    assert json.loads(created.out)["queued"] == 3
    return Project(root, "spring")


# -------------------------------------------------------------------- help --
def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = sokures(tmp_path, "--help")
    assert result.code == 0
    for command in ("init", "send", "status", "contacts", "campaign"):
        assert re.search(rf"\b{command}\b", result.out), command
    assert "--database-url" in result.out and "--config" in result.out


def test_entry_point_is_the_installed_script() -> None:
    assert SOKURES.exists()
    assert os.access(SOKURES, os.X_OK)


# -------------------------------------------------------------------- init --
def test_init_writes_config_keys_and_records(tmp_path: Path) -> None:
    result = sokures(tmp_path, "init", "--domain", "Example.COM", "--selector", "s1")
    assert result.code == 0, result.err
    config = tmp_path / "sokures.toml"
    keys = tmp_path / "keys"
    rsa_file, ed_file, token_file = (
        keys / "s1r.rsa.pem",
        keys / "s1e.ed25519.pem",
        keys / "token.key",
    )
    for path in (rsa_file, ed_file, token_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path

    out = result.out
    assert re.search(r'^example\.com\. 3600 IN TXT "v=spf1 [^"]*all"$', out, re.M)
    assert re.search(r"^s1r\._domainkey\.example\.com\. 3600 IN TXT .*k=rsa", out, re.M)
    assert re.search(r"^s1e\._domainkey\.example\.com\. 3600 IN TXT .*k=ed25519", out, re.M)
    assert re.search(r'^_dmarc\.example\.com\. 3600 IN TXT "v=DMARC1; p=none', out, re.M)

    printed = result.out + result.err
    assert "PRIVATE KEY" not in printed
    for piece in pem_secrets(rsa_file) + pem_secrets(ed_file):
        assert piece not in printed
    assert token_file.read_text().strip() not in printed

    # the DKIM records publish the public halves of the keys written
    records = "".join(re.findall(r'"([^"]*)"', out))  # TXT strings joined
    rsa_key = serialization.load_pem_private_key(rsa_file.read_bytes(), password=None)
    assert isinstance(rsa_key, rsa.RSAPrivateKey) and rsa_key.key_size == 2048
    rsa_public = rsa_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert base64.b64encode(rsa_public).decode() in records
    ed_key = serialization.load_pem_private_key(ed_file.read_bytes(), password=None)
    assert isinstance(ed_key, ed25519.Ed25519PrivateKey)
    ed_public = ed_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert f"p={base64.b64encode(ed_public).decode()}" in records

    # and the config it wrote loads, pointing at those files
    settings = load_settings(config, env={})
    assert settings.require_domain() == "example.com"
    assert [(k.selector, k.key_file) for k in settings.dkim_keys] == [
        ("s1r", rsa_file.resolve()),
        ("s1e", ed_file.resolve()),
    ]
    assert [k.selector for k in settings.signing_keys] == ["s1r"]
    assert settings.sender.unsubscribe_url and settings.sender.unsubscribe_url.startswith(
        "https://"
    )
    assert len(load_token_key(settings.sender.token_key_file)) == 32


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    assert sokures(tmp_path, "init", "--domain", "example.com", "--selector", "a").code == 0
    config = (tmp_path / "sokures.toml").read_bytes()
    rsa_key = (tmp_path / "keys" / "ar.rsa.pem").read_bytes()
    token = (tmp_path / "keys" / "token.key").read_bytes()

    again = sokures(tmp_path, "init", "--domain", "example.com", "--selector", "a")
    assert again.code == 2
    assert "--force" in again.error_line and "sokures.toml" in again.error_line
    assert again.out == ""
    assert (tmp_path / "sokures.toml").read_bytes() == config
    assert (tmp_path / "keys" / "ar.rsa.pem").read_bytes() == rsa_key

    forced = sokures(tmp_path, "init", "--domain", "example.net", "--selector", "a", "--force")
    assert forced.code == 0, forced.err
    assert "example.net" in (tmp_path / "sokures.toml").read_text()
    assert (tmp_path / "keys" / "ar.rsa.pem").read_bytes() != rsa_key
    assert (tmp_path / "keys" / "token.key").read_bytes() == token  # the token key is kept


def test_init_json(tmp_path: Path) -> None:
    result = sokures(
        tmp_path,
        "init",
        "--domain",
        "example.com",
        "--selector",
        "j",
        "--ip",
        "203.0.113.5",
        "--ip",
        "2001:db8::25",
        "--json",
    )
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert set(data) == {"config", "domain", "keys", "records"}
    assert data["domain"] == "example.com"
    assert Path(tmp_path / data["config"]).exists()
    assert [(k["selector"], k["algorithm"]) for k in data["keys"]] == [
        ("jr", "rsa-sha256"),
        ("je", "ed25519-sha256"),
    ]
    for key in data["keys"]:
        assert Path(key["file"]).exists()
    records = {r["name"]: r for r in data["records"]}
    assert list(records) == [
        "example.com",
        "jr._domainkey.example.com",
        "je._domainkey.example.com",
        "_dmarc.example.com",
    ]
    for record in data["records"]:
        assert set(record) == {"name", "type", "value", "purpose"}
        assert record["type"] == "TXT"
    assert records["example.com"]["value"] == "v=spf1 ip4:203.0.113.5 ip6:2001:db8::25 -all"
    assert records["jr._domainkey.example.com"]["value"].startswith("v=DKIM1; k=rsa; p=")
    assert records["_dmarc.example.com"]["value"].startswith("v=DMARC1; p=none")
    for piece in pem_secrets(Path(data["keys"][0]["file"])):
        assert piece not in result.out


@pytest.mark.parametrize(
    "args",
    [
        ["--domain", "bad_domain.com"],
        ["--domain", "x..com"],
        ["--domain", "localhost"],
        ["--domain", "example.com", "--selector", "a b"],
        ["--domain", "example.com", "--rsa-selector", "same", "--ed25519-selector", "same"],
    ],
)
def test_init_bad_input_exits_2_and_writes_nothing(tmp_path: Path, args: list[str]) -> None:
    result = sokures(tmp_path, "init", *args)
    assert result.code == 2
    assert result.error_line.startswith("sokures: error: ")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- campaign --
def test_campaign_subject_with_a_line_break_is_refused(project: Project) -> None:
    result = sokures(
        project.root,
        "campaign",
        "create",
        "injected",
        "--template",
        "news.txt",
        "--from",
        "news@example.com",
        "--subject",
        "Hello\nBcc: victim@example.net",
    )
    assert result.code == 2
    assert "--subject" in result.error_line and "line break" in result.error_line
    store = Store.open(f"sqlite:///{project.root / 'sokures.db'}")
    try:
        with pytest.raises(NotFound):  # nothing was created
            store.campaigns.get("injected")
    finally:
        store.close()


# ------------------------------------------------------------------ status --
def test_status_json_contract(project: Project) -> None:
    result = sokures(project.root, "status", project.campaign, "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    # the four keys of DESIGN.md's contract, in its order; keys added after them do not
    # break a consumer of the contract
    assert list(data)[:4] == ["campaign", "total", "states", "providers"]
    assert data["campaign"] == "spring"
    assert data["total"] == 3
    assert set(data["states"]) == STATES
    assert data["states"]["queued"] == 3
    assert sum(data["states"].values()) == data["total"]
    assert set(data["providers"]) == {"google", "yahoo", "unrouted"}
    for counts in data["providers"].values():
        assert set(counts) == STATES
        assert all(isinstance(n, int) for n in counts.values())
        assert counts["queued"] == 1
    for state in STATES:
        assert sum(p[state] for p in data["providers"].values()) == data["states"][state]


def test_status_table_from_another_directory_with_database_url(
    project: Project, tmp_path: Path
) -> None:
    here = f"sqlite:///{project.root / 'sokures.db'}"
    result = sokures(tmp_path, "--database-url", here, "status", "spring")
    assert result.code == 0, result.err
    for word in ("spring", "google", "yahoo", "queued", "total"):
        assert word in result.out
    other = f"sqlite:///{tmp_path / 'other.db'}"  # another, empty store
    result = sokures(project.root, "status", "spring", env={"SOKURES_DATABASE_URL": other})
    assert result.code == 2
    assert "spring" in result.error_line


# ------------------------------------------------------------- bad input --
@dataclass(frozen=True)
class BadInput:
    """A command that must fail with exit 2 and one line on stderr containing ``expect``."""

    args: tuple[str, ...]
    expect: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    #: run in a directory holding only this sokures.toml instead of the project
    config: str | None = None


def create(
    name: str = "x", template: str = "news.txt", sender: str = "a@example.com"
) -> tuple[str, ...]:
    return ("campaign", "create", name, "--template", template, "--from", sender, "--subject", "s")


BAD_INPUTS = {
    "unknown campaign": BadInput(("status", "no-such-campaign"), ("no-such-campaign",)),
    "missing csv": BadInput(("contacts", "import", "missing.csv"), ("missing.csv",)),
    "line break in from": BadInput(
        create(sender="News\r\nBcc: victim@example.net <news@example.com>"), ("--from",)
    ),
    "template syntax": BadInput(create(template="bad.txt"), ("bad.txt:2:",)),
    "duplicate campaign": BadInput(create(name="spring"), ("spring",)),
    "bad SOKURES_SMTP_PORT": BadInput(
        ("status", "spring"),
        ("SOKURES_SMTP_PORT", "smtp.port", "abc"),
        env=(("SOKURES_SMTP_PORT", "abc"),),
    ),
    "bad sign_with in file": BadInput(
        ("status", "x"), ("sokures.toml", "dkim.sign_with"), config="[dkim]\nsign_with = 5\n"
    ),
    "missing named config": BadInput(("--config", "nope.toml", "status", "x"), ("nope.toml",)),
}


def test_bad_input_is_one_line_and_exit_2(project: Project, tmp_path: Path) -> None:
    (project.root / "bad.txt").write_text("Hello\n{{ name }\n")

    def run(name: str, case: BadInput) -> Result:
        cwd = project.root
        if case.config is not None:
            cwd = tmp_path / name.replace(" ", "-")
            cwd.mkdir()
            (cwd / "sokures.toml").write_text(case.config)
        return sokures(cwd, *case.args, env=dict(case.env))

    # each run spends most of its time importing: run them side by side
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(run, name, case) for name, case in BAD_INPUTS.items()}
    for name, case in BAD_INPUTS.items():
        result = futures[name].result()
        assert result.code == 2, (name, result)
        line = result.error_line
        for expected in case.expect:
            assert expected in line, (name, line)


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["send", "x", "--workers", "0"],
        ["nosuchcommand"],
        ["init"],
    ],
)
def test_usage_errors_exit_2_without_traceback(project: Project, args: list[str]) -> None:
    result = sokures(project.root, *args)
    assert result.code == 2
    assert "Usage:" in result.err
