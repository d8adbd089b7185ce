"""The prediction-log writer process: JSON lines on stdin -> Delta appends.

Started by ``ProcessLog``; exits after writing everything once stdin is closed.
"""

from __future__ import annotations

import logging
import sys

import orjson

from gristmill.serving.log import PredictionLog, _lake_writer


def main(root: str, every_s: str) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    log = PredictionLog(_lake_writer(root), every_s=float(every_s))
    for line in sys.stdin.buffer:
        if line.strip():
            log.append_row(tuple(orjson.loads(line)))
    log.close()
    if log.last_error:
        print(f"prediction log: {log.failures} failed write(s): {log.last_error}", file=sys.stderr)


if __name__ == "__main__":
    main(*sys.argv[1:3])
