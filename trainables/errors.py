"""Errors the user can fix. The CLI prints their message, without a traceback, and exits non-zero."""

from __future__ import annotations


class ProjectError(Exception):
    """Base class: an error caused by the user's input, with a message that says what to do."""


class ConfigError(ProjectError):
    """A config key is unknown, of the wrong type, or holds an impossible value."""


class DataError(ProjectError):
    """A corpus folder, audio file or split cannot be used as it is."""


class DamagedFile(DataError):
    """A cache or checkpoint whose content is not what was written (``trainables.checksums``)."""
