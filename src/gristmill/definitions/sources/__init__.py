"""Sources by kind: one module each (files, database, stream, intake), a common base."""

from gristmill.definitions.sources.base import Source
from gristmill.definitions.sources.database import DatabaseSource, database_source
from gristmill.definitions.sources.files import FileFormat, FileSource, source
from gristmill.definitions.sources.intake import IntakeSource, intake_source
from gristmill.definitions.sources.stream import StreamSource, stream_source

__all__ = [
    "DatabaseSource",
    "FileFormat",
    "FileSource",
    "IntakeSource",
    "Source",
    "StreamSource",
    "database_source",
    "intake_source",
    "source",
    "stream_source",
]
