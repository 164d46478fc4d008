"""One typed configuration for the CLI, the HTTP app and training.

Values come from, highest priority first: environment variables (``SHOPSEARCH_`` prefix, ``__``
between section and key, e.g. ``SHOPSEARCH_SERVE__PORT=9000``), then a TOML file (the
``--config`` file, else ``WORKSPACE/shopsearch.toml`` when present), then the defaults below.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from shopsearch.errors import InvalidInputError


class RetrievalSettings(BaseModel):
    """Candidate generation."""

    model_config = ConfigDict(extra="forbid")

    sources: list[Literal["lexical", "dense"]] = ["lexical", "dense"]
    fusion: Literal["rrf", "weighted"] = "rrf"
    per_source_k: int = Field(200, ge=1, le=10_000)
    candidates: int = Field(200, ge=1, le=10_000)
    encoder: str = "minilm"
    hnsw_threshold: int = Field(20_000, ge=0)


class RankingSettings(BaseModel):
    """The ranking stage: which model ``shopsearch train --stage ranking`` fits, how it serves."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    model: str = "dnn"
    position_bias: Literal["none", "feature", "ipw"] = "feature"
    epochs: int = Field(3, ge=1, le=100)
    value: Literal["ctr", "gmv", "linear"] = "linear"
    w_click: float = 1.0
    w_cart: float = 2.0
    w_purchase: float = 4.0


class SearchSettings(BaseModel):
    """Request limits and defaults."""

    model_config = ConfigDict(extra="forbid")

    default_size: int = Field(10, ge=1)
    max_size: int = Field(100, ge=1)
    max_page: int = Field(100, ge=1)
    max_query_chars: int = Field(512, ge=1)


class ServeSettings(BaseModel):
    """The HTTP server."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65_535)
    workers: int = Field(1, ge=1, le=64)
    #: Searches computed at once per worker (default: the CPU count); more wait their turn.
    search_concurrency: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=256)
    admin_token: SecretStr | None = None


class Settings(BaseSettings):
    """All settings. Build with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="SHOPSEARCH_", env_nested_delimiter="__", extra="forbid"
    )

    retrieval: RetrievalSettings = RetrievalSettings()
    ranking: RankingSettings = RankingSettings()
    search: SearchSettings = SearchSettings()
    serve: ServeSettings = ServeSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file's values arrive as init arguments; the environment overrides them.
        return (env_settings, init_settings)


def load_settings(workspace: Path | None = None, config_file: Path | None = None) -> Settings:
    """Settings from env, then ``config_file`` (or ``workspace/shopsearch.toml``), then defaults."""
    path = config_file
    if path is None and workspace is not None and (workspace / "shopsearch.toml").exists():
        path = workspace / "shopsearch.toml"
    if path is not None and not path.exists():
        raise InvalidInputError(f"config file {path} does not exist")
    try:
        values = tomllib.loads(path.read_text()) if path is not None else {}
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInputError(f"config file {path} is not valid TOML: {exc}") from exc
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        source = path or "environment"
        raise InvalidInputError(f"invalid configuration ({source}): {problems}") from exc
