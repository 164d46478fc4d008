"""The lexical source served by shard actors on a Ray cluster (``shopsearch serve --shards``).

:func:`start_shards` splits the catalog into ``shards`` parts (:func:`~shopsearch.retrieval.
lexical_shards.partition`), has a Ray task count each part's statistics, adds them up, and
starts ``replicas`` actors per shard, each building its :class:`~shopsearch.retrieval.
lexical_shards.LexicalShard` with the catalog's statistics (one CPU each). :func:`shard_engine`
puts the sharded source in place of the bundle's lexical source, so the rest of the pipeline
(fusion, facets, ranking) runs unchanged in the HTTP process, which also stays the one writer of
the event log.

A search goes to one replica of every shard (round robin). When a replica fails (its actor died,
or it did not answer within ``timeout_s``) the same call goes to the shard's next replica; when
every replica of a shard failed, the search fails with :class:`ShardUnavailableError` (HTTP
503), never with a page missing a shard's products. A killed actor is restarted by Ray (up to
``max_restarts`` times) and rebuilds its shard; it serves again once built.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from shopsearch.errors import InvalidInputError, ShardUnavailableError
from shopsearch.pipeline.engine import Engine
from shopsearch.ray_cluster import connect, ray_module
from shopsearch.retrieval.lexical import LexicalRetriever
from shopsearch.retrieval.lexical_shards import (
    CorpusStats,
    LexicalShard,
    ShardedLexical,
    catalog_positions,
    latest_products,
    partition,
)


@dataclass(frozen=True)
class ShardPlan:
    """Where and how the lexical source is sharded.

    Attributes:
        address: the Ray cluster (``None``: a local one on 127.0.0.1, see
            :func:`~shopsearch.ray_cluster.connect`).
        shards: parts the catalog is split into.
        replicas: actors serving each part.
        timeout_s: longest a replica may take to answer before the next one is asked.
        max_restarts: times Ray restarts a dead shard actor.
        cpus: CPUs Ray reserves per shard actor (0: actors share the machine's cores, as on
            one machine with more actors than cores; 1 on a cluster gives each its core).
    """

    address: str | None = None
    shards: int = 2
    replicas: int = 1
    timeout_s: float = 10.0
    max_restarts: int = 3
    cpus: float = 0.0

    def __post_init__(self) -> None:
        if self.shards < 1 or self.replicas < 1:
            raise InvalidInputError(
                f"shards={self.shards}, replicas={self.replicas}: use 1 or more of each"
            )
        if self.timeout_s <= 0:
            raise InvalidInputError(f"timeout_s={self.timeout_s}: use a time > 0")


class ShardServer(LexicalShard):
    """A shard actor's lexical shard, built from its products when the actor starts (and
    again when Ray restarts it); its ``search``, ``matching_keys`` and ``facets_of`` are what
    :class:`RayShards` calls."""

    def __init__(
        self, products: pa.Table, catalog: CorpusStats, own: CorpusStats, config: dict[str, Any]
    ) -> None:
        super().__init__(config)
        self.index_shard(products, catalog, own)

    def size(self) -> int:
        """How many products the shard holds (answers once it is built)."""
        return len(self)


def _shard_stats(products: pa.Table) -> CorpusStats:
    return CorpusStats.of(latest_products(products))


class RayShards:
    """The shard actors, reached as :class:`~shopsearch.retrieval.lexical_shards.ShardCalls`.

    Args:
        actors: per shard, its replicas' actor handles.
        timeout_s: longest a replica may take before the next one is asked.
        inputs: the object references the actors were built from, kept so that Ray can
            restart a dead actor with them.
    """

    def __init__(
        self, actors: list[list[Any]], timeout_s: float, inputs: tuple[object, ...] = ()
    ) -> None:
        self.actors = actors
        self.inputs = inputs
        self.shards = len(actors)
        self.timeout_s = timeout_s
        self._turns = [itertools.cycle(range(len(replicas))) for replicas in actors]

    def call(self, method: str, args: Mapping[int, tuple[object, ...]]) -> dict[int, object]:
        """Each shard's answer, from one of its replicas (the next one when one fails)."""
        ray = ray_module()
        first = {s: next(self._turns[s]) for s in args}
        pending = {s: self._submit(s, first[s], method, a) for s, a in args.items()}
        try:  # the usual case: every shard answers, in one wait
            values = ray.get(list(pending.values()), timeout=self.timeout_s)
            return dict(zip(pending, values, strict=True))
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            pass  # find which shards failed, and ask their next replicas
        answers: dict[int, object] = {}
        for s, ref in pending.items():
            tried = [first[s]]
            while True:
                try:
                    answers[s] = ray.get(ref, timeout=self.timeout_s)
                    break
                except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as exc:
                    untried = [r for r in range(len(self.actors[s])) if r not in tried]
                    if not untried:
                        raise ShardUnavailableError(
                            f"shard {s} of {self.shards} did not answer ({type(exc).__name__}) "
                            f"on any of its {len(self.actors[s])} replica(s); the search is "
                            "refused rather than answered without that shard's products"
                        ) from exc
                    tried.append(untried[0])
                    ref = self._submit(s, untried[0], method, args[s])
        return answers

    def _submit(self, shard: int, replica: int, method: str, args: tuple[object, ...]) -> Any:
        return getattr(self.actors[shard][replica], method).remote(*args)

    def stop(self) -> None:
        """Kill every shard actor."""
        ray = ray_module()
        for replicas in self.actors:
            for actor in replicas:
                ray.kill(actor, no_restart=True)


def start_shards(
    products: pa.Table, plan: ShardPlan, config: Mapping[str, object] | None = None
) -> RayShards:
    """Shard actors over ``products`` on the cluster of ``plan``, built and answering.

    Args:
        products: the catalog (workspace products schema).
        plan: cluster, shards, replicas.
        config: the lexical source's settings (field boosts, fuzziness, facets ...).
    """
    connect(plan.address, plan.shards * plan.replicas)
    ray = ray_module()
    parts = [ray.put(part) for part in partition(products, plan.shards)]
    count = ray.remote(num_cpus=1)(_shard_stats)
    owns: list[CorpusStats] = ray.get([count.remote(part) for part in parts])
    catalog = ray.put(CorpusStats.total(owns))
    server = ray.remote(
        num_cpus=plan.cpus, max_restarts=plan.max_restarts, scheduling_strategy="SPREAD"
    )(ShardServer)
    settings = dict(config or {})
    actors = [
        [server.remote(part, catalog, own, settings) for _ in range(plan.replicas)]
        for part, own in zip(parts, owns, strict=True)
    ]
    ray.get([actor.size.remote() for replicas in actors for actor in replicas])
    return RayShards(actors, plan.timeout_s, (parts, catalog))


def shard_engine(engine: Engine, products: pa.Table, plan: ShardPlan) -> RayShards:
    """Serve ``engine``'s lexical source from shard actors over ``products`` (the catalog it
    was built from; see the module docstring).

    Raises:
        InvalidInputError: the bundle has no lexical source.
    """
    sources = engine.retrieval.sources
    name = next((n for n, s in sources.items() if isinstance(s, LexicalRetriever)), None)
    if name is None:
        raise InvalidInputError(
            "the bundle has no lexical source to shard; list 'lexical' in [retrieval] sources "
            "and run 'shopsearch index'"
        )
    lexical = sources[name]
    assert isinstance(lexical, LexicalRetriever)
    config = lexical.get_config()
    shards = start_shards(products, plan, config)
    sources[name] = ShardedLexical(
        shards, catalog_positions(products), lexical.facet_size, lexical.price_buckets
    )
    return shards


__all__ = [
    "RayShards",
    "ShardPlan",
    "ShardServer",
    "shard_engine",
    "start_shards",
]
