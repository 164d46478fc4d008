"""Fixtures of the HTTP server tests: a tiny two-market workspace with a lexical bundle.

Helpers are handed out as fixtures (``serve``, ``make_workspace``, ``config``) because test
modules are imported by path and cannot import this file.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from shopsearch.config import Settings
from shopsearch.datasets.base import LoadedData
from shopsearch.ingest.workspace import ingest
from shopsearch.serve.app import create_app
from shopsearch.store.workspace import Workspace
from shopsearch.training.index import build_index

TOKEN = "s3cret-admin-token"

PRODUCTS = pd.DataFrame(
    [
        ("us", "1", "Grey linen sofa 3 seater", "Acme", "Furniture > Sofas", 499.0, True),
        ("us", "2", "Brown leather couch", "Bolt", "Furniture > Sofas", 899.0, True),
        ("us", "3", "Noise cancelling headphones", "Sonic", "Electronics > Audio", 199.0, False),
        ("us", "4", "Trail running shoes", "Swift", "Apparel > Shoes", 89.0, True),
        ("us", "6", "Grey wool throw blanket", "Acme", "Home > Textiles", 39.0, True),
        ("gb", "5", "Grey armchair", "Acme", "Furniture > Chairs", 249.0, True),
        ("gb", "7", "Oak dining table", "Bolt", "Furniture > Tables", 650.0, True),
    ],
    columns=["domain", "product_id", "title", "brand", "category", "price", "in_stock"],
)

Serve = Callable[..., contextlib.AbstractContextManager[TestClient]]


def lexical_settings(token: str | None = TOKEN) -> Settings:
    """Fast settings: lexical retrieval only, with an admin token (``None``: no token); a
    search without a domain searches every market (``[search] default_domain = "*"``)."""
    settings = Settings(serve={"admin_token": token}) if token else Settings()
    settings.retrieval.sources = ["lexical"]
    settings.search.default_domain = "*"
    return settings


def build_workspace(root: Path, products: pd.DataFrame = PRODUCTS) -> Workspace:
    """A workspace with ``products`` and a lexical bundle."""
    ws = Workspace.create(root)
    ingest(ws, LoadedData("generic", products=products), add_domains=True)
    build_index(ws, lexical_settings())
    return ws


@contextlib.contextmanager
def _serving(
    ws: Workspace, settings: Settings | None = None, **options: Any
) -> Iterator[TestClient]:
    app = create_app(ws, settings or lexical_settings(), **options)
    with TestClient(app) as client:
        yield client


@pytest.fixture
def config() -> Callable[..., Settings]:
    """``config(token=TOKEN)``: lexical-only settings."""
    return lexical_settings


@pytest.fixture
def make_workspace() -> Callable[..., Workspace]:
    """``make_workspace(root, products=PRODUCTS)``: a workspace with a lexical bundle."""
    return build_workspace


@pytest.fixture
def serve() -> Serve:
    """``with serve(ws, settings=None, **create_app_options) as client``: app with lifespan."""
    return _serving


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default workspace, built once; tests get copies."""
    return build_workspace(tmp_path_factory.mktemp("template") / "ws").root


@pytest.fixture
def workspace(tmp_path: Path, template: Path) -> Workspace:
    """A fresh copy of the default workspace (products of :data:`PRODUCTS`, a lexical bundle)."""
    shutil.copytree(template, tmp_path / "ws")
    return Workspace.open(tmp_path / "ws")


@pytest.fixture
def client(workspace: Workspace) -> Iterator[TestClient]:
    with _serving(workspace) as client:
        yield client


@pytest.fixture
def admin() -> dict[str, str]:
    """The admin authorization header."""
    return {"Authorization": f"Bearer {TOKEN}"}
