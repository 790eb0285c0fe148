"""Shared by the probe tests: a check module's results, checked and indexed by id."""

from __future__ import annotations

import json
from collections.abc import Sequence

from probes.catalog import CHECKS
from probes.checks import CheckResult

__all__ = ["by_id"]


def by_id(results: Sequence[CheckResult]) -> dict[str, CheckResult]:
    """``results`` by check id, after checking what every module promises: each id once,
    each id in the catalog, evidence that JSON can carry."""
    ids = [r.id for r in results]
    assert len(ids) == len(set(ids)), f"an id reported twice: {ids}"
    assert set(ids) <= set(CHECKS), f"ids not in the catalog: {set(ids) - set(CHECKS)}"
    for result in results:
        json.dumps(result.to_dict())
    return {r.id: r for r in results}
