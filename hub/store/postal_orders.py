"""The postal orders the hub placed (F4), keyed by the waybill code (VNPost ``ItemCode``) the caller assigns.

VNPost takes an ``ItemCode`` the caller assigns from the waybill codes it pre-issued (the Thanh Hóa codebase keeps
such a pool and takes the first unused code, TH-VH:64-71); a code is used for one order only. ``postal_orders``
(migration ``0017``) holds each code the hub used with the order it went to: the dossier, the direction (a
tracking event does not say whether it is a pickup or a result delivery: the hub needs it to move a delivered
result to status 10), the COD amount (reported with the delivery) and its state (``assigned`` while VNPost has
not yet taken it, ``created``, ``delivered``, ``cancelled``).

``assign_item_code`` is what keeps a code from serving two orders, across worker processes: the table's primary
key (connector, item code) and the unique (connector, order key) — one standing order per dossier and
direction, so a retried delivery gets the code of its first attempt back. A cancelled order frees its key: the
next order for that dossier and direction takes a new code.
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

ASSIGNED, CREATED, DELIVERED, CANCELLED = "assigned", "created", "delivered", "cancelled"

postal_orders = sa.Table(
    "postal_orders",
    metadata,
    sa.Column("connector", sa.String(64), primary_key=True),
    sa.Column("item_code", sa.String(100), primary_key=True),
    # "<dossier code>:<direction>" while the order stands; "<…>#<item code>" once cancelled (the key is free again)
    sa.Column("order_key", sa.String(240), nullable=False),
    sa.Column("dossier_code", sa.String(100), nullable=False),
    sa.Column("direction", sa.String(16), nullable=False),
    sa.Column("cod_amount", sa.BigInteger, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("connector", "order_key"),
    sa.Index(None, "connector", "dossier_code"),
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
_FROM = {CREATED: (ASSIGNED,), DELIVERED: (ASSIGNED, CREATED), CANCELLED: (ASSIGNED, CREATED)}


def set_state(engine: sa.Engine, connector: str, item_code: str, state: str) -> bool:
    """Move an order to ``state`` (``created`` once VNPost took it, ``delivered``, ``cancelled``), only forward;
    a cancelled order frees its key for a new order. Returns whether the order moved."""
    with transaction(engine) as conn:
        row = conn.execute(
            sa.select(postal_orders.c.order_key, postal_orders.c.state).where(
                postal_orders.c.connector == connector, postal_orders.c.item_code == item_code
            )
        ).first()
        if row is None or row.state not in _FROM[state]:
            return False
        values: dict[str, object] = {"state": state, "updated_at": now()}
        if state == CANCELLED:
            values["order_key"] = f"{row.order_key}#{item_code}"
        conn.execute(
            postal_orders.update()
            .where(postal_orders.c.connector == connector, postal_orders.c.item_code == item_code)
            .values(**values)
        )
        return True


def find_order(
    engine: sa.Engine, connector: str, *, item_code: str | None = None, dossier_code: str | None = None,
    direction: str | None = None,
) -> PostalOrderRecord | None:  # fmt: skip
    """An order by its item code, or the standing one of a dossier (and direction; the newest when not given)."""
    query = sa.select(postal_orders).where(postal_orders.c.connector == connector)
    if item_code is not None:
        query = query.where(postal_orders.c.item_code == item_code)
    else:
        query = query.where(postal_orders.c.dossier_code == dossier_code, postal_orders.c.state != CANCELLED)
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

    def created(self, connector: str, item_code: str) -> None:
        with self._lock:
            set_state(self.engine, connector, item_code, CREATED)

    def cancelled(self, connector: str, item_code: str) -> None:
        with self._lock:
            set_state(self.engine, connector, item_code, CANCELLED)
