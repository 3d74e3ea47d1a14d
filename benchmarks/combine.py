"""Combine full benchmark runs of separate families into one record: ``benchmarks/results/latest.{json,md}``.

Each family's methods run side by side in one run (``python -m dklfm_explore.bench --families ...``); on
two shared CPU cores the whole harness does not fit one sitting, so groups of families run apart and this
joins their rows, timings and learning curve, keeps every run's header and rechecks the targets::

    python -m benchmarks.combine RUN.json [RUN.json ...]

A family present in two runs is an error (which one counts would be a choice made silently).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
from pathlib import Path

from dklfm_explore.bench.provenance import RESULTS
from dklfm_explore.bench.report import check_targets, render_markdown

PART_KEYS = ("date", "command", "git_commit", "finished")


def combine(records: list[dict]) -> dict:
    """One record from the records of full runs over disjoint families."""
    if any(record["header"]["quick"] for record in records):
        raise SystemExit("A quick run cannot be combined with full runs.")
    seen: dict[str, str] = {}
    rows, timings, curve = [], {}, []
    for record in records:
        for family in {row["family"] for row in record["rows"]}:
            if family in seen:
                raise SystemExit(f"Family {family!r} is in two runs ({seen[family]} and {record['header']['command']}).")
            seen[family] = record["header"]["command"]
        rows += record["rows"]
        timings.update(record["timings"])
        if record["learning_curve"]:
            if curve:
                raise SystemExit("Two runs hold a learning curve.")
            curve = record["learning_curve"]
    header = dict(records[0]["header"], parts=[{key: r["header"].get(key) for key in PART_KEYS} for r in records])
    return {"header": header, "rows": rows, "timings": timings, "learning_curve": curve,
            "targets": check_targets(rows, curve)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    payload = combine([json.loads(path.read_text()) for path in args.runs])
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")
    for name in ("latest.json", f"{stamp}.json"):
        (args.out_dir / name).write_text(json.dumps(payload, indent=2) + "\n")
    (args.out_dir / "latest.md").write_text(render_markdown(payload))
    print(render_markdown(payload))


if __name__ == "__main__":
    main()
