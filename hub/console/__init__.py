"""The operator console: the page at ``/`` of ``hub serve`` (``routes``) and its other pages (``message_log``,
``history``, ``trust_page``, ``actions``, the admin's ``accounts`` and ``audit_view``), wired by ``install``, sharing
``pages``; view models (``views``), sign-in (``auth``), roles (``roles``), labels (``i18n``) and the matching
Prometheus gauges (``metrics``)."""

from hub.console.install import install_console

__all__ = ["install_console"]
