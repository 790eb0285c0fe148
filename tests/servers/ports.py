"""Free loopback ports and the skip-or-fail rule for missing server programs."""

from __future__ import annotations

import os
import shutil

import pytest

from lab.ports import free_port

__all__ = ["free_port", "in_ci", "require_program"]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_program(path_or_name: str, package: str) -> str:
    """The program's path; skip the test without it, or fail when running under CI."""
    if os.path.isabs(path_or_name):
        found = path_or_name if os.access(path_or_name, os.X_OK) else None
    else:
        found = shutil.which(path_or_name)
    if found:
        return found
    message = (
        f"{path_or_name} not found (Debian package {package}; `make test` installs it as root)"
    )
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)
    raise AssertionError("unreachable")
