"""What loading reports besides accepted resources: errors, warnings and
skipped kinds.

``LoadResult`` is the one value every loader returns. Problems are data, not
exceptions: one bad document must never hide the good ones next to it, and a
user fixing a file wants every problem in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass

from mizzen.api.resources import GroupVersionKind, Resource, Source


@dataclass(frozen=True)
class ConfigError:
    """One problem in one document, located as precisely as we can."""

    source: Source
    resource: str  # "VirtualService default/reviews", or "document" when unidentifiable
    path: str  # "spec.http[0].route[1].weight"; "" when about the whole document
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.source}: {self.resource}: {where}{self.message}"


@dataclass(frozen=True)
class ConfigWarning:
    """Something the user should know about an accepted resource: a
    deprecated form, or a part Mizzen reads but does not enforce yet."""

    source: Source
    resource: str  # "MeshPolicy default"
    path: str  # "spec.origins"; "" when about the whole document
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.source}: {self.resource}: {where}{self.message}"


@dataclass(frozen=True)
class Skipped:
    """A well-formed document of a kind Mizzen does not handle (yet)."""

    source: Source
    gvk: GroupVersionKind
    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.gvk.kind} {self.name}: {self.reason}"


@dataclass(frozen=True)
class LoadResult:
    resources: tuple[Resource, ...] = ()
    errors: tuple[ConfigError, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    warnings: tuple[ConfigWarning, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors

    def __add__(self, other: LoadResult) -> LoadResult:
        return LoadResult(
            self.resources + other.resources,
            self.errors + other.errors,
            self.skipped + other.skipped,
            self.warnings + other.warnings,
        )
