"""Sources by kind: one module each (files, database, stream), a common base."""

from gristmill.definitions.sources.base import Source
from gristmill.definitions.sources.database import DatabaseSource, database_source
from gristmill.definitions.sources.files import FileFormat, FileSource, source
from gristmill.definitions.sources.stream import StreamSource, stream_source

__all__ = [
    "DatabaseSource",
    "FileFormat",
    "FileSource",
    "Source",
    "StreamSource",
    "database_source",
    "source",
    "stream_source",
]
