"""A delivery's calls the partner already accepted, and no credentials left in stored endpoint URLs.

- ``delivery_steps`` (``hub.store.delivery_steps``): the calls of a multi-call delivery (a national portal supplement
  step: the progress record, then the dossier's record) the partner accepted, with their summary and the bytes
  sent, so a retry or replay sends only the calls left — the portal keeps every progress record it is sent.
- Connector specs no longer take ``user:password@`` in a URL (``endpoint-url-userinfo``): the URL is shown in
  listings, spec dumps, the audit log and error messages. Those stored before lose it: in ``connectors.spec`` the
  user information of ``endpoint.url`` becomes ``endpoint.credentials`` when the connector has none (an SMTP relay
  read its login from the URL and now reads only the credentials), and is removed from every other URL (profile
  values); ``registry_audit`` before/after copies, and the error texts kept in ``deliveries.last_error``,
  ``dead_letters.last_error`` and ``events.detail``, keep the URL without it. Irreversible (the downgrade only drops
  the table).

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-10
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | Sequence[str] | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_USERINFO = re.compile(r"://[^/?#\s\"'<>]*@")  # as hub.logs.mask_url_userinfo, kept here as it was at 0023
_LIKE = "%://%@%"


def Id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _split(url: str) -> tuple[str, str] | None:
    """``(user information, the URL without it)``, or ``None`` when ``url`` has none."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if "@" not in parts.netloc:
        return None
    userinfo, _, host = parts.netloc.rpartition("@")
    return userinfo, urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _scrubbed(value: Any) -> Any:
    """``value`` (JSON) with the user information of every URL string in it removed."""
    if isinstance(value, dict):
        return {k: _scrubbed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrubbed(v) for v in value]
    if isinstance(value, str) and "@" in value and "://" in value:
        split = _split(value.strip())
        return split[1] if split is not None else _USERINFO.sub("://", value)
    return value


def _connector_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A stored spec without URL user information; the endpoint's becomes its credentials when it has none."""
    endpoint = spec.get("endpoint")
    if isinstance(endpoint, dict) and isinstance(endpoint.get("url"), str):
        split = _split(endpoint["url"])
        if split is not None:
            user, _, password = split[0].partition(":")
            moved = dict(endpoint, url=split[1])
            if not endpoint.get("credentials") and unquote(user) and unquote(password):
                moved["credentials"] = {"username": unquote(user), "password": unquote(password), "madonvi": None,
                                        "token": None, "lgsp_access_token": None}  # fmt: skip
            spec = dict(spec, endpoint=moved)
    return _scrubbed(spec)


def _scrub_json(table: sa.TableClause, key: str, columns: Sequence[str], fix: Any = _scrubbed) -> None:
    conn = op.get_bind()
    where = sa.or_(*(sa.cast(table.c[c], sa.Text).like(_LIKE) for c in columns))
    rows = conn.execute(sa.select(table.c[key], *(table.c[c] for c in columns)).where(where)).all()
    for row in rows:
        values = {c: (None if row._mapping[c] is None else fix(row._mapping[c])) for c in columns}
        conn.execute(table.update().where(table.c[key] == row._mapping[key]).values(**values))


def _scrub_text(name: str, column: str) -> None:
    conn = op.get_bind()
    table = sa.table(name, sa.column("id", Id()), sa.column(column, sa.Text))
    for row in conn.execute(sa.select(table.c.id, table.c[column]).where(table.c[column].like(_LIKE))).all():
        text = row._mapping[column]
        conn.execute(table.update().where(table.c.id == row.id).values({column: _USERINFO.sub("://***@", text)}))


def upgrade() -> None:
    op.create_table(
        "delivery_steps",
        sa.Column("delivery_id", Id(), nullable=False),
        sa.Column("step", sa.String(64), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("sent", sa.LargeBinary(), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"], ["deliveries.id"], name="fk_delivery_steps_delivery_id_deliveries", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("delivery_id", "step", name="pk_delivery_steps"),
    )
    connectors = sa.table("connectors", sa.column("code", sa.String), sa.column("spec", sa.JSON))
    _scrub_json(connectors, "code", ["spec"], _connector_spec)
    audit = sa.table("registry_audit", sa.column("id", Id()), sa.column("before", sa.JSON), sa.column("after", sa.JSON))
    _scrub_json(audit, "id", ["before", "after"])
    for name, column in (("deliveries", "last_error"), ("dead_letters", "last_error"), ("events", "detail")):
        _scrub_text(name, column)


def downgrade() -> None:
    op.drop_table("delivery_steps")
