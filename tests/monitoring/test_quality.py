"""Quality drift compares the rows a version added with the rows it kept, a column at a time."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from gristmill.execution.monitoring.quality import added_and_kept, column_findings, file_pairs


def _write(path: Path, amounts: list[float], channels: list[str]) -> str:
    pq.write_table(pa.table({"amount": amounts, "channel": channels}), path)
    return str(path)


def test_an_appended_version_is_compared_with_what_it_kept(tmp_path: Path) -> None:
    old = _write(tmp_path / "a.parquet", [1.0, 2.0, 3.0, 4.0] * 50, ["web", "store"] * 100)
    new = _write(tmp_path / "b.parquet", [10.0, 20.0] * 50, ["mobile"] * 100)
    added, kept = added_and_kept([old, new], [old])
    assert (added, kept) == ([new], [old])
    pairs = list(file_pairs(added, kept, ["amount", "channel"]))
    assert [(n, len(r), len(c)) for n, r, c in pairs] == [
        ("amount", 200, 100),
        ("channel", 200, 100),
    ]
    found, charts = column_findings(pairs, psi_threshold=0.2)
    psi = {f.subject: f.value for f in found if f.statistic == "psi"}
    assert psi["amount"] > 0.2 and psi["channel"] > 0.2
    assert charts["channel"]["categories"] == ["mobile", "store", "web"]


def test_a_rewritten_version_is_compared_whole_with_the_one_before(tmp_path: Path) -> None:
    old = _write(tmp_path / "a.parquet", [1.0, 2.0], ["web", "web"])
    new = _write(tmp_path / "b.parquet", [1.0, 2.0, 3.0], ["web", "web", "store"])
    assert added_and_kept([new], [old]) == ([new], [old])
    (pair,) = file_pairs([new], [old], ["amount"])
    assert pair[1].to_pylist() == [1.0, 2.0] and pair[2].to_pylist() == [1.0, 2.0, 3.0]
