"""One queued run in a process of its own: ``python -m gristmill.workspace.worker ROOT``.

The scheduler starts it (in a new session, so its whole process tree can be stopped at a
timeout) for every run it takes from the queue: a crash, an out-of-memory kill or a hang
in a project's own code ends this process, never the scheduler. It claims the next queued
run, runs it here (owning it, with its heartbeat) and prints the run's id.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    from gristmill.errors import GristmillError
    from gristmill.execution.reporter import LogReporter
    from gristmill.workspace import Workspace

    reporter = LogReporter(lambda line: (sys.stderr.write(line), sys.stderr.flush()))
    try:
        ws = Workspace.open(argv[0])
        done = ws.work(limit=1, reporter=reporter)
    except GristmillError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:  # asked to stop: the run was closed as cancelled
        return 130
    sys.stdout.write((done[0].run_id if done else "") + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
