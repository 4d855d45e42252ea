"""The postal orders the hub placed (F4), keyed by the waybill code (VNPost ``ItemCode``) the caller assigns.

VNPost takes an ``ItemCode`` the caller assigns from the waybill codes it pre-issued (the Thanh Hóa codebase keeps
such a pool and takes the first unused code, TH-VH:64-71); a code is used for one order only. ``postal_orders``
(migration ``0017``) holds each code the hub used with the order it went to: the dossier, the direction (a
tracking event does not say whether it is a pickup or a result delivery: the hub needs it to move a delivered
result to status 10), the COD amount (reported with the delivery) and its state (``assigned`` while VNPost has
not yet taken it, ``created``, ``delivered``, ``cancelled``).

``assign_item_code`` is what keeps a code from serving two orders, across worker processes: the table's primary
key (connector, item code) and the unique (connector, order key) — one standing order per dossier and
direction, so a retried delivery gets the code of its first attempt back. A final order — cancelled, or reported
delivered or returned to the sender by VNPost's tracking — frees its key: the next order for that dossier and
direction takes a new code (its old code stays used: a code serves one order).

Migration ``0020`` adds what makes an accepted order take effect once:

- ``posted_by``: the message whose delivery VNPost accepted the order for (``mark_created``), so a
  redelivery of that message finds the order accepted and is not posted again (``accepted_for``);
- ``handover*``: the dossier's status 10 (Đã trả kết quả) a delivered result delivery calls for, kept ``pending``
  until the status machine applies it (``applied``) or it clearly never will (``stale``, ``refused``), so a 10
  the dossier was not ready for is tried again at a later tracking poll instead of being lost.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from hub.errors import ItemCodeError
from hub.store.database import now, transaction
from hub.store.schema import UTCDateTime, metadata

ASSIGNED, CREATED, DELIVERED, RETURNED, CANCELLED = "assigned", "created", "delivered", "returned", "cancelled"
#: The states an order ends in: no longer standing, its dossier and direction free for a new order.
FINAL = frozenset({DELIVERED, RETURNED, CANCELLED})
#: A status 10 waiting for the dossier, applied, or never to be: older than the dossier's state, or refused at a
#: status it cannot leave (3, 7, 10).
PENDING, APPLIED, STALE, REFUSED = "pending", "applied", "stale", "refused"

postal_orders = sa.Table(
    "postal_orders",
    metadata,
    sa.Column("connector", sa.String(64), primary_key=True),
    sa.Column("item_code", sa.String(100), primary_key=True),
    # "<dossier code>:<direction>" while the order stands; "<…>#<item code>" once final (the key is free again)
    sa.Column("order_key", sa.String(240), nullable=False),
    sa.Column("dossier_code", sa.String(100), nullable=False),
    sa.Column("direction", sa.String(16), nullable=False),
    sa.Column("cod_amount", sa.BigInteger, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("posted_by", sa.String(128), nullable=True),  # the message VNPost accepted the order for
    sa.Column("handover", sa.String(16), nullable=True),  # the status 10 of a delivered result: PENDING, APPLIED…
    sa.Column("handover_at", UTCDateTime, nullable=True),  # VNPost's EventTime of the delivery
    sa.Column("handover_note", sa.Text, nullable=True),  # the step's content, as the status 10 carries it
    sa.Column("handover_reason", sa.Text, nullable=True),  # why it is not applied (yet)
    sa.UniqueConstraint("connector", "order_key"),
    sa.Index(None, "connector", "dossier_code"),
    sa.Index(None, "connector", "posted_by"),
    sa.Index(None, "connector", "handover"),
)


@dataclass(frozen=True, slots=True)
class PostalOrderRecord:
    connector: str
    item_code: str
    order_key: str
    dossier_code: str
    direction: str
    cod_amount: int
    state: str
    created_at: datetime
    updated_at: datetime
    posted_by: str | None = None
    handover: str | None = None
    handover_at: datetime | None = None
    handover_note: str | None = None
    handover_reason: str | None = None


def order_key(dossier_code: str, direction: str) -> str:
    return f"{dossier_code}:{direction}"


def _standing(conn: sa.Connection, connector: str, key: str) -> PostalOrderRecord | None:
    row = conn.execute(
        sa.select(postal_orders).where(postal_orders.c.connector == connector, postal_orders.c.order_key == key)
    ).first()
    return None if row is None else PostalOrderRecord(**row._mapping)


def assign_item_code(
    engine: sa.Engine,
    connector: str,
    *,
    dossier_code: str,
    direction: str,
    cod_amount: int,
    given: str | None,
    pool: Sequence[str],
) -> str:
    """The item code of the standing order for (dossier, direction): the one recorded already (a retry), else
    ``given`` (the province's own code), else the first code of ``pool`` no order used. ``ItemCodeError``:
    ``item-code-in-use`` (``given`` serves another order, or differs from the standing order's code),
    ``item-code-pool-empty`` (every code of the pool is used)."""
    key = order_key(dossier_code, direction)
    for _ in range(5):  # another process may take the same free code first: the primary key refuses, try again
        with transaction(engine) as conn:
            standing = _standing(conn, connector, key)
            if standing is not None:
                if given and given != standing.item_code:
                    raise ItemCodeError(
                        "item-code-in-use",
                        f"{dossier_code} ({direction}) already has order {standing.item_code}, not {given}",
                    )
                return standing.item_code
            if given:
                code = given
                owner = conn.execute(
                    sa.select(postal_orders.c.dossier_code).where(
                        postal_orders.c.connector == connector, postal_orders.c.item_code == given
                    )
                ).scalar_one_or_none()
                if owner is not None:
                    raise ItemCodeError("item-code-in-use", f"ItemCode {given} was used for {owner}")
            else:
                used = set(
                    conn.execute(
                        sa.select(postal_orders.c.item_code).where(
                            postal_orders.c.connector == connector, postal_orders.c.item_code.in_(list(pool) or [""])
                        )
                    ).scalars()
                )
                free = [c for c in pool if c not in used]
                if not free:
                    raise ItemCodeError(
                        "item-code-pool-empty",
                        f"every ItemCode of {connector}'s pool ({len(pool)}) is used: add the codes VNPost issued "
                        "to the profile value item_codes",
                    )
                code = free[0]
            at = now()
            try:
                with conn.begin_nested():
                    conn.execute(
                        postal_orders.insert().values(
                            connector=connector, item_code=code, order_key=key, dossier_code=dossier_code,
                            direction=direction, cod_amount=cod_amount, state=ASSIGNED, created_at=at, updated_at=at,
                        )
                    )  # fmt: skip
            except sa.exc.IntegrityError:
                continue
            return code
    raise ItemCodeError("item-code-in-use", f"could not reserve an ItemCode for {dossier_code} ({direction})")


#: The states an order may move to, from each (never back: a late "created" does not undo "delivered").
_FROM = {
    CREATED: (ASSIGNED,),
    DELIVERED: (ASSIGNED, CREATED),
    RETURNED: (ASSIGNED, CREATED),
    CANCELLED: (ASSIGNED, CREATED),
}


def set_state(engine: sa.Engine, connector: str, item_code: str, state: str) -> bool:
    """Move an order to ``state`` (``created`` once VNPost took it, ``delivered``, ``returned``, ``cancelled``),
    only forward; a final order frees its key for a new order. Returns whether the order moved."""
    with transaction(engine) as conn:
        row = conn.execute(
            sa.select(postal_orders.c.order_key, postal_orders.c.state).where(
                postal_orders.c.connector == connector, postal_orders.c.item_code == item_code
            )
        ).first()
        if row is None or row.state not in _FROM[state]:
            return False
        values: dict[str, object] = {"state": state, "updated_at": now()}
        if state in FINAL:
            values["order_key"] = f"{row.order_key}#{item_code}"
        conn.execute(
            postal_orders.update()
            .where(postal_orders.c.connector == connector, postal_orders.c.item_code == item_code)
            .values(**values)
        )
        return True


def mark_created(engine: sa.Engine, connector: str, item_code: str, message_id: str | None) -> bool:
    """VNPost accepted the order for the message ``message_id``: ``created`` (from ``assigned``), and the message
    recorded on a standing order (another message of the same dossier and direction posts the same code, and is
    then the one a redelivery is recognised by). Returns whether the order is recorded so."""
    with transaction(engine) as conn:
        values: dict[str, object] = {"state": sa.case((postal_orders.c.state == ASSIGNED, CREATED),
                                                      else_=postal_orders.c.state), "updated_at": now()}  # fmt: skip
        if message_id is not None:
            values["posted_by"] = message_id
        done = conn.execute(
            postal_orders.update()
            .where(postal_orders.c.connector == connector, postal_orders.c.item_code == item_code,
                   postal_orders.c.state.in_((ASSIGNED, CREATED)))
            .values(**values)
        )  # fmt: skip
        return bool(done.rowcount)


def accepted_for(engine: sa.Engine, connector: str, message_id: str) -> PostalOrderRecord | None:
    """The order VNPost accepted for the message ``message_id`` (whatever its state since), or ``None``."""
    query = sa.select(postal_orders).where(
        postal_orders.c.connector == connector, postal_orders.c.posted_by == message_id
    )
    with engine.connect() as conn:
        row = conn.execute(query.limit(1)).first()
    return None if row is None else PostalOrderRecord(**row._mapping)


def find_order(
    engine: sa.Engine, connector: str, *, item_code: str | None = None, dossier_code: str | None = None,
    direction: str | None = None, standing: bool = False,
) -> PostalOrderRecord | None:  # fmt: skip
    """An order by its item code, or a dossier's (and direction's; the newest when not given) that is not cancelled
    — only one still standing (not final: what can be cancelled) with ``standing``."""
    query = sa.select(postal_orders).where(postal_orders.c.connector == connector)
    if item_code is not None:
        query = query.where(postal_orders.c.item_code == item_code)
    else:
        excluded = FINAL if standing else (CANCELLED,)
        query = query.where(postal_orders.c.dossier_code == dossier_code, postal_orders.c.state.not_in(excluded))
        if direction is not None:
            query = query.where(postal_orders.c.direction == direction)
        query = query.order_by(postal_orders.c.created_at.desc())
    with engine.connect() as conn:
        row = conn.execute(query.limit(1)).first()
    return None if row is None else PostalOrderRecord(**row._mapping)


def orders(engine: sa.Engine, connector: str | None = None) -> list[PostalOrderRecord]:
    query = sa.select(postal_orders).order_by(postal_orders.c.created_at, postal_orders.c.item_code)
    if connector is not None:
        query = query.where(postal_orders.c.connector == connector)
    with engine.connect() as conn:
        return [PostalOrderRecord(**r._mapping) for r in conn.execute(query)]


class OrderBook:
    """The postal adapter's view of ``postal_orders`` (``adapters.registry.AdapterContext.postal_orders``): it
    assigns item codes and records what VNPost took, without the adapter importing the store."""

    def __init__(self, engine_or_url: sa.Engine | str) -> None:
        if isinstance(engine_or_url, str):
            from hub.store.database import normalise_url

            engine_or_url = sa.create_engine(normalise_url(engine_or_url))
        self.engine = engine_or_url
        self._lock = threading.Lock()  # one writer per process on SQLite; PostgreSQL relies on the keys

    def item_code(
        self, connector: str, *, dossier_code: str, direction: str, cod_amount: int, given: str | None,
        pool: Sequence[str],
    ) -> str:  # fmt: skip
        with self._lock:
            return assign_item_code(self.engine, connector, dossier_code=dossier_code, direction=direction,
                                    cod_amount=cod_amount, given=given, pool=pool)  # fmt: skip

    def created(self, connector: str, item_code: str, message_id: str | None = None) -> None:
        with self._lock:
            mark_created(self.engine, connector, item_code, message_id)

    def accepted(self, connector: str, message_id: str) -> str | None:
        found = accepted_for(self.engine, connector, message_id)
        return None if found is None else found.item_code

    def cancelled(self, connector: str, item_code: str) -> None:
        with self._lock:
            set_state(self.engine, connector, item_code, CANCELLED)


# ---------------------------------------------------------------------------------------------- status 10


def hold_handover(engine: sa.Engine, connector: str, item_code: str, *, at: datetime, note: str) -> str | None:
    """Keep the status 10 a delivered result delivery calls for, ``pending`` (the first report of the delivery
    sets it; a later one changes nothing). Returns the handover's state, ``None`` when no such order is recorded."""
    with transaction(engine) as conn:
        state = conn.execute(
            sa.select(postal_orders.c.handover).where(
                postal_orders.c.connector == connector, postal_orders.c.item_code == item_code
            )
        ).first()
        if state is None:
            return None
        if state.handover is not None:
            return str(state.handover)
        conn.execute(
            postal_orders.update()
            .where(postal_orders.c.connector == connector, postal_orders.c.item_code == item_code)
            .values(handover=PENDING, handover_at=at, handover_note=note, updated_at=now())
        )
        return PENDING


def settle_handover(engine: sa.Engine, connector: str, item_code: str, state: str, reason: str | None = None) -> bool:
    """Record what became of a pending status 10: ``applied``, ``stale`` or ``refused`` (final), or ``pending``
    with the reason it waits. Only a pending one changes; returns whether it did."""
    with transaction(engine) as conn:
        done = conn.execute(
            postal_orders.update()
            .where(postal_orders.c.connector == connector, postal_orders.c.item_code == item_code,
                   postal_orders.c.handover == PENDING)
            .values(handover=state, handover_reason=None if reason is None else reason[:2000], updated_at=now())
        )  # fmt: skip
        return bool(done.rowcount)


def pending_handovers(engine: sa.Engine, connector: str) -> list[PostalOrderRecord]:
    """The connector's orders whose status 10 still waits, oldest delivery first."""
    query = (
        sa.select(postal_orders)
        .where(postal_orders.c.connector == connector, postal_orders.c.handover == PENDING)
        .order_by(postal_orders.c.handover_at, postal_orders.c.item_code)
    )
    with engine.connect() as conn:
        return [PostalOrderRecord(**r._mapping) for r in conn.execute(query)]
