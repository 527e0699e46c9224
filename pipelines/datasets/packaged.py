"""Moved to `pipelines.core.packaged` (core code reads packaged files too); this name stays for
branches that still import it from here."""

from pipelines.core.packaged import PackagedFile

__all__ = ["PackagedFile"]
