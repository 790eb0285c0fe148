"""Creating a campaign and reporting where its messages stand."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deliver.compose import compile_templates, parse_from
from deliver.errors import InputError
from deliver.settings import Settings
from deliver.shaping import ShapingPolicy
from deliver.store import Store
from deliver.store.campaigns import CampaignRecord
from deliver.store.models import MessageState

__all__ = ["CreatedCampaign", "campaign_status", "create_campaign"]

STATES = tuple(s.value for s in MessageState)


@dataclass
class CreatedCampaign:
    campaign: CampaignRecord
    suppressed: int
    seconds: float
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        c = self.campaign
        return {
            "campaign": c.name,
            "id": c.id,
            "list": c.list_name,
            "total": c.total,
            "queued": c.total - self.suppressed,
            "suppressed": self.suppressed,
            "html": c.html_template is not None,
            "seconds": round(self.seconds, 3),
            "warnings": self.warnings,
        }


def create_campaign(
    settings: Settings,
    store: Store,
    *,
    name: str,
    template: Path,
    sender: str,
    subject: str,
    list_name: str = "default",
) -> CreatedCampaign:
    """Check the inputs, then create the campaign and enqueue one message per contact."""
    started = time.monotonic()
    domain = settings.require_domain()
    if not name.strip() or len(name) > 128:
        raise InputError("the campaign name must be 1 to 128 characters")
    from_name, from_addr = parse_from(sender)
    try:
        source = template.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", source=str(template)) from None
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", source=str(template)) from None
    html, text = compile_templates(source, template.name, subject)
    list_id = store.contacts.list_id(list_name)
    warnings = []
    from_domain = from_addr.rpartition("@")[2].lower()
    if (
        from_domain != domain
        and not from_domain.endswith("." + domain)
        and not domain.endswith("." + from_domain)
    ):
        warnings.append(
            f"the From domain {from_domain} does not align with the DKIM domain "
            f"{domain}: DMARC will fail"
        )
    policy = ShapingPolicy.load(settings.shaping_file)
    record, suppressed = store.campaigns.create(
        name=name,
        list_id=list_id,
        from_addr=from_addr,
        from_name=from_name,
        subject=subject,
        html_template=html,
        text_template=text,
        template_file=str(template),
        provider_of_domain=policy.domain_map(),
        now=time.time(),
    )
    return CreatedCampaign(record, suppressed, time.monotonic() - started, warnings)


def campaign_status(store: Store, name: str) -> dict[str, Any]:
    """The ``status --json`` contract: totals per state, and per provider."""
    campaign = store.campaigns.get(name)
    counts = store.queue.counts(campaign.id)
    states = dict.fromkeys(STATES, 0)
    providers: dict[str, dict[str, int]] = {}
    for (state, provider), n in counts.items():
        states[state] = states.get(state, 0) + n
        per = providers.setdefault(provider or "unrouted", dict.fromkeys(STATES, 0))
        per[state] = per.get(state, 0) + n
    reasons: dict[str, dict[str, int]] = {}
    for (state, reason), n in sorted(store.queue.reasons(campaign.id).items()):
        reasons.setdefault(state, {})[reason] = n
    return {
        "campaign": campaign.name,
        "total": sum(states.values()),
        "states": states,
        "providers": dict(sorted(providers.items())),
        # beyond DESIGN.md's contract (added keys only): why messages were not delivered
        "reasons": reasons,
    }
