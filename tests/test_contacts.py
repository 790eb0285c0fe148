"""Importing contacts from CSV: deliver.contacts.ContactImporter on both databases, and
``sokures contacts import`` run as a real process (SQLite only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from deliver.contacts import BadRow, ContactImporter, ImportReport
from deliver.errors import InputError, NotFound
from deliver.store import Store
from deliver.store.models import ContactImport, table
from tests.store_helpers import NOW

SOKURES = Path(sys.executable).parent / "sokures"


def write_csv(tmp_path: Path, text: str, name: str = "contacts.csv") -> Path:
    """Write ``text`` as UTF-8, byte for byte (line endings are not translated)."""
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def run_import(
    store: Store,
    path: Path,
    list_name: str = "default",
    *,
    region: str | None = None,
    test_domains: bool = False,
    batch_size: int = 2000,
) -> ImportReport:
    importer = ContactImporter(
        store.contacts,
        region=region,
        test_domains=test_domains,
        batch_size=batch_size,
        clock=lambda: NOW,
    )
    return importer.run(path, list_name)


def contact(store: Store, email: str) -> dict[str, Any]:
    found = store.contacts.get(email)
    assert found is not None, f"{email} was not imported"
    return found


def bad_lines(report: ImportReport) -> list[int]:
    return [b.line for b in report.bad]


# ------------------------------------------------------------- CSV shapes --


def test_header_aliases_map_to_the_contact_columns(store: Store, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        "E-mail,Full Name,Mobile,Language,Plan\n"
        "ann@example.com,Ann Lee,+33 6 12 34 56 78,fr_CA,gold\n",
    )

    report = run_import(store, path)

    assert (report.rows, report.counts.inserted, report.bad) == (1, 1, [])
    ann = contact(store, "ann@example.com")
    assert (ann["name"], ann["phone"], ann["locale"]) == ("Ann Lee", "+33612345678", "fr-CA")
    assert (ann["domain"], ann["fields"]) == ("example.com", {"plan": "gold"})


SHAPES = {
    # delimiter, line ending, prefix
    "comma": (",", "\n", ""),
    "semicolon": (";", "\n", ""),
    "tab": ("\t", "\n", ""),
    "bom": (",", "\n", "\ufeff"),
    "crlf": (",", "\r\n", ""),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_delimiters_bom_line_endings_and_blank_lines(
    store: Store, tmp_path: Path, shape: str
) -> None:
    delimiter, eol, prefix = SHAPES[shape]
    lines = [
        ["email", "name", "city"],
        ["ann@example.com", "Ann", "Paris"],
        [],
        ["not-an-address", "Bob", "Oslo"],
        ["cat@example.com", "Cat", ""],
        [],
    ]
    path = write_csv(tmp_path, prefix + eol.join(delimiter.join(v) for v in lines) + eol)

    report = run_import(store, path)

    assert report.rows == 3
    assert report.counts.inserted == 2
    assert report.bad == [
        BadRow(4, "invalid email address 'not-an-address': An email address must have an @-sign.")
    ]
    assert contact(store, "ann@example.com")["fields"] == {"city": "Paris"}
    # an empty custom cell is not stored as a field
    assert contact(store, "cat@example.com")["fields"] == {}


def test_quoted_fields_with_delimiters_and_newlines_keep_line_numbers(
    store: Store, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path,
        "email,name,notes\n"
        'ann@example.com,"Lee, Ann","line one\nline two"\n'  # lines 2-3
        '"bob@example.com","Bob ""The Builder""",plain\n'  # line 4
        'not-an-email,X,"multi\nline\nnotes"\n'  # lines 5-7
        'cat@example.com,Cat,"a,b"\n'  # line 8
        "\n"  # line 9
        'eve@example.com,"Eve\nEvil",x\n'  # lines 10-11
        "dan@localhost,Dan,x\n",  # line 12
    )

    report = run_import(store, path)

    assert bad_lines(report) == [5, 10, 12]
    assert "invalid email address 'not-an-email'" in report.bad[0].reason
    assert report.bad[1].reason.startswith("line break inside name")
    assert "invalid email address 'dan@localhost'" in report.bad[2].reason
    assert (report.rows, report.counts.inserted) == (6, 3)
    ann = contact(store, "ann@example.com")
    assert (ann["name"], ann["fields"]) == ("Lee, Ann", {"notes": "line one\nline two"})
    assert contact(store, "bob@example.com")["name"] == 'Bob "The Builder"'
    assert contact(store, "cat@example.com")["fields"] == {"notes": "a,b"}


# ---------------------------------------------------------------- bad rows --

BAD_ROWS_CSV = (
    "email,name,phone,locale\n"
    "ok@example.com,Ok,,\n"  # 2
    "not-an-address,X,,\n"  # 3
    ",Nobody,,\n"  # 4
    "few@example.com,Few\n"  # 5
    "phone@example.com,P,+1 555,\n"  # 6
    "local@example.com,L,06 12 34 56 78,\n"  # 7
    "locale@example.com,L,,english!\n"  # 8
    'inj@example.com,"Evil\r\nBcc: victim@example.org",,\n'  # 9-10
    f"long@example.com,{'x' * 257},,\n"  # 11
    "also-ok@example.com,Also,+33612345678,en\n"  # 12
    "extra@example.com,E,,,surplus\n"  # 13
)

BAD_ROWS_EXPECTED = [
    (3, "invalid email address 'not-an-address'"),
    (4, "empty email"),
    (5, "2 fields, the header has 4"),
    (6, "invalid phone number '+1 555'"),
    (7, "invalid phone number '06 12 34 56 78'"),
    (8, "invalid locale 'english!' (expected e.g. en, fr-CA)"),
    (9, "line break inside name (refused: it would end up in a header)"),
    (11, "name longer than 256 characters"),
    (13, "5 fields, the header has 4"),
]


def test_bad_rows_are_reported_with_line_and_reason_and_the_rest_imported(
    store: Store, tmp_path: Path
) -> None:
    report = run_import(store, write_csv(tmp_path, BAD_ROWS_CSV))

    assert [
        (b.line, b.reason[: len(want)])
        for b, (_, want) in zip(report.bad, BAD_ROWS_EXPECTED, strict=True)
    ] == BAD_ROWS_EXPECTED
    assert report.bad[4].reason.endswith("(no country code: give --region)")
    assert (report.rows, report.bad_count, report.counts.inserted) == (11, 9, 2)
    assert store.contacts.count() == 2
    assert contact(store, "also-ok@example.com")["phone"] == "+33612345678"
    for refused in ("inj@example.com", "long@example.com", "local@example.com"):
        assert store.contacts.get(refused) is None


def test_a_phone_without_country_code_needs_a_region(store: Store, tmp_path: Path) -> None:
    path = write_csv(tmp_path, "email,phone\nlocal@example.com,06 12 34 56 78\n")

    without = run_import(store, path)
    assert bad_lines(without) == [2]
    assert store.contacts.get("local@example.com") is None

    with_region = run_import(store, path, region="FR")
    assert with_region.bad == []
    assert contact(store, "local@example.com")["phone"] == "+33612345678"


def test_test_domains_are_refused_unless_allowed(store: Store, tmp_path: Path) -> None:
    # RFC 6761 reserves .test: real mail never goes there, so only labs may use it
    path = write_csv(tmp_path, "email\nlab@inbox.test\n")

    refused = run_import(store, path)
    assert bad_lines(refused) == [2]
    assert "special-use or reserved name" in refused.bad[0].reason
    assert store.contacts.count() == 0

    allowed = run_import(store, path, test_domains=True)
    assert allowed.bad == []
    assert contact(store, "lab@inbox.test")["domain"] == "inbox.test"


def test_a_row_that_is_not_utf8_is_a_bad_row_and_nothing_else_is_lost(
    store: Store, tmp_path: Path
) -> None:
    # the bad byte sits well past the first read buffer, between two batches' worth of rows
    good = [f"user{i:04d}@example.com,User {i}\n".encode() for i in range(600)]
    path = tmp_path / "latin1.csv"
    path.write_bytes(
        b"email,name\n" + b"".join(good[:300]) + b"zoe@example.com,Zo\xeb\n" + b"".join(good[300:])
    )

    report = run_import(store, path, batch_size=250)

    assert report.bad == [BadRow(302, "not UTF-8 text")]
    assert (report.rows, report.counts.inserted) == (601, 600)
    assert store.contacts.count() == 600


def test_a_header_that_is_not_utf8_refuses_the_file(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"email,pr\xe9nom\nann@example.com,Ann\n")

    with pytest.raises(InputError, match="not UTF-8") as caught:
        run_import(store, path)
    assert caught.value.line == 1
    assert store.contacts.count() == 0


def test_a_nul_character_is_a_bad_row_not_a_failed_import(store: Store, tmp_path: Path) -> None:
    # PostgreSQL cannot store NUL in text: one such row must not abort the whole batch
    path = write_csv(
        tmp_path,
        "email,name,notes\nann@example.com,Ann\x00,x\nbob@example.com,Bob,y\x00z\n"
        "cat@example.com,Cat,ok\n",
    )

    report = run_import(store, path)

    assert bad_lines(report) == [2, 3]
    assert report.bad[0].reason == "NUL character in name"
    assert report.bad[1].reason == "NUL character in notes"
    assert store.contacts.count() == 1


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("name,phone", "no email column in the header"),
        ("email,Mail", "column 'email' appears twice"),
        ("email,,phone", "column 2 has no name"),
    ],
)
def test_a_bad_header_refuses_the_whole_file(
    store: Store, tmp_path: Path, header: str, reason: str
) -> None:
    path = write_csv(tmp_path, f"{header}\nann@example.com,Ann,\n")

    with pytest.raises(InputError, match=reason) as caught:
        run_import(store, path)

    assert (caught.value.line, caught.value.source) == (1, str(path))
    assert store.contacts.count() == 0


def test_an_empty_file_is_refused(store: Store, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="empty file"):
        run_import(store, write_csv(tmp_path, ""))


def test_only_the_first_ten_thousand_bad_rows_are_kept(store: Store, tmp_path: Path) -> None:
    path = write_csv(tmp_path, "email,name\n" + ",nobody\n" * 10_050 + "ok@example.com,Ok\n")

    report = run_import(store, path)

    assert report.bad_count == 10_050
    assert len(report.bad) == 10_000
    assert report.bad[-1] == BadRow(10_001, "empty email")
    assert report.counts.inserted == 1


# ------------------------------------------------------------ de-duplication --


@pytest.mark.parametrize("batch_size", [1, 2000], ids=["batch-per-row", "one-batch"])
def test_the_same_address_twice_in_a_file_is_one_contact_and_the_later_row_wins(
    store: Store, tmp_path: Path, batch_size: int
) -> None:
    path = write_csv(
        tmp_path,
        "email,name,locale,plan,city\n"
        "ann@example.com,Ann,en,gold,Lyon\n"
        "bob@example.com,Bob,,,\n"
        "ANN@Example.com,Annie,,silver,\n",
    )

    report = run_import(store, path, batch_size=batch_size)

    assert (report.counts.inserted, report.counts.duplicates, report.counts.updated) == (2, 1, 0)
    assert store.contacts.count() == 2
    assert store.contacts.count("default") == 2
    ann = contact(store, "ann@example.com")
    assert (ann["email"], ann["name"], ann["locale"]) == ("ANN@example.com", "Annie", "en")
    assert ann["fields"] == {"plan": "silver", "city": "Lyon"}


def test_reimporting_updates_without_erasing_and_merges_fields(
    store: Store, tmp_path: Path
) -> None:
    first = write_csv(
        tmp_path,
        "email,name,phone,plan\nann@example.com,Ann,+33612345678,gold\nbob@example.com,Bob,,\n",
        name="first.csv",
    )
    second = write_csv(
        tmp_path,
        "email,name,phone,city\nann@example.com,,,Lyon\nbob@example.com,Robert,,\n",
        name="second.csv",
    )
    run_import(store, first)

    report = run_import(store, second)

    assert (report.counts.inserted, report.counts.updated, report.counts.duplicates) == (0, 2, 0)
    assert store.contacts.count() == 2
    ann = contact(store, "ann@example.com")
    assert (ann["name"], ann["phone"]) == ("Ann", "+33612345678")
    assert ann["fields"] == {"plan": "gold", "city": "Lyon"}
    assert contact(store, "bob@example.com")["name"] == "Robert"
    with store.engine.connect() as conn:
        imports = conn.execute(
            select(table(ContactImport)).order_by(table(ContactImport).c.id)
        ).all()
    assert [(i.source, i.rows, i.inserted, i.updated, i.bad) for i in imports] == [
        (str(first), 2, 2, 0, 0),
        (str(second), 2, 0, 2, 0),
    ]
    assert all(i.finished_at == NOW for i in imports)


def test_importing_into_two_lists_puts_the_contact_in_both(store: Store, tmp_path: Path) -> None:
    path = write_csv(tmp_path, "email\nann@example.com\nbob@example.com\n")

    run_import(store, path, "newsletter")
    again = run_import(store, path, "customers")

    assert again.counts.inserted == 0
    assert store.contacts.count("newsletter") == 2
    assert store.contacts.count("customers") == 2
    assert store.contacts.count() == 2
    assert store.contacts.list_id("newsletter") != store.contacts.list_id("customers")
    with pytest.raises(NotFound, match="no contact list named 'other'"):
        store.contacts.list_id("other")


# ------------------------------------------------------------------ memory --


@pytest.mark.slow
def test_import_memory_stays_bounded_whatever_the_file_size(store: Store, tmp_path: Path) -> None:
    # 8,000 rows of ~2.3 KB make an 18 MB file. Streaming batches of 500 rows peaks at
    # ~4 MB (SQLite) to ~6 MB (PostgreSQL) of traced memory; holding the file or all its
    # rows (measured: one batch for the whole file) peaks at 40 to 53 MB. Wide rows keep
    # the test short: under tracemalloc each row costs about half a millisecond, so the
    # 200,000 narrow rows of the same size would take minutes.
    rows, notes = 8_000, "n" * 2300
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8") as out:
        out.write("email,name,notes\n")
        out.writelines(f"u{i}@example.com,User {i},{notes}{i}\n" for i in range(rows))
    assert path.stat().st_size > 18_000_000

    tracemalloc.start()
    try:
        report = run_import(store, path, batch_size=500)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert (report.counts.inserted, report.bad_count) == (rows, 0)
    assert peak < 20_000_000, f"peak traced memory {peak / 1e6:.1f} MB"


# --------------------------------------------------------------------- CLI --


def sokures(
    tmp_path: Path, *args: str, database: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``sokures --database-url sqlite:///... ARGS`` in ``tmp_path``, no SOKURES_* env."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOKURES_")}
    url = f"sqlite:///{database or tmp_path / 'cli.db'}"
    return subprocess.run(
        [str(SOKURES), "--database-url", url, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_reports_bad_rows_as_file_line_reason_and_exits_2(tmp_path: Path) -> None:
    path = write_csv(tmp_path, BAD_ROWS_CSV)

    result = sokures(tmp_path, "contacts", "import", str(path), "--list", "news")

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == [
        f"{path}:{n}" for n, _ in BAD_ROWS_EXPECTED
    ]
    assert lines[0].startswith(f"{path}:3: invalid email address 'not-an-address'")
    assert "11 rows" in result.stdout
    assert "2 new" in result.stdout
    assert "9 bad" in result.stdout
    store = Store.open(f"sqlite:///{tmp_path / 'cli.db'}")
    try:
        assert store.contacts.count("news") == 2
    finally:
        store.close()


def test_cli_exits_0_when_every_row_is_good(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "email,phone\nann@example.com,06 12 34 56 78\nlab@mx.test,\n")

    result = sokures(
        tmp_path, "contacts", "import", str(path), "--region", "FR", "--allow-test-domains"
    )

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "2 rows" in result.stdout
    assert "2 new" in result.stdout


def test_cli_json_output(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "email,name\nann@example.com,Ann\nANN@example.com,Annie\nbad,X\n")

    result = sokures(tmp_path, "contacts", "import", str(path), "--list", "vip", "--json")

    assert result.returncode == 2
    assert result.stderr == ""  # with --json the bad rows are in the JSON, not on stderr
    (line,) = result.stdout.splitlines()
    data = json.loads(line)
    assert isinstance(data.pop("seconds"), float)
    bad_rows = data.pop("bad_rows")
    assert data == {
        "source": str(path),
        "list": "vip",
        "rows": 3,
        "inserted": 1,
        "updated": 0,
        "duplicates": 1,
        "bad": 1,
    }
    assert len(bad_rows) == 1
    assert bad_rows[0]["line"] == 4
    assert bad_rows[0]["reason"].startswith("invalid email address 'bad'")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read: No such file or directory"),
        ("name\nAnn\n", ":1: no email column in the header"),
    ],
    ids=["missing-file", "no-email-column"],
)
def test_cli_refuses_an_unusable_file_in_one_line(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "contacts.csv"
    if content is not None:
        write_csv(tmp_path, content)

    result = sokures(tmp_path, "contacts", "import", str(path))

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("sokures: error: ")
    assert message in line
