"""deliver.compose: the message bytes a recipient gets, checked with Python's email parser."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import email.utils
import re
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deliver.compose import (
    ComposedMessage,
    MessageComposer,
    SenderIdentity,
    check_header_value,
    compile_templates,
    parse_from,
)
from deliver.errors import HeaderInjectionError, InputError
from deliver.store.campaigns import CampaignRecord
from deliver.store.queue import ClaimedMessage
from deliver.tokens import TokenSigner

KEY = b"0123456789abcdef0123456789abcdef"
NOW = 1_700_000_000.0

HTML = """<html><body>
<h1>Hello {{ contact.name }}</h1>
<p>You have {{ contact.items }} items and {{ contact.keys }} keys.</p>
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
</body></html>
"""
TEXT = """Hello {{ contact.name }}
You have {{ contact.items }} items and {{ contact.keys }} keys.
Unsubscribe: {{ unsubscribe_url }}
"""

SENDER = SenderIdentity(
    domain="example.com",
    bounce_domain="bounces.example.com",
    bounce_prefix="bounce",
    unsubscribe_url="https://example.com/unsubscribe",
    unsubscribe_mailto="unsubscribe@example.com",
    feedback_sender="sokures",
)


def campaign(**changes: Any) -> CampaignRecord:
    base = CampaignRecord(
        id=7,
        name="spring",
        list_id=1,
        list_name="main list",
        from_addr="news@example.com",
        from_name="Example News",
        subject="Hello {{ name }}",
        html_template=HTML,
        text_template=TEXT,
        template_file="news.html",
        created_at=NOW - 60,
        total=2,
    )
    return dataclasses.replace(base, **changes)


def message(**changes: Any) -> ClaimedMessage:
    base = ClaimedMessage(
        id=12345,
        campaign_id=7,
        contact_id=42,
        rcpt="ana@example.org",
        domain="example.org",
        attempts=0,
        created_at=NOW - 60,
        provider=None,
        name="Ana",
        fields={"items": "3", "keys": "2"},
    )
    return dataclasses.replace(base, **changes)


def compose(
    record: CampaignRecord | None = None,
    msg: ClaimedMessage | None = None,
    sender: SenderIdentity = SENDER,
) -> ComposedMessage:
    composer = MessageComposer(record or campaign(), sender, TokenSigner(KEY))
    return composer.compose(msg or message(), NOW)


def parse(composed: ComposedMessage) -> EmailMessage:
    parsed = email.message_from_bytes(composed.to_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def header_lines(raw: bytes) -> list[bytes]:
    head = raw.split(b"\r\n\r\n", 1)[0]
    return head.split(b"\r\n")


def body_of(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[1]


def parts(parsed: EmailMessage) -> dict[str, str]:
    """Decoded parts by content type, line ends as LF."""
    out = {}
    for part in parsed.iter_parts():
        assert isinstance(part, EmailMessage)
        content = part.get_content()
        assert isinstance(content, str)
        out[part.get_content_type()] = content.replace("\r\n", "\n")
    return out


# ----------------------------------------------------------------- headers --
def test_every_message_has_the_required_headers() -> None:
    parsed = parse(compose())
    for name in (
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "MIME-Version",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
        "Feedback-ID",
        "Content-Type",
    ):
        assert len(parsed.get_all(name) or []) == 1, name
    assert parsed["From"] == "Example News <news@example.com>"
    assert parsed["To"] == "Ana <ana@example.org>"
    assert parsed["Subject"] == "Hello Ana"
    assert parsed["MIME-Version"] == "1.0"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["Feedback-ID"] == "c7:main-list:newsletter:sokures"
    assert email.utils.parsedate_to_datetime(parsed["Date"]) == datetime.fromtimestamp(NOW, UTC)


def test_message_id_is_unique_and_in_the_sender_domain() -> None:
    first = parse(compose(msg=message(id=1)))["Message-ID"]
    second = parse(compose(msg=message(id=2)))["Message-ID"]
    assert re.fullmatch(r"<[0-9a-z.]+@example\.com>", first)
    assert first != second


def test_list_unsubscribe_has_https_first_then_mailto_with_a_per_recipient_token() -> None:
    signer = TokenSigner(KEY)
    value = parse(compose())["List-Unsubscribe"]
    m = re.fullmatch(
        r"<https://example\.com/unsubscribe/(?P<t1>[^>]+)>, "
        r"<mailto:unsubscribe\+(?P<t2>[^@]+)@example\.com\?subject=unsubscribe>",
        value,
    )
    assert m, value
    assert m["t1"] == m["t2"]
    assert signer.parse_unsubscribe(m["t1"]) == (7, 42)
    other = parse(compose(msg=message(id=2, contact_id=43)))["List-Unsubscribe"]
    assert signer.unsubscribe(7, 43) in other
    assert m["t1"] not in other


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.com/u?t={token}&x=1", "https://example.com/u?t=TOKEN&x=1"),
        ("https://example.com/unsubscribe/", "https://example.com/unsubscribe/TOKEN"),
        ("https://example.com/unsubscribe", "https://example.com/unsubscribe/TOKEN"),
    ],
)
def test_unsubscribe_url_forms(url: str, expected: str) -> None:
    token = TokenSigner(KEY).unsubscribe(7, 42)
    sender = dataclasses.replace(SENDER, unsubscribe_url=url)
    composed = compose(sender=sender)
    link = expected.replace("TOKEN", token)
    assert parse(composed)["List-Unsubscribe"].startswith(f"<{link}>, <mailto:")
    assert link in parts(parse(composed))["text/plain"]  # the template sees the same URL


def test_envelope_sender_is_the_verp_address() -> None:
    composed = compose()
    local, _, domain = composed.envelope_from.partition("@")
    assert domain == "bounces.example.com"
    assert local.startswith("bounce-")
    assert TokenSigner(KEY).parse_verp(local) == 12345
    assert composed.rcpt == "ana@example.org"
    assert composed.message_id == 12345


def test_signatures_come_first() -> None:
    composed = compose()
    raw = composed.to_bytes([b"DKIM-Signature: v=1; a=fake\r\n"])
    assert raw.startswith(b"DKIM-Signature: v=1; a=fake\r\nFrom: ")
    assert raw.endswith(composed.body)


# ------------------------------------------------------------------- body --
def test_multipart_alternative_with_the_rendered_templates() -> None:
    parsed = parse(compose())
    assert parsed.get_content_type() == "multipart/alternative"
    assert not parsed.defects
    token = TokenSigner(KEY).unsubscribe(7, 42)
    url = f"https://example.com/unsubscribe/{token}"
    assert parts(parsed) == {
        "text/plain": (f"Hello Ana\nYou have 3 items and 2 keys.\nUnsubscribe: {url}"),
        "text/html": (
            "<html><body>\n<h1>Hello Ana</h1>\n<p>You have 3 items and 2 keys.</p>\n"
            f'<p><a href="{url}">Unsubscribe</a></p>\n</body></html>'
        ),
    }
    for part in parsed.iter_parts():
        assert part.get_content_charset() == "utf-8"
        # ASCII with short lines: sent as it is (RFC 2045 §2.7)
        assert part["Content-Transfer-Encoding"] == "7bit"


def test_plain_text_campaign_is_a_single_part() -> None:
    parsed = parse(compose(campaign(html_template=None)))
    assert parsed.get_content_type() == "text/plain"
    content = parsed.get_content()
    assert isinstance(content, str)
    assert content.replace("\r\n", "\n").startswith("Hello Ana\nYou have 3 items")


def test_contact_data_is_escaped_in_html_but_not_in_text() -> None:
    evil = "<script>alert(1)</script> & Co"
    p = parts(parse(compose(msg=message(name=evil))))
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in p["text/html"]
    assert "<script>" not in p["text/html"]
    assert f"Hello {evil}\n" in p["text/plain"]


def test_columns_named_like_dict_methods_render_as_columns() -> None:
    msg = message(fields={"items": "five apples", "keys": "the red one", "values": "v"})
    record = campaign(
        text_template="{{ contact.items }}|{{ contact.keys }}|{{ contact['values'] }}|"
        "{{ contact.email }}|{{ contact.missing }}|{{ contact.missing|default('none') }}\n"
    )
    text = parts(parse(compose(record, msg)))["text/plain"]
    assert text == "five apples|the red one|v|ana@example.org||none"


# ------------------------------------------------------------- encodings --
def test_non_ascii_subject_and_names_are_encoded_words() -> None:
    record = campaign(from_name="Café Société", subject="Ça va, {{ name }} ? ✉")
    composed = compose(record, message(name="Zoë Ångström"))
    raw = composed.to_bytes()
    head = b"\r\n".join(header_lines(raw))
    assert head.isascii()
    assert b"=?utf-8?" in head.lower()
    parsed = parse(composed)
    assert parsed["Subject"] == "Ça va, Zoë Ångström ? ✉"
    assert parsed["From"].addresses[0].display_name == "Café Société"
    assert parsed["From"].addresses[0].addr_spec == "news@example.com"
    assert parsed["To"].addresses[0].display_name == "Zoë Ångström"
    assert parsed["To"].addresses[0].addr_spec == "ana@example.org"


@pytest.mark.parametrize(
    "subject",
    [
        "A rather long subject line about our spring newsletter " * 4 + "{{ name }}",
        "Une très longue ligne d'objet à propos de notre lettre du printemps " * 3,
        "Ein" + "sehrlangeswort" * 10 + " am Anfang",
    ],
)
def test_long_subjects_fold_under_78_columns(subject: str) -> None:
    composed = compose(campaign(subject=subject))
    lines = header_lines(composed.to_bytes())
    start = next(i for i, line in enumerate(lines) if line.startswith(b"Subject:"))
    subject_lines = [lines[start]]
    subject_lines += [line for line in lines[start + 1 :] if line[:1] in (b" ", b"\t")]
    if "sehrlanges" not in subject:
        assert len(subject_lines) > 1
    for line in subject_lines:
        value = line.removeprefix(b"Subject:").strip()
        if b" " in value:  # a single word longer than a line cannot be folded
            assert len(line) <= 78, line
    expected = subject.replace("{{ name }}", "Ana").strip()
    assert parse(composed)["Subject"].strip() == expected


def test_all_header_lines_are_short_and_ascii() -> None:
    composed = compose(campaign(from_name="Ñews " * 20), message(name="Zoë " * 25))
    for line in header_lines(composed.to_bytes()):
        assert line.isascii()
        assert len(line) <= 78, line


def test_unclosed_block_in_html_names_the_file() -> None:
    with pytest.raises(InputError) as info:
        compile_templates("<p>{% if x %}Hello</p>\n", "news.html", "Subject")
    assert str(info.value).startswith("news.html:")


def test_internationalized_address_is_an_input_error_not_a_crash() -> None:
    # contacts import accepts UTF-8 local parts (RFC 6531); they cannot go in an ASCII To
    with pytest.raises(InputError, match="SMTPUTF8"):
        compose(msg=message(rcpt="jöe@exämple.com"))


def test_quoted_printable_lines_never_exceed_76() -> None:
    long_line = "x" * 300 + " " + "é" * 200 + " " + "word " * 80 + "=" * 100 + " \t"
    record = campaign(
        html_template="<p>{{ contact.long }}</p>" + "<span>" * 100,
        text_template="{{ contact.long }}\n{{ contact.long }}",
    )
    composed = compose(record, message(fields={"long": long_line}))
    for line in body_of(composed.to_bytes()).split(b"\r\n"):
        assert len(line) <= 76, line
    p = parts(parse(composed))
    assert p["text/plain"] == f"{long_line}\n{long_line}"
    assert p["text/html"] == f"<p>{long_line}</p>" + "<span>" * 100


@pytest.mark.parametrize(
    ("body", "encoding"),
    [
        ("plain ASCII\nshort lines\n", "7bit"),
        ("caf\u00e9\n", "quoted-printable"),  # not ASCII
        ("x" * 999 + "\n", "quoted-printable"),  # longer than RFC 5322's 998
        ("x" * 998 + "\n", "7bit"),
    ],
)
def test_transfer_encoding_is_7bit_only_when_it_may_be(body: str, encoding: str) -> None:
    record = campaign(html_template=None, text_template="{{ contact.body }}")
    parsed = parse(compose(record, message(fields={"body": body})))
    assert parsed["Content-Transfer-Encoding"] == encoding
    assert parsed.get_content().replace("\r\n", "\n") == body


def test_7bit_parts_lose_trailing_blanks_that_relays_would_strip() -> None:
    record = campaign(html_template=None, text_template="{{ contact.body }}")
    composed = compose(record, message(fields={"body": "a  \nb\t\nc"}))
    assert body_of(composed.to_bytes()) == b"a\r\nb\r\nc\r\n"


@settings(max_examples=80, deadline=None)
@given(st.text(max_size=400))
def test_any_text_survives_either_encoding(value: str) -> None:
    record = campaign(html_template=None, text_template="{{ contact.body }}")
    composed = compose(record, message(fields={"body": value}))
    parsed = parse(composed)
    limit = 76 if parsed["Content-Transfer-Encoding"] == "quoted-printable" else 998
    for line in body_of(composed.to_bytes()).split(b"\r\n"):
        assert len(line) <= limit, line
    content = parsed.get_content()
    assert isinstance(content, str)
    expected = value.replace("\r\n", "\n").replace("\r", "\n")
    if not expected.endswith("\n"):
        expected += "\n"
    if parsed["Content-Transfer-Encoding"] == "7bit":
        expected = re.sub(r"[ \t]+\n", "\n", expected)
    assert content.replace("\r\n", "\n") == expected


# ------------------------------------------------------ header injection --
@pytest.mark.parametrize(
    "value",
    [
        "News\r\nBcc: victim@example.net <news@example.com>",
        "News <news@example.com>\nBcc: x",
        "News\r <news@example.com>",
        "news@example.com\x00",
    ],
)
def test_line_break_in_from_is_refused(value: str) -> None:
    with pytest.raises(HeaderInjectionError):
        parse_from(value)


@pytest.mark.parametrize("subject", ["Hello\r\nBcc: victim@example.net", "Hi\nthere", "Hi\r"])
def test_line_break_in_subject_is_refused(subject: str) -> None:
    with pytest.raises(HeaderInjectionError, match="--subject"):
        compile_templates("Hello", "news.txt", subject)


def test_line_break_from_a_custom_field_in_the_rendered_subject_is_refused() -> None:
    record = campaign(subject="News about {{ contact.topic }}")
    msg = message(fields={"topic": "cats\r\nBcc: victim@example.net"})
    with pytest.raises(HeaderInjectionError, match="rendered subject"):
        compose(record, msg)
    assert isinstance(HeaderInjectionError("x"), InputError)


def test_line_break_in_a_contact_name_is_refused() -> None:
    record = campaign(subject="Hello")  # the name reaches only the To header
    with pytest.raises(HeaderInjectionError, match="contact name"):
        compose(record, message(name="Ana\r\nBcc: victim@example.net"))


def test_check_header_value_passes_clean_values() -> None:
    assert check_header_value("x", "Fine: value ✓") == "Fine: value ✓"


def test_parse_from() -> None:
    assert parse_from("Example News <news@example.com>") == ("Example News", "news@example.com")
    assert parse_from("news@example.com") == (None, "news@example.com")
    assert parse_from("News <news@exämple.com>") == ("News", "news@xn--exmple-cua.com")
    for bad in ("not an address", "News <>", "a@", "News <news@@example.com>"):
        with pytest.raises(InputError):
            parse_from(bad)
    with pytest.raises(InputError, match="SMTPUTF8"):
        parse_from("Jöe <jöe@example.com>")


# --------------------------------------------------------------- templates --
@pytest.mark.parametrize(
    ("source", "name", "line"),
    [
        ("Hello\n\n{{ name | }}\nbye\n", "news.txt", 3),
        ("Hello\n{% endif %}\n", "news.txt", 2),
        ("Hello {{ name }\n", "news.txt", 1),
        ("<html>\n<body>\n<p>{{ name</p>\n</body>\n</html>\n", "news.html", 3),
        ("<html>\n<body>\n<p>{{ name }</p>\n</body>\n</html>\n", "news.html", 3),
        ("<p>\n{% if x %}\n<b>{% endfor %}</b>\n</p>\n", "news.html", 3),
        ("line\nline\n{% for x in %}{% endfor %}\n", "news.txt", 3),
    ],
)
def test_template_syntax_error_names_the_line(source: str, name: str, line: int) -> None:
    with pytest.raises(InputError) as info:
        compile_templates(source, name, "Subject")
    assert info.value.line == line
    assert str(info.value).startswith(f"{name}:{line}: ")
    assert not isinstance(info.value, HeaderInjectionError)


def test_subject_syntax_error() -> None:
    with pytest.raises(InputError) as info:
        compile_templates("Hello", "news.txt", "Hello {{ name")
    assert info.value.source == "--subject"
    assert info.value.line == 1


def test_render_error_is_an_input_error_for_that_recipient() -> None:
    record = campaign(html_template=None, text_template="{{ contact.a|int // contact.b|int }}")
    assert "2" in parts_or_text(compose(record, message(fields={"a": "4", "b": "2"})))
    with pytest.raises(InputError, match=re.escape("ana@example.org")):
        compose(record, message(fields={"a": "4", "b": "0"}))
    record = campaign(subject="{{ contact.x.y.z }}")
    with pytest.raises(InputError, match=re.escape("ana@example.org")):
        compose(record, message())


def parts_or_text(composed: ComposedMessage) -> str:
    parsed = parse(composed)
    if parsed.is_multipart():
        return parts(parsed)["text/plain"]
    content = parsed.get_content()
    assert isinstance(content, str)
    return content


def test_sandbox_refuses_unsafe_attributes() -> None:
    record = campaign(html_template=None, text_template="{{ ''.__class__.__mro__ }}")
    with pytest.raises(InputError):
        compose(record)


def test_plain_text_template_file() -> None:
    html, text = compile_templates("Hello {{ name }}\n", "news.txt", "Hi")
    assert html is None
    assert text == "Hello {{ name }}\n"


def test_html_template_derives_the_text_part() -> None:
    source = (
        "<html><head><style>p { color: red }</style></head><body>"
        "<h1>Hello {{ contact.name }}</h1>"
        '<p>Read <a href="https://example.com/spring">our spring news</a>.</p>'
        "<ul><li>one</li><li>two</li></ul>"
        "</body></html>"
    )
    html, text = compile_templates(source, "news.html", "Hi {{ name }}")
    assert html == source
    assert "<" not in text.replace("{{", "").replace("{%", "")
    record = campaign(html_template=html, text_template=text, subject="Hi {{ name }}")
    p = parts(parse(compose(record, message(name="Ana"))))
    plain = p["text/plain"]
    assert "Hello Ana" in plain
    assert "our spring news (https://example.com/spring)" in plain
    assert "- one" in plain and "- two" in plain
    assert "color" not in plain
    assert "<h1>Hello Ana</h1>" in p["text/html"]


def test_html_is_recognised_by_content_too() -> None:
    html, text = compile_templates("<p>Hello {{ name }}</p>\n", "news.txt", "Hi")
    assert html == "<p>Hello {{ name }}</p>\n"
    assert "<p>" not in text
