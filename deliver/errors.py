"""Exceptions raised by sokures.

Every error the project raises on purpose derives from :class:`SokuresError`, and
also from the builtin it resembles, so callers can catch either::

    SokuresError
    ├── ConfigError (ValueError)           bad sokures.toml, shaping.toml, env variable
    │   └── PolicyError                    a policy file (shaping, rulebook) names file and key
    ├── InputError (ValueError)            bad user input: CSV row, template, address
    │   └── HeaderInjectionError           CR/LF where a header value is built
    ├── DkimKeyError (ValueError)          a DKIM key that cannot be loaded or used
    ├── StoreError (RuntimeError)          the database is unusable (not a missing row)
    │   └── NotFound (LookupError)         a campaign, contact or list that does not exist
    └── DeliveryError (RuntimeError)       a delivery attempt failed; carries the reply
        └── RouteError                     no way to reach the domain (null MX, no host)

The CLI turns any :class:`SokuresError` into a one-line message and exit code 2
(bad usage or input) or 1 (a failure the user must act on); never a traceback.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DeliveryError",
    "DkimKeyError",
    "HeaderInjectionError",
    "InputError",
    "NotFound",
    "PolicyError",
    "RouteError",
    "SokuresError",
    "StoreError",
]


class SokuresError(Exception):
    """Root of the errors sokures raises on purpose."""

    #: exit code the CLI uses for this error: 2 = bad usage or input, 1 = failure
    exit_code: int = 1


class ConfigError(SokuresError, ValueError):
    """A configuration value is missing or invalid."""

    exit_code = 2


class PolicyError(ConfigError):
    """A policy file (shaping, rulebook) is malformed; names the file and key."""

    def __init__(self, file: str, key: str, reason: str) -> None:
        super().__init__(f"{file}: {key}: {reason}")
        self.file = file
        self.key = key
        self.reason = reason


class InputError(SokuresError, ValueError):
    """User input (a row, a template, an address) is unusable."""

    exit_code = 2

    def __init__(self, reason: str, *, line: int | None = None, source: str | None = None) -> None:
        where = ""
        if source is not None:
            where = f"{source}:{line}: " if line is not None else f"{source}: "
        elif line is not None:
            where = f"line {line}: "
        super().__init__(f"{where}{reason}")
        self.reason = reason
        self.line = line
        self.source = source


class HeaderInjectionError(InputError):
    """CR or LF in a value that becomes part of a header (RFC 5322 §2.2)."""


class DkimKeyError(SokuresError, ValueError):
    """A DKIM private key cannot be read or does not fit its algorithm.

    The message never includes key material.
    """

    exit_code = 2


class StoreError(SokuresError, RuntimeError):
    """The store cannot be opened or migrated."""


class NotFound(StoreError, LookupError):
    """A named object (campaign, list, contact) does not exist."""

    exit_code = 2


class DeliveryError(SokuresError, RuntimeError):
    """A delivery attempt failed; ``code``/``enhanced``/``text`` hold the reply."""

    def __init__(
        self,
        text: str,
        *,
        code: int | None = None,
        enhanced: str | None = None,
        recipient: str | None = None,
    ) -> None:
        super().__init__(text)
        self.code = code
        self.enhanced = enhanced
        self.text = text
        self.recipient = recipient


class RouteError(DeliveryError):
    """The recipient domain cannot be reached (null MX, NXDOMAIN, no address)."""
