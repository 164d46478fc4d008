"""How a relevance model is stored: a JSON file of settings and a safetensors file of weights."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from shopsearch.errors import WorkspaceError
from shopsearch.store.atomic import write_json

if TYPE_CHECKING:
    import torch
    from torch import nn

WEIGHTS = "weights.safetensors"


def save_model(path: Path, settings_file: str, settings: dict[str, Any], model: nn.Module) -> None:
    """Write ``settings`` to ``path/settings_file`` and ``model``'s weights beside them."""
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    write_json(path / settings_file, settings)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path / WEIGHTS))


def read_model(
    path: Path, settings_file: str, what: str
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The settings and weights :func:`save_model` wrote.

    Raises:
        WorkspaceError: ``path`` holds no such model (``what`` names it in the message).
    """
    from safetensors.torch import load_file

    try:
        body: dict[str, Any] = orjson.loads((path / settings_file).read_bytes())
        weights = load_file(str(path / WEIGHTS))
    except (FileNotFoundError, orjson.JSONDecodeError, OSError) as exc:
        raise WorkspaceError(
            f"{path} holds no relevance {what} ({type(exc).__name__}: {exc}); train it with "
            "'shopsearch train --stage relevance'"
        ) from exc
    return body, weights


__all__ = ["WEIGHTS", "read_model", "save_model"]
