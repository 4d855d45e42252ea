"""Documents a partner simulator serves to the hub: a ministry's result files (the links of ``KetThuc`` /
``KetThucHoSo``), fetched by the hub's workers before a finished update is forwarded (``hub.exchange.results``).

``DocumentHost`` is mixed into a simulator (before its ``SimulatorServer`` base): ``publish(name, data)`` puts a
file at ``GET {base_url}/documents/<name>`` and returns its URL; ``signed_result(dossier_code, signer)`` makes a
result PDF signed with ``hub.devtools.pdf_documents`` (the demo CA's ``competent-agency`` for the happy path,
``other-signer`` for a forgery), publishes it and returns the ``ResultDocument`` the step names. What was fetched
is listed in ``GET /_received`` under ``documents_fetched``.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

from hub.devtools.pdf_documents import PdfSigningKey, signed_result_pdf
from hub.devtools.simulators.base import SimulatorHandler

PREFIX = "/documents/"


class DocumentHost:
    """Serves published documents at ``/documents/<name>`` (mixed into a ``SimulatorServer``)."""

    base_url: str

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._documents: dict[str, tuple[bytes, str]] = {}
        self._documents_lock = threading.Lock()
        self.documents_fetched: list[str] = []

    def publish(self, name: str, data: bytes, content_type: str = "application/pdf") -> str:
        """Serve ``data`` at ``/documents/<name>`` (replacing what was there); its URL."""
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"document name {name!r}: one path segment, not hidden")
        with self._documents_lock:
            self._documents[name] = (data, content_type)
        return f"{self.base_url}{PREFIX}{name}"

    def signed_result(
        self, dossier_code: str, signer: PdfSigningKey, *, code: str = "KQ-1", name: str = "Giấy chứng nhận",
        file_name: str | None = None, with_digest: bool = False,
    ) -> Any:  # fmt: skip
        """Sign a result PDF for ``dossier_code`` with ``signer``, publish it, and return the ministry's
        ``ResultDocument`` for it (``with_digest``: with its SHA-256, ``MaBam``)."""
        from hub.devtools.simulators.ministry import ResultDocument

        data = signed_result_pdf(dossier_code, signer, name=name)
        url = self.publish(file_name or f"{dossier_code}-{code}.pdf", data)
        return ResultDocument(code=code, name=name, url=url,
                              sha256=hashlib.sha256(data).hexdigest() if with_digest else None)  # fmt: skip

    def serve_document(self, handler: SimulatorHandler, path: str) -> bool:
        """Answer ``GET /documents/<name>``; ``False`` when ``path`` is not a document's."""
        if not path.startswith(PREFIX):
            return False
        name = path[len(PREFIX) :]
        with self._documents_lock:
            found = self._documents.get(name)
            if found is not None:
                self.documents_fetched.append(name)
        if found is None:
            handler.reply(404, {"error": f"no document {name}"})
        else:
            handler.reply(200, found[0], found[1])
        return True

    def handle_get(self, handler: SimulatorHandler, path: str) -> None:
        if not self.serve_document(handler, path):
            super().handle_get(handler, path)  # type: ignore[misc]

    def received(self) -> dict[str, Any]:
        data: dict[str, Any] = super().received()  # type: ignore[misc]
        with self._documents_lock:
            data["documents_fetched"] = list(self.documents_fetched)
        return data

    def reset(self) -> None:
        super().reset()  # type: ignore[misc]
        with self._documents_lock:
            self.documents_fetched = []
