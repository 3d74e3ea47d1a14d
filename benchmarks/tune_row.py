"""Format a line printed by ``benchmarks.tune`` as a row of docs/tuning.md: ``python -m benchmarks.tune_row N "setting" < line``."""

import json
import sys


def row(number: str, setting: str, line: dict) -> str:
    sets = " ".join(f"{k}={v}" for k, v in line["model"].items())
    trains = " ".join(f"{k}={v}" for k, v in line["train"].items())
    flags = (f"--set {sets} " if sets else "") + (f"--train {trains}" if trains else "")
    return (f"| {number} | {line['family']} | {setting} | {line['best_val']} | {line['latent_mse']:.4f} | {line['coverage95']:.3f} | "
            f"{line['coverage95_uncalibrated']:.3f} | {line['calibration']} | {line['nlpd']:.3f} | {line['epochs']} ({line['best_epoch']}) | "
            f"{line['train_s']} | `{flags.strip() or 'defaults'}` |")


if __name__ == "__main__":
    print(row(sys.argv[1], sys.argv[2], json.loads(sys.stdin.read())))
