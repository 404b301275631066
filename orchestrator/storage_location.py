"""What ``tune.storage_path`` may name, checked when the config loads: a local path, or a URI of
a file system pyarrow opens (``orchestrator.storage`` opens it when the run starts).

Without pyarrow (nor numpy): the config loads in a fraction of a second, and bad input fails
before any heavy import."""

from __future__ import annotations

from urllib.parse import urlsplit

from trainables.errors import ConfigError

# The file systems pyarrow opens from a URI (``pyarrow.fs.FileSystem.from_uri``).
SCHEMES = ("file", "s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")


def is_uri(location: str) -> bool:
    """Whether ``location`` (a ``tune.storage_path``) names a URI rather than a local path."""
    return "://" in location


def check_scheme(location: str) -> None:
    """``ConfigError`` naming the scheme if pyarrow has no file system for it, or if the URI
    names no bucket."""
    parts = urlsplit(location)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ConfigError(f"tune.storage_path: {location!r} has the scheme {scheme!r}, which "
                          f"pyarrow cannot open; use a local path or a URI of: "
                          f"{', '.join(s + '://' for s in SCHEMES)}")
    if scheme != "file" and not parts.netloc:
        raise ConfigError(f"tune.storage_path: {location!r} names no bucket (or host): give "
                          f"{scheme}://BUCKET/PREFIX")
