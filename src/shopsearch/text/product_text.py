"""The short text an item encoder reads for a product: title, brand, category leaf, attributes.

Kept short on purpose: a CPU encoder's cost grows with tokens, and titles carry most of the
meaning. Parts already contained in the text (a brand named in the title, say) are not repeated.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import pyarrow as pa

from shopsearch.errors import DataFormatError

#: Attribute values longer than this (characters) are left out.
MAX_ATTRIBUTE_CHARS = 24


def _attribute_parts(attributes: str, max_attributes: int) -> list[str]:
    if max_attributes <= 0 or attributes in ("", "{}"):
        return []
    try:
        parsed = orjson.loads(attributes)
    except orjson.JSONDecodeError as exc:
        raise DataFormatError(
            f"attributes {attributes[:60]!r} is not valid JSON ({exc}); "
            "store attributes as a JSON object string"
        ) from None
    if not isinstance(parsed, dict):
        return []
    parts = []
    for key, value in parsed.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            continue
        text = str(value).strip()
        if text and len(text) <= MAX_ATTRIBUTE_CHARS:
            parts.append(f"{key} {text}")
            if len(parts) == max_attributes:
                break
    return parts


def product_text(
    title: str,
    brand: str = "",
    category: Sequence[str] = (),
    attributes: str = "{}",
    max_attributes: int = 2,
) -> str:
    """The text to encode for one product.

    Args:
        title: the product title.
        brand: the brand, added unless the title already names it.
        category: the category path, root first; its leaf is added unless already present.
        attributes: the product's attributes as a JSON object string; the first
            ``max_attributes`` short scalar values are added as ``"key value"``.
        max_attributes: how many attributes to add at most.

    Returns:
        For example ``"Pegasus 40 road running shoe, Nike, Running Shoes, color blue"``.

    Raises:
        DataFormatError: ``attributes`` is not JSON.
    """
    parts = [title.strip()]
    seen = parts[0].casefold()
    leaf = category[-1] if category else ""
    for extra in (brand.strip(), leaf.strip()):
        if extra and extra.casefold() not in seen:
            parts.append(extra)
            seen += " " + extra.casefold()
    parts.extend(_attribute_parts(attributes, max_attributes))
    return ", ".join(p for p in parts if p)


def product_texts(products: pa.Table, max_attributes: int = 2) -> list[str]:
    """:func:`product_text` for every row of a ``products`` table, in row order."""
    columns = products.select(["title", "brand", "category", "attributes"]).to_pydict()
    return [
        product_text(title, brand, category, attributes, max_attributes)
        for title, brand, category, attributes in zip(
            columns["title"],
            columns["brand"],
            columns["category"],
            columns["attributes"],
            strict=True,
        )
    ]
