"""The provincial system adapter: the hub-signed envelope POSTed as it is (``application/xml``, with
``X-Message-Id`` and ``X-Message-Type``) to the one-stop system's inbox. The same for ministry software that
receives envelopes over HTTPS."""

from __future__ import annotations

from adapters.http import HttpAdapter


class ProvincialAdapter(HttpAdapter):
    """Plain signed-envelope delivery to the provincial system (``hub.devtools.simulators.ProvincialSimulator``)."""
