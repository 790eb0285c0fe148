"""Fixtures shared by the test suite: real servers on loopback (see tests/servers/)."""

pytest_plugins = (
    "tests.store_helpers",
    "tests.servers.dns",
    "tests.servers.dovecot",
    "tests.servers.opendkim",
    "tests.servers.postgres",
    "tests.servers.smtp_receiver",
    "tests.servers.smtp_sink",
)
