"""Named crash points for testing crash safety with a real ``kill -9``.

``GRISTMILL_FAILPOINTS=after_commit:user_profile`` makes the process SIGKILL itself right
after committing ``user_profile`` to the lake and before recording it in the catalog.
Unset (the normal case), a failpoint costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

_ACTIVE = frozenset(p for p in os.environ.get("GRISTMILL_FAILPOINTS", "").split(",") if p)


def hit(point: str, table: str) -> None:
    if _ACTIVE and (f"{point}:{table}" in _ACTIVE or f"{point}:*" in _ACTIVE):
        os.kill(os.getpid(), signal.SIGKILL)
