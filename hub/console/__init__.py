"""The operator console: the page at ``/`` of ``hub serve`` (see ``routes``), its view models (``views``),
sign-in (``auth``), roles (``roles``), the admin's accounts page (``accounts``) and audit view (``audit_view``),
labels (``i18n``) and the matching Prometheus gauges (``metrics``)."""

from hub.console.routes import install_console

__all__ = ["install_console"]
