"""The calls of a delivery that a partner already accepted, when one delivery is several calls (a national portal
supplement step: its ``CapNhatTienDoHoSoMC`` progress record, then the dossier's ``DongBoHoSoMC`` record).

A retry or a replay delivers the whole delivery again. ``CapNhatTienDoHoSoMC`` adds progress records (OC-DV:2146-2150,
507-524); no source says the portal drops one sent twice (unsourced: taken as kept twice), and none shows a way to ask
whether it has one (``TraCuuHoSo`` answers the dossier's record, OC-DV:1933-1944). ``DongBoHoSoMC`` is the dossier's
one record, inserted or updated (OC-DV:2124-2137): sending it again is harmless. So a call the partner accepted is
kept here, and a later attempt of the same delivery skips it and sends only what is left — while its receipt still
carries every body the partner received (the message log's ``sent``).

``delivery_steps`` (migration ``0021``): one row per (delivery, step) accepted, with the call's summary and the
exact bytes sent; gone with its delivery (``ON DELETE CASCADE``). The delivery is found by what an adapter knows of
it: the message's sender and id, and the destination (``messages`` unique (sender, message_id), ``deliveries``
unique (message_pk, destination)).
"""

from __future__ import annotations

import sqlalchemy as sa

from hub.store.database import normalise_url, now, transaction
from hub.store.schema import Id, UTCDateTime, deliveries, messages, metadata

delivery_steps = sa.Table(
    "delivery_steps",
    metadata,
    sa.Column("delivery_id", Id, sa.ForeignKey("deliveries.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("step", sa.String(64), primary_key=True),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("sent", sa.LargeBinary, nullable=False),
    sa.Column("done_at", UTCDateTime, nullable=False),
)


def _delivery_id(conn: sa.Connection, sender: str, message_id: str, destination: str) -> int | None:
    query = (
        sa.select(deliveries.c.id)
        .join(messages, messages.c.id == deliveries.c.message_pk)
        .where(messages.c.sender == sender, messages.c.message_id == message_id,
               deliveries.c.destination == destination)
    )  # fmt: skip
    found = conn.execute(query).scalar_one_or_none()
    return None if found is None else int(found)


class DeliverySteps:
    """The adapters' view of ``delivery_steps`` (``adapters.registry.AdapterContext.delivery_steps``): which calls of
    a delivery the partner accepted, without the adapter importing the store."""

    def __init__(self, engine_or_url: sa.Engine | str) -> None:
        if isinstance(engine_or_url, str):
            engine_or_url = sa.create_engine(normalise_url(engine_or_url))
        self.engine = engine_or_url

    def done(self, sender: str, message_id: str, destination: str, step: str) -> tuple[str, bytes] | None:
        """The summary and bytes of ``step`` if an earlier attempt of this delivery had it accepted, else ``None``."""
        with transaction(self.engine, readonly=True) as conn:
            delivery = _delivery_id(conn, sender, message_id, destination)
            if delivery is None:
                return None
            row = conn.execute(
                sa.select(delivery_steps.c.summary, delivery_steps.c.sent).where(
                    delivery_steps.c.delivery_id == delivery, delivery_steps.c.step == step
                )
            ).first()
        return None if row is None else (str(row.summary), bytes(row.sent))

    def record(self, sender: str, message_id: str, destination: str, step: str, summary: str, sent: bytes) -> bool:
        """Keep that the partner accepted ``step`` of this delivery (the first record stands); ``False`` when the
        delivery is not in the store (nothing to attach it to)."""
        with transaction(self.engine) as conn:
            delivery = _delivery_id(conn, sender, message_id, destination)
            if delivery is None:
                return False
            exists = conn.execute(
                sa.select(delivery_steps.c.step).where(
                    delivery_steps.c.delivery_id == delivery, delivery_steps.c.step == step
                )
            ).first()
            if exists is None:
                conn.execute(delivery_steps.insert().values(
                    delivery_id=delivery, step=step, summary=summary, sent=sent, done_at=now()
                ))  # fmt: skip
        return True
