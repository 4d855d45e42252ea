"""A partner's login token (the portal's session, the postal service's bearer token), shared by every thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RenewingToken:
    """Fetched once and shared; renewed a little before it expires (by ``renew_margin_s``, but at most a tenth of
    its life, for short-lived tokens) and dropped when the partner stops accepting it.

    ``fetch`` returns the new token and its lifetime in seconds; it runs under the lock, so one thread logs in
    while the others wait for its token instead of each logging in.
    """

    def __init__(
        self,
        fetch: Callable[[], tuple[str, float]],
        *,
        renew_margin_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self.renew_margin_s = renew_margin_s
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0.0
        self.fetched = 0

    def get(self) -> str:
        """The cached token, fetching a new one first when there is none or it is about to expire."""
        with self._lock:
            if self._token is not None and self._clock() < self._expires:
                return self._token
            token, ttl = self._fetch()
            self._token = token
            self._expires = self._clock() + ttl - min(self.renew_margin_s, ttl / 10)
            self.fetched += 1
            return token

    def drop(self, token: str) -> None:
        """Forget ``token`` after the partner refused it, unless another thread has already renewed it."""
        with self._lock:
            if self._token == token:
                self._token = None
