"""Fixtures of the command-line tests: tiny workspaces built through the CLI itself.

Helpers are handed out as fixtures (``indexed``) because test modules are imported by path
and cannot import this file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from shopsearch.cli import run

PRODUCTS = pd.DataFrame(
    {
        "product_id": ["1", "2", "3"],
        "title": ["Grey linen sofa", "Oak desk", "Leather sofa bed"],
        "brand": ["Acme", "Bolt", "Acme"],
        "category": ["Furniture > Sofas", "Furniture > Desks", "Furniture > Sofas"],
        "price": [499.0, 199.0, 899.0],
    }
)


def indexed_workspace(root: Path, products: pd.DataFrame, sources: list[str]) -> Path:
    """``root`` with ``products`` ingested (domain ``default``) and indexed by ``sources``."""
    csv = root.parent / f"{root.name}-products.csv"
    products.to_csv(csv, index=False)
    assert run(["ingest", "products", str(csv), "-w", str(root), "--add-domains"]) == 0
    listed = ", ".join(f'"{source}"' for source in sources)
    # MiniLM, not the default model2vec: distilling the real MiniLM would take minutes
    toml = f'[retrieval]\nsources = [{listed}]\ndense_encoder = "minilm"\n'
    (root / "shopsearch.toml").write_text(toml)
    assert run(["index", "-w", str(root)]) == 0
    return root


#: ``indexed(root, products, sources)``: see :func:`indexed_workspace`.
Indexed = Callable[[Path, pd.DataFrame, list[str]], Path]


@pytest.fixture
def indexed() -> Indexed:
    """:func:`indexed_workspace`."""
    return indexed_workspace


@pytest.fixture(scope="session")
def lexical_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """:data:`PRODUCTS` in a lexical-only bundle (do not change it: copy it)."""
    return indexed_workspace(tmp_path_factory.mktemp("cli-lexical") / "ws", PRODUCTS, ["lexical"])


@pytest.fixture(scope="session")
def dense_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """:data:`PRODUCTS` in a lexical + MiniLM bundle, embeddings cached (copy to change it)."""
    root = tmp_path_factory.mktemp("cli-dense") / "ws"
    return indexed_workspace(root, PRODUCTS, ["lexical", "dense"])
