"""When a paid fee may be refunded (Tiền Giang Điều 17.4): never once the agency has resolved the procedure the
citizen asked for — the dossier at status 9 (done) or 10 (result returned), DOMAIN.md §2. The intake check
(``hub.registry.core.Registry.authorize_dossier``) and the payment adapter, just before it sends the REFUND,
both ask ``refund_refusal``."""

from __future__ import annotations

RULE = "refund-dossier-resolved"
RESOLVED_STATUSES = frozenset({9, 10})


def refund_refusal(dossier_code: str, status: int | None) -> str | None:
    """Why a refund for a dossier at ``status`` (``None``: unknown to the hub) is refused, or ``None``."""
    if status in RESOLVED_STATUSES:
        return f"dossier {dossier_code} is resolved (status {status}): its fees are not refunded (Tiền Giang Điều 17.4)"
    return None
