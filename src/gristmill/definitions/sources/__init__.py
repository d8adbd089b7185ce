"""Sources by kind: one module each (files, database), a common base."""

from gristmill.definitions.sources.base import Source
from gristmill.definitions.sources.database import DatabaseSource, database_source
from gristmill.definitions.sources.files import FileFormat, FileSource, source

__all__ = [
    "DatabaseSource",
    "FileFormat",
    "FileSource",
    "Source",
    "database_source",
    "source",
]
