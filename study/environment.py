"""Where a study runs: the base-model cache, the data folder, the device, downloads.

One value object travels instead of four arguments. None of it is part of a result's
identity (the same trial gives the same numbers wherever its files live).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

__all__ = ["Environment", "DEFAULT_CACHE", "LOCAL"]

DEFAULT_CACHE = Path("results/models")
"""The default base-model cache (relative to the current folder, or to a sweep spec's folder)."""


@dataclass(frozen=True)
class Environment:
    """Attributes: ``cache_dir`` (base-model checkpoints), ``data_root`` (dataset files; None =
    ``$PRUNETAX_DATA`` or ``~/.cache/prunetax/data``), ``device`` (``cpu``, ``cuda[:N]``),
    ``download`` (fetch missing datasets; online machines only)."""

    cache_dir: Path = DEFAULT_CACHE
    data_root: str | None = None
    device: str = "cpu"
    download: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "cache_dir", Path(self.cache_dir))

    def absolute(self) -> Environment:
        """The same environment with an absolute cache path (workers may run elsewhere)."""
        root = None if self.data_root is None else str(Path(self.data_root).expanduser().absolute())
        return replace(self, cache_dir=self.cache_dir.expanduser().absolute(), data_root=root)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form (sent to Ray workers)."""
        return {
            "cache_dir": str(self.cache_dir),
            "data_root": self.data_root,
            "device": self.device,
            "download": self.download,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Environment:
        return cls(**data)  # type: ignore[arg-type]


LOCAL = Environment()
"""The default environment: cache in ``results/models``, default data folder, CPU, no downloads."""
