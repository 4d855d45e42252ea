"""Fixtures of the integration tests (shared ones are in ``tests/conftest.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.security import keys
from hub.security.signing import Signer
from tests.support import PROVINCE


@pytest.fixture(autouse=True)
def _heal(request: pytest.FixtureRequest):
    """A module's partner simulator (its ``sim`` fixture, shared by the module) is healed after each test."""
    yield
    if "sim" in request.fixturenames:
        request.getfixturevalue("sim").reset()


@pytest.fixture(scope="module")
def module_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throw-away hub's key folder, made once per test module: the demo CA and the province's RSA-2048 key (its
    certificate naming ``PROVINCE``); the hub's own key is added by the first hub opened on it. Making an RSA key
    costs ~0.1 s and loading it ~45 ms; the loaders cache by file, so a folder shared through ``hub_keys`` is
    made and read once per module instead of once per test."""
    folder = tmp_path_factory.mktemp("keys")
    keys.issue_key("province", folder, code=PROVINCE)
    return folder


@pytest.fixture
def hub_keys(tmp_path: Path, module_keys: Path) -> Path:
    """``tmp_path/var/keys``, where a hub with data folder ``tmp_path/var`` keeps its keys, linked to this module's
    ``module_keys``. Nothing may write there but the hub making its own key: a test that issues keys of its
    own does so in a folder of its own."""
    var = tmp_path / "var"
    var.mkdir(mode=0o700, exist_ok=True)
    (var / "keys").symlink_to(module_keys, target_is_directory=True)
    return var / "keys"


@pytest.fixture
def province_signer(hub_keys: Path) -> Signer:
    """The province's signer from ``hub_keys`` (its certificate names ``PROVINCE``, issued by the hub's demo CA)."""
    return Signer.from_files(hub_keys / "province.key", hub_keys / "province.pem")
