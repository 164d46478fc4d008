"""One registry for every family of pluggable components.

Each family — retrievers, encoders, pipeline stages, ranking models, dataset loaders, evaluation
suites — has one :class:`Registry`, defined in the package of that family. A component joins its
family with a decorator on the class (or function) that implements it::

    from shopsearch.retrieval.registry import RETRIEVERS

    @RETRIEVERS.register("bm25-title")
    class TitleRetriever(Retriever): ...

and a config, a bundle or the CLI then names it (``"bm25-title"``) and nothing else changes.

Three ways a name is found, in this order:

1. **Built-ins.** A registry lists the modules whose classes it holds (``modules``); they are
   imported on the first lookup, so importing a registry is cheap and never circular. A module
   path is a string, not an import: the ranking-model registry may list
   ``shopsearch.transfer.models`` although transfer builds on ranking.
2. **Entry points** of other installed packages, group ``shopsearch.<family>`` (e.g.
   ``shopsearch.retrievers``), each ``name = "package.module:Class"``.
3. **Dotted paths** for outside classes that nobody registered: ``"package.module:Class"`` (or
   ``"package.module.Class"``). A saved bundle records such a component by its dotted path, so
   it loads again wherever that package is importable.

Every lookup of an unknown name fails with :class:`~shopsearch.errors.InvalidInputError` listing
the known names.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import threading
from collections.abc import Callable, Iterator, Sequence
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from shopsearch.errors import InvalidInputError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name → component of one family.

    Args:
        family: what the components are, plural, as messages say it (``"retrievers"``); the
            entry-point group is ``shopsearch.<family>`` with spaces as underscores.
        modules: the modules whose import registers the built-in components.
        check: validates an object loaded by dotted path or entry point (e.g. that it
            subclasses the family's base class); raises ``TypeError`` with the reason.
    """

    def __init__(
        self,
        family: str,
        modules: Sequence[str] = (),
        check: Callable[[Any], None] | None = None,
    ) -> None:
        self.family = family
        self.modules = tuple(modules)
        self.check = check
        self._items: dict[str, T] = {}
        self._entry_names: set[str] = set()
        self._loaded = False
        self._lock = threading.RLock()

    @property
    def group(self) -> str:
        """The entry-point group of outside plug-ins."""
        return "shopsearch." + self.family.replace(" ", "_").replace("-", "_")

    # -- registering ----------------------------------------------------------------------------
    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: add the decorated class or function under ``name`` (default: its
        ``name`` attribute)."""

        def add(item: T) -> T:
            self.add(name if name is not None else _own_name(item), item)
            return item

        return add

    def add(self, name: str, item: T) -> None:
        """Add ``item`` under ``name``; a second, different item under one name is an error."""
        if not name or name != name.strip():
            raise InvalidInputError(f"{name!r} is not a usable {self.family} name")
        with self._lock:
            known = self._items.get(name)
            if known is not None and known is not item:
                raise InvalidInputError(
                    f"two {self.family} are registered as {name!r}: {_path(known)} and "
                    f"{_path(item)}; give one of them another name"
                )
            self._items[name] = item

    @contextlib.contextmanager
    def registered(self, name: str, item: T) -> Iterator[T]:
        """Add ``item`` under ``name`` for the duration of a ``with`` block (tests, trials)."""
        self._load()
        self.add(name, item)
        try:
            yield item
        finally:
            if self._items.get(name) is item:
                self.remove(name)

    def remove(self, name: str) -> None:
        """Forget the component ``name`` (tests; unloading a plug-in); unknown names are ignored."""
        with self._lock:
            self._items.pop(name, None)
            self._entry_names.discard(name)

    # -- looking up -----------------------------------------------------------------------------
    def get(self, name: str) -> T:
        """The component registered as ``name``, or the object at dotted path ``name``.

        Raises:
            InvalidInputError: an unknown name, or a dotted path that does not import or is not
                a component of this family.
        """
        self._load()
        item = self._items.get(name)
        if item is not None:
            return item
        if "." in name or ":" in name:
            return self._import(name)
        raise InvalidInputError(
            f"unknown {self.family[:-1] if self.family.endswith('s') else self.family} "
            f"{name!r}; {self.family} are {', '.join(self.names()) or '(none)'}, or give an "
            "outside one as 'package.module:Name'"
        )

    def name_of(self, item: Any) -> str:
        """How a saved config names ``item`` (a component or an instance of a component class)
        so that :meth:`get` finds it again in a fresh process: its registered name when it is a
        built-in or an entry point, else its dotted path."""
        self._load()
        target = item if isinstance(item, type) or inspect.isfunction(item) else type(item)
        for name, known in self._items.items():
            if known is target and (_module(known) in self.modules or name in self._entry_names):
                return name
        return _path(target)

    def names(self) -> list[str]:
        """Every registered name: built-ins in the order of ``modules``, then the others in
        registration order."""
        return [name for name, _ in self.items()]

    def items(self) -> list[tuple[str, T]]:
        """``(name, component)`` pairs, in the order of :meth:`names`."""
        self._load()
        rank = {module: i for i, module in enumerate(self.modules)}
        pairs = list(self._items.items())
        return sorted(pairs, key=lambda pair: rank.get(_module(pair[1]), len(rank)))

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    # -- loading --------------------------------------------------------------------------------
    def _load(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            self._loaded = True  # first: a built-in module that looks a name up must not recurse
            try:
                for module in self.modules:
                    importlib.import_module(module)
                for point in entry_points(group=self.group):
                    if point.name not in self._items:
                        self.add(point.name, self._checked(point.load(), point.value))
                        self._entry_names.add(point.name)
            except BaseException:
                self._loaded = False
                raise

    def _import(self, path: str) -> T:
        module_name, _, attr = path.partition(":") if ":" in path else path.rpartition(".")
        try:
            module = importlib.import_module(module_name)
            item = getattr(module, attr)
        except (ImportError, AttributeError, ValueError) as exc:
            raise InvalidInputError(
                f"{path!r} does not import ({type(exc).__name__}: {exc}); give a registered "
                f"name ({', '.join(self.names())}) or an importable 'package.module:Name'"
            ) from exc
        return self._checked(item, path)

    def _checked(self, item: Any, where: str) -> T:
        if self.check is not None:
            try:
                self.check(item)
            except TypeError as exc:
                raise InvalidInputError(
                    f"{where!r} is not one of the {self.family}: {exc}"
                ) from exc
        return item  # type: ignore[no-any-return]


def subclass_of(base: type) -> Callable[[Any], None]:
    """A registry ``check``: the object must be a subclass of ``base``."""

    def check(item: Any) -> None:
        if not (isinstance(item, type) and issubclass(item, base)):
            raise TypeError(f"{_path(item)} is not a subclass of {_path(base)}")

    return check


def _own_name(item: Any) -> str:
    name = getattr(item, "name", None)
    if not isinstance(name, str):
        raise InvalidInputError(
            f"{_path(item)} has no string 'name' attribute; register it with a name"
        )
    return name


def _module(item: Any) -> str:
    return str(getattr(item, "__module__", ""))


def _path(item: Any) -> str:
    module = getattr(item, "__module__", None) or type(item).__module__
    qualname = getattr(item, "__qualname__", None) or type(item).__qualname__
    return f"{module}:{qualname}"


__all__ = ["Registry", "subclass_of"]
