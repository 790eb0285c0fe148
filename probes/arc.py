"""ARC chain validation (RFC 8617) with dkimpy, keys looked up through our resolver.

On time: dkimpy compares ``t=`` with the clock only to refuse signatures from the future
(more than 10 hours ahead), and ``x=`` to refuse expired ones; ARC sets sealed long ago
(the ValiMail suite's ``t=12345``) validate today.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import dkim as dkimpy

from deliver.dns import Resolver
from probes.authresults import KeyLookup, KeyLookupFailed, ReasonLog

__all__ = ["ArcResult", "verify_arc"]


@dataclass(frozen=True, slots=True)
class ArcResult:
    """The chain validation status (RFC 8617 §4.4: ``pass``, ``fail`` or ``none``).

    ``terminated``: an ARC-Seal carried ``cv=fail``, so the chain ended there and the
    status is ``fail`` (RFC 8617 §5.2 step 2; the older draft the ValiMail suite follows
    gave no status at all). ``error``: a key could not be looked up, so the chain could
    not be validated (``cv`` is then ``fail``, and the check reports ``error``).
    """

    cv: str
    instances: int = 0
    reason: str = ""
    terminated: bool = False
    error: str | None = None
    #: per ARC set, newest first: instance, AMS/AS domain and selector, validity, cv
    sets: tuple[dict[str, Any], ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {"cv": self.cv, "instances": self.instances, "reason": self.reason,
                "terminated": self.terminated, "error": self.error,
                "sets": [dict(s) for s in self.sets]}  # fmt: skip


async def verify_arc(resolver: Resolver, raw: bytes) -> ArcResult:
    """Validate the ARC chain of ``raw`` (dkimpy in a worker thread, keys via ``resolver``)."""
    return await asyncio.to_thread(_verify_arc, resolver, raw)


def _verify_arc(resolver: Resolver, raw: bytes) -> ArcResult:
    lookup = KeyLookup(resolver)
    log = ReasonLog()
    try:
        arc = dkimpy.ARC(raw, logger=log.logger())
        instances = int(arc.sorted_arc_headers()[0])
        cv, sets, reason = arc.verify(dnsfunc=lookup)
    except KeyLookupFailed as exc:
        return ArcResult("fail", reason=str(exc), error=str(exc))
    except dkimpy.DKIMException as exc:
        # malformed ARC headers (or a message dkimpy cannot parse): the chain fails
        return ArcResult("fail", reason=str(exc) or type(exc).__name__)
    except Exception as exc:  # dkimpy on input it does not expect: never a traceback
        return ArcResult("fail", reason=f"the ARC header fields cannot be processed ({exc!r})")
    shown = tuple(_set_summary(s) for s in sets)
    if cv is None:  # dkimpy's "the chain has ended": a seal said cv=fail
        return ArcResult("fail", instances, reason, terminated=True, sets=shown)
    return ArcResult(cv.decode("ascii"), instances, reason, sets=shown)


def _set_summary(result: dict[str, Any]) -> dict[str, Any]:
    def text(value: Any) -> Any:
        return value.decode("ascii", "replace") if isinstance(value, bytes) else value

    keys = ("instance", "ams-domain", "ams-selector", "ams-valid", "as-domain", "as-selector",
            "as-valid", "cv")  # fmt: skip
    return {k: text(result[k]) for k in keys if k in result}
