"""Combine full benchmark runs of separate families into one record: ``benchmarks/results/latest.{json,md}``.

Each family's methods run side by side in one run (``python -m dklfm_explore.bench --families ...``); on
two shared CPU cores the whole harness does not fit one sitting, so groups of families run apart and this
joins their rows, timings and learning curve, keeps every run's header and rechecks the targets::

    python -m benchmarks.combine RUN.json [RUN.json ...]

A family present in two runs is an error (which one counts would be a choice made silently), unless
``--later-wins``: then a later run's rows and timings of the family replace an earlier run's, and the
earlier run's part of the header lists the families it no longer contributes (``superseded``)::

    python -m benchmarks.combine OLD.json ... NEW.json --later-wins
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
from pathlib import Path

from dklfm_explore.bench.provenance import RESULTS
from dklfm_explore.bench.report import check_targets, render_markdown

PART_KEYS = ("date", "command", "git_commit", "finished")
"""Header fields each run keeps in the combined header's ``parts`` (plus ``superseded``, see ``--later-wins``)."""


def _family(key: str) -> str:
    return key.split("/", 1)[0]


def combine(records: list[dict], later_wins: bool = False) -> dict:
    """One record from the records of full runs; their families must be disjoint unless ``later_wins``."""
    if any(record["header"]["quick"] for record in records):
        raise SystemExit("A quick run cannot be combined with full runs.")
    owner: dict[str, int] = {}
    for index, record in enumerate(records):
        for family in {row["family"] for row in record["rows"]}:
            if family in owner and not later_wins:
                raise SystemExit(f"Family {family!r} is in two runs ({records[owner[family]]['header']['command']} and "
                                 f"{record['header']['command']}); pass --later-wins to let the later run's rows count.")
            owner[family] = index
    rows, timings, curve, parts = [], {}, [], []
    for index, record in enumerate(records):
        part = {key: record["header"].get(key) for key in PART_KEYS}
        superseded = sorted({row["family"] for row in record["rows"]} - {f for f, i in owner.items() if i == index})
        if superseded:
            part["superseded"] = superseded
        parts.append(part)
        rows += [row for row in record["rows"] if owner[row["family"]] == index]
        timings.update({key: value for key, value in record["timings"].items() if owner.get(_family(key), index) == index})
        if record["learning_curve"]:
            if curve:
                raise SystemExit("Two runs hold a learning curve.")
            curve = record["learning_curve"]
    header = dict(records[0]["header"], parts=parts)
    return {"header": header, "rows": rows, "timings": timings, "learning_curve": curve,
            "targets": check_targets(rows, curve)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--later-wins", action="store_true", help="a family in a later run replaces an earlier run's rows of it")
    args = parser.parse_args(argv)
    payload = combine([json.loads(path.read_text()) for path in args.runs], later_wins=args.later_wins)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")
    for name in ("latest.json", f"{stamp}.json"):
        (args.out_dir / name).write_text(json.dumps(payload, indent=2) + "\n")
    (args.out_dir / "latest.md").write_text(render_markdown(payload))
    print(render_markdown(payload))


if __name__ == "__main__":
    main()
