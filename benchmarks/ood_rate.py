"""How often the out-of-distribution check flags in-distribution tasks, and whether it still flags foreign ones.

The bundled transcription model (it predates the check, so each reference is built here with
:func:`~dklfm_explore.ood.ood_reference`).  In-distribution tasks: simulations of its training
distribution with its training set's observation noise (``noise_std`` of the 512 training tasks,
seed 0: the simulator sets the noise from each set's own spread, which differs by about 10% between
sets of a few hundred tasks and would move the likelihood).  ``--references`` disjoint blocks of
``--reference-tasks`` tasks each build one reference; every reference scores the same
``--test-tasks`` fresh tasks, under both output scalings, through ``TrainedModel.infer``.  A
reference of ``n`` tasks flags a fraction distributed about Beta(n + 1 - k, k), ``k = ceil((n + 1) 0.99)``
(mean at most 1%), seen on the test tasks with binomial noise besides.  Far-out cases use the last
reference: decay rates 5x the training range, Lotka-Volterra curves, pure noise, constant curves.

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python -m benchmarks.ood_rate
"""

from __future__ import annotations

import argparse
import json
import math
import warnings
from pathlib import Path

import numpy as np
import torch

from dklfm_explore import load_pretrained, simulate
from dklfm_explore.bench.provenance import header
from dklfm_explore.data import TaskSet
from dklfm_explore.errors import OutOfDistributionWarning
from dklfm_explore.ood import OOD_QUANTILE, ood_reference
from dklfm_explore.systems import get_system

RESULTS = Path(__file__).parent / "results"
N_POINTS = 30
TRAINING_TASKS, TRAINING_SEED = 512, 0
POOL_SEED = 7
FOREIGN_TASKS = 40


def in_distribution(n_tasks: int, seed: int, noise_std: np.ndarray) -> TaskSet:
    """``n_tasks`` transcription tasks with the observation noise ``noise_std (output,)`` of the training set."""
    dataset = simulate("transcription", n_tasks, n_points=N_POINTS, seed=seed).dataset.copy(deep=True)
    noise = np.random.default_rng(seed).normal(size=dataset["y"].shape) * noise_std[None, :, None]
    dataset["y"] = (dataset["y"].dims, dataset["y_clean"].values + noise, dataset["y"].attrs)
    dataset["noise_std"] = (("output",), noise_std, dataset["noise_std"].attrs)
    return TaskSet(dataset)


def _replace_y(tasks: TaskSet, y: np.ndarray) -> TaskSet:
    dataset = tasks.dataset.copy(deep=True)
    dataset["y"] = (dataset["y"].dims, y)
    return TaskSet(dataset.drop_vars("y_clean"))


def foreign_cases(noise_std: np.ndarray) -> dict[str, TaskSet]:
    decay = next(p for p in get_system("transcription").parameters if p.name == "decay_rate")
    fast = {"decay_rate": (tuple(5 * v for v in decay.low), tuple(5 * v for v in decay.high))}
    template = in_distribution(FOREIGN_TASKS, 31, noise_std)
    shape = template.dataset["y"].shape
    prey = [simulate("lotka-volterra", FOREIGN_TASKS, n_points=N_POINTS, seed=seed).dataset["y"].values for seed in range(32, 37)]
    return {
        "decay rates x5": simulate("transcription", FOREIGN_TASKS, n_points=N_POINTS, seed=30, parameter_ranges=fast),
        "Lotka-Volterra prey": _replace_y(template, np.concatenate(prey, axis=1)),
        "pure noise": _replace_y(template, np.random.default_rng(38).normal(size=shape)),
        "constant curves": _replace_y(template, np.full(shape, 0.7)),
    }


def _scores(model, tasks: TaskSet, **kwargs) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfDistributionWarning)
        return model.infer(tasks, **kwargs)["ood_score"].values


def run(n_references: int, n_reference_tasks: int, n_test_tasks: int) -> dict:
    torch.set_num_threads(1)
    model = load_pretrained("transcription", device="cpu")
    noise_std = simulate("transcription", TRAINING_TASKS, n_points=N_POINTS, seed=TRAINING_SEED).dataset["noise_std"].values
    test = in_distribution(n_test_tasks, POOL_SEED + 1000, noise_std)
    rows = []
    for block in range(n_references):
        model.ood_reference = ood_reference(model.module, model.normaliser, in_distribution(n_reference_tasks, POOL_SEED + block, noise_std))
        for scaling in ("training", "self"):
            scores = _scores(model, test, output_scaling=scaling)
            rows.append({"reference": block, "output_scaling": scaling, "flagged": int((scores > 1).sum()),
                         "rate": float((scores > 1).mean()), "threshold": model.ood_reference[scaling]["score_threshold"]})
            print(json.dumps(rows[-1]), flush=True)
    foreign = {name: float((_scores(model, tasks) > 1).mean()) for name, tasks in foreign_cases(noise_std).items()}
    print(json.dumps(foreign), flush=True)
    k = math.ceil((n_reference_tasks + 1) * OOD_QUANTILE)
    a, b = n_reference_tasks + 1 - k, k
    return {"rows": rows, "foreign_flag_rate": foreign, "foreign_tasks": FOREIGN_TASKS,
            "expected_rate": a / (a + b), "reference_sd": math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1))),
            "test_sd": math.sqrt(0.01 * 0.99 / n_test_tasks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--references", type=int, default=3)
    parser.add_argument("--reference-tasks", type=int, default=1000)
    parser.add_argument("--test-tasks", type=int, default=4000)
    args = parser.parse_args()
    result = run(args.references, args.reference_tasks, args.test_tasks)
    command = (f"OMP_NUM_THREADS=1 PYTHONPATH=$PWD python -m benchmarks.ood_rate --references {args.references} "
               f"--reference-tasks {args.reference_tasks} --test-tasks {args.test_tasks}")
    rates = {s: [r["rate"] for r in result["rows"] if r["output_scaling"] == s] for s in ("training", "self")}
    payload = {"header": header(torch.device("cpu"), command=command), "reference_tasks": args.reference_tasks,
               "test_tasks": args.test_tasks, **result, "mean_rate": {s: float(np.mean(v)) for s, v in rates.items()}}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ood_rate.json").write_text(json.dumps(payload, indent=1) + "\n")
    lines = [f"# Out-of-distribution flags on in-distribution tasks (bundled transcription model, CPU)", "",
             f"Command: `{command}`", "",
             f"{args.references} references of {args.reference_tasks} in-distribution tasks each, every one scoring the same "
             f"{args.test_tasks} fresh in-distribution tasks (the training set's noise).", "",
             "| reference | output_scaling | flagged | rate | score threshold |", "|---|---|---|---|---|"]
    lines += [f"| {r['reference']} | {r['output_scaling']} | {r['flagged']} / {args.test_tasks} | {r['rate']:.2%} | {r['threshold']:.3f} |"
              for r in result["rows"]]
    lines += ["", f"Mean rate: 'training' {payload['mean_rate']['training']:.2%}, 'self' {payload['mean_rate']['self']:.2%}. "
              f"Expected for one reference of {args.reference_tasks} tasks: {result['expected_rate']:.2%}, standard deviation "
              f"{result['reference_sd']:.2%} between references and {result['test_sd']:.2%} from the test tasks' binomial noise.", "",
              f"Foreign cases ({FOREIGN_TASKS} tasks each, the last reference, `output_scaling` 'auto'):", "",
              "| case | flagged |", "|---|---|"]
    lines += [f"| {name} | {rate:.0%} |" for name, rate in result["foreign_flag_rate"].items()]
    (RESULTS / "ood_rate.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
