"""How much memory this process can still take: a Python step's inputs must fit in it.

The smallest of three limits, each where it applies: the machine's available memory
(``MemAvailable``), the cgroup's limit less its usage (a container's ``memory.max``), and
the address-space limit less what the process maps already (``ulimit -v``).
"""

from __future__ import annotations

import os
import resource
from pathlib import Path


def available_bytes() -> tuple[int, str]:
    """What can still be allocated, and the limit that says so, in words."""
    found = [(_machine(), "available on this machine")]
    cgroup = _cgroup()
    if cgroup is not None:
        found.append((cgroup, "left under the container's memory limit"))
    address = _address_space()
    if address is not None:
        found.append((address, "left under the address-space limit (ulimit -v)"))
    return min(found)


def _machine() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _cgroup() -> int | None:
    """cgroup v2: this process's group's memory.max less memory.current."""
    try:
        group = Path("/proc/self/cgroup").read_text().strip().split("::", 1)[1]
        folder = Path("/sys/fs/cgroup") / group.lstrip("/")
        limit = (folder / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(int(limit) - int((folder / "memory.current").read_text()), 0)
    except (OSError, IndexError, ValueError):
        return None


def _address_space() -> int | None:
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return max(soft - int(line.split()[1]) * 1024, 0)
    except OSError:
        pass
    return soft
