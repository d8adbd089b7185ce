"""How much memory this process can still take: a Python step's inputs must fit in it.

The smallest of three limits, each where it applies: the machine's available memory
(``MemAvailable``), a cgroup's limit less its usage (a container's memory limit, cgroup v1
or v2, this process's group and those above it), and the address-space limit less what
the process maps already (``ulimit -v``).
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


UNLIMITED = 2**62
"""cgroup v1 writes no limit as a number near 2**63."""


def _cgroup() -> int | None:
    """The least memory left under this process's cgroup or any group above it: v2's
    memory.max less memory.current, v1's memory.limit_in_bytes less usage_in_bytes."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    left: list[int] = []
    for line in lines:
        _, controllers, group = line.split(":", 2)
        if controllers == "":
            folder, limit_file, usage_file = Path("/sys/fs/cgroup"), "memory.max", "memory.current"
        elif "memory" in controllers.split(","):
            folder = Path("/sys/fs/cgroup/memory")
            limit_file, usage_file = "memory.limit_in_bytes", "memory.usage_in_bytes"
        else:
            continue
        path = folder / group.lstrip("/")
        while True:
            found = _left(path, limit_file, usage_file)
            if found is not None:
                left.append(found)
            if path == folder:
                break
            path = path.parent
    return min(left) if left else None


def _left(folder: Path, limit_file: str, usage_file: str) -> int | None:
    try:
        limit = (folder / limit_file).read_text().strip()
        if limit == "max" or int(limit) >= UNLIMITED:
            return None
        return max(int(limit) - int((folder / usage_file).read_text()), 0)
    except (OSError, ValueError):
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
