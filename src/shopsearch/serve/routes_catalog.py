"""``GET``, ``PUT`` and ``DELETE /products/{domain}/{product_id}``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from fastapi.responses import Response
from pydantic import AfterValidator

from shopsearch.catalog.limits import ID_RULE, LIMITS
from shopsearch.serve.auth import admin_guard
from shopsearch.serve.catalog import delete_product, put_product, read_product
from shopsearch.serve.errors import ApiError
from shopsearch.serve.models import DeletedOut, ProductIn, ProductOut, checked_id
from shopsearch.serve.responses import error_responses, json_response
from shopsearch.serve.state import ServerState

IdPath = Annotated[
    str,
    Path(min_length=1, max_length=LIMITS.max_id_chars, description=f"Rule: {ID_RULE}."),
    AfterValidator(checked_id),
]
_ROUTE = "/products/{domain}/{product_id}"


def catalog_router(state: ServerState) -> APIRouter:
    """Product read and (admin) write endpoints."""
    router = APIRouter()
    admin = [Depends(admin_guard(state.settings))]

    @router.get(
        _ROUTE, response_model=ProductOut, responses=error_responses(404, 422), summary="A product"
    )
    def get_product(domain: IdPath, product_id: IdPath) -> Response:
        product = read_product(state.workspace, domain, product_id)
        if product is None:
            raise ApiError(404, "product_id", f"no product {product_id!r} in domain {domain!r}")
        return json_response(product)

    @router.put(
        _ROUTE,
        response_model=ProductOut,
        dependencies=admin,
        responses=error_responses(400, 401, 403, 409, 413, 422),
        summary="Create or replace a product (admin)",
    )
    def put(domain: IdPath, product_id: IdPath, body: ProductIn) -> Response:
        """Store the product and update the live indexes incrementally."""
        return json_response(put_product(state, domain, product_id, body))

    @router.delete(
        _ROUTE,
        response_model=DeletedOut,
        dependencies=admin,
        responses=error_responses(401, 403, 404, 409, 422),
        summary="Delete a product (admin)",
    )
    def delete(domain: IdPath, product_id: IdPath) -> Response:
        """Remove the product from the table and the live indexes."""
        delete_product(state, domain, product_id)
        return json_response({"deleted": {"domain": domain, "product_id": product_id}})

    return router
