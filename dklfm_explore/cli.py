"""The ``dklfm`` command line: simulate, train, infer, info, bench.

Every error a user can cause ends with one sentence on stderr and exit status 2;
an unexpected failure says so in one sentence (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Sequence

from .errors import DKLFMError, InvalidInputError
from .runtime import tune_allocator

__all__ = ["main"]

EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_NOT_LEARNED = 4
"""``dklfm train`` wrote a model whose verdict is that it did not learn."""
DEFAULT_SYSTEM_MINUTES = 5.0
"""Default time budget of ``dklfm train SYSTEM`` (fresh tasks never run out, so the budget ends training)."""
EXIT_BROKEN_PIPE = 141
"""The status of a pipe writer killed by SIGPIPE (128 + 13)."""

log = logging.getLogger("dklfm_explore")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dklfm", description="Deep Kernel Latent Force Models: simulate, train, infer.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    simulate = commands.add_parser("simulate", help="simulate a task set and write it as netCDF")
    simulate.add_argument("system", help="transcription, transcription-linear, lotka-volterra, reaction-diffusion, ...")
    simulate.add_argument("--tasks", type=int, required=True, help="number of tasks")
    mesh = simulate.add_mutually_exclusive_group()
    mesh.add_argument("--points", type=int, help="time points (ODE systems)")
    mesh.add_argument("--grid", type=int, nargs=2, metavar=("NX", "NT"), help="space and time points (PDE systems)")
    simulate.add_argument("--t-max", type=float, help="end of the time window (default: the system's)")
    simulate.add_argument("--outputs", type=int, help="number of outputs (genes), where the system allows it")
    simulate.add_argument("--noise", type=float, help="observation noise as a fraction of each output's spread")
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--device", default="auto", help="auto, cpu or cuda")
    simulate.add_argument("--out", required=True, type=Path, help="netCDF file to write")
    simulate.add_argument("--force", action="store_true", help="replace --out if it exists")

    train = commands.add_parser("train", help="meta-learn a DKLFM from the simulator (SYSTEM) or on a task set (tasks.nc)",
                                description="Train from fresh simulations of SYSTEM (new tasks every step) or on a netCDF task set. "
                                f"Exit status 0 when the model learned, {EXIT_NOT_LEARNED} when it did not (the model is still written).")
    train.add_argument("source", metavar="SYSTEM|tasks.nc", help="a system name (transcription, ...) or a netCDF task set")
    train.add_argument("--out", required=True, type=Path, help="checkpoint file to write (.pt)")
    train.add_argument("--force", action="store_true", help="replace --out if it exists")
    train_mesh = train.add_mutually_exclusive_group()
    train_mesh.add_argument("--points", type=int, help="time points of the simulated tasks (SYSTEM, ODE systems)")
    train_mesh.add_argument("--grid", type=int, nargs=2, metavar=("NX", "NT"), help="space and time points (SYSTEM, PDE systems)")
    train.add_argument("--epochs", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--learning-rate", type=float)
    train.add_argument("--validation", type=float, help="fraction of a task set held out for early stopping and calibration (default 0.1)")
    train.add_argument("--max-minutes", type=float,
                       help=f"stop after this long and keep the best model (default {DEFAULT_SYSTEM_MINUTES:g} for SYSTEM, none for a task set)")
    train.add_argument("--seed", type=int, default=0, help="seeds the weights and, for SYSTEM, the simulated tasks")
    train.add_argument("--device", default="auto")
    train.add_argument("--distributed", action="store_true",
                       help="data-parallel over the processes torchrun starts, one per GPU or CPU process: "
                       "torchrun --nproc-per-node N -m dklfm_explore.cli train ... --distributed "
                       "(--batch-size is per process; process 0 validates and writes --out; see docs/scale.md)")

    infer = commands.add_parser("infer", help="infer the latent force of measurements with a trained model")
    infer.add_argument("model", type=Path, help="checkpoint (.pt)")
    infer.add_argument("measurements", type=Path, help="CSV or netCDF measurements")
    infer.add_argument("--out", required=True, type=Path, help="result file, .nc or .csv")
    infer.add_argument("--force", action="store_true", help="replace --out if it exists (never an input)")
    infer.add_argument("--outputs-in-order", action="store_true",
                       help="take the measured columns as the model's outputs in order, whatever their names")
    query = infer.add_mutually_exclusive_group()
    query.add_argument("--points", type=int, help="query this many evenly spaced times (super-resolution)")
    query.add_argument("--grid", type=int, nargs=2, metavar=("NX", "NT"), help="query grid for space x time models")
    infer.add_argument("--t-max", type=float, help="query up to this time (extrapolation)")
    infer.add_argument("--time-mapping", choices=("shift", "scale", "none"), default="shift",
                       help="how the measured time axis maps onto the training window (default: shift)")
    infer.add_argument("--refine", action="store_true",
                       help="refine each task by a short per-task LFM fit from the first answer (ODE systems; seconds a task; "
                            "the task set is read whole, not streamed)")
    infer.add_argument("--device", default="auto")

    design = commands.add_parser("design", help="rank where one more measurement would shrink the latent force's uncertainty most")
    design.add_argument("model", type=Path, help="checkpoint (.pt)")
    design.add_argument("measurements", type=Path, help="CSV or netCDF measurements")
    design.add_argument("--next", type=int, default=3, metavar="K", help="how many measurements to plan, greedily (default 3)")
    design.add_argument("--candidates", type=float, nargs="+", metavar="TIME",
                        help="candidate times (default: 101 evenly spaced over the measured range; the grid points for space x time)")
    design.add_argument("--task", default=None, help="which task (replicate) to plan for (default: the first)")
    design.add_argument("--out", type=Path, help="also write the plan as CSV")
    design.add_argument("--time-mapping", choices=("shift", "scale", "none"), default="shift")
    design.add_argument("--device", default="auto")

    info = commands.add_parser("info", help="describe a checkpoint or a task set")
    info.add_argument("path", type=Path)

    commands.add_parser("bench", help="run the benchmark harness; its options "
                        "(--quick, --families, --device, --out-dir) pass through (see benchmarks/README.md)", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "bench":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.args = extra
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    warnings.showwarning = lambda message, category, *rest, **kw: print(f"dklfm: warning: {message}", file=sys.stderr)
    tune_allocator()
    try:
        handler = {"simulate": _simulate, "train": _train, "infer": _infer, "info": _info, "design": _design, "bench": _bench}[args.command]
        status = handler(args)
        sys.stdout.flush()
    except DKLFMError as error:
        print(f"dklfm {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"dklfm {args.command}: interrupted.", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _reader_went_away()
    except Exception as error:
        if args.debug:
            raise
        print(f"dklfm {args.command}: internal error ({type(error).__name__}: {error}); rerun with --debug for details.", file=sys.stderr)
        return EXIT_INTERNAL
    return status or 0


def _progress_bar(total: int, unit: str, description: str):
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, desc=description, file=sys.stderr, disable=None, dynamic_ncols=True)


def _simulate(args) -> None:
    from .simulate import simulate
    from .systems import get_system

    system = get_system(args.system)
    _check_simulation_mesh(args, system)
    t_range = (system.time_range[0], args.t_max) if args.t_max is not None else None
    _check_output_path(args.out, (".nc",), force=args.force)
    with _progress_bar(args.tasks, "task", f"simulating {system.name}") as bar:
        tasks = simulate(system, args.tasks, n_points=args.points, grid=tuple(args.grid) if args.grid else None,
                         t_range=t_range, n_outputs=args.outputs, seed=args.seed, device=args.device,
                         noise_level=args.noise, out=args.out, overwrite=args.force,
                         progress=lambda done, total: bar.update(done - bar.n))
    print(f"wrote {args.out}: {tasks}")


def _training_source(args):
    """The task set (opened lazily) or the SimulationSpec that ``dklfm train``'s SOURCE names, and a description."""
    from .data import open_taskset
    from .spec import SimulationSpec
    from .systems import SYSTEMS, get_system

    path = Path(args.source)
    if args.source in SYSTEMS and not path.is_file():
        spec = SimulationSpec(system=args.source, n_points=args.points, grid=None if args.grid is None else tuple(args.grid),
                              seed=args.seed)
        spec.resolved().mesh()
        return spec, f"training on fresh {args.source} tasks"
    if not path.is_file() and path.suffix != ".nc":
        get_system(args.source)
    if args.points is not None or args.grid is not None:
        raise InvalidInputError("--points and --grid describe simulated tasks; a task set brings its own mesh.")
    tasks = open_taskset(path)
    return tasks, f"training on {tasks.n_tasks} tasks of {path.name}"


def _train(args) -> int:
    from .distributed import launched_by_torchrun, process_group

    if args.distributed:
        with process_group(args.device) as parallel:
            return _train_process(args, parallel)
    if launched_by_torchrun():
        raise InvalidInputError("This process is one of several that torchrun started; add --distributed so they train one "
                                "model together, instead of each its own.")
    return _train_process(args, None)


def _train_process(args, parallel) -> int:
    """``dklfm train`` in one process, alone or as one of a data-parallel run (only process 0 reports and writes)."""
    from .config import TrainingConfig
    from .spec import SimulationSpec
    from .train import train

    main_process = parallel is None or parallel.is_main
    _check_output_path(args.out, (".pt",), inputs=(Path(args.source),), force=args.force)
    source, description = _training_source(args)
    minutes = args.max_minutes if args.max_minutes is not None else (DEFAULT_SYSTEM_MINUTES if isinstance(source, SimulationSpec) else None)
    if minutes is not None and not minutes > 0:
        raise InvalidInputError(f"--max-minutes must be positive, got {minutes}.")
    options = {key: value for key, value in dict(
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate, validation=args.validation,
        max_seconds=minutes * 60 if minutes else None, seed=args.seed, device=args.device if parallel is None else str(parallel.device),
    ).items() if value is not None}
    config = TrainingConfig(**options)
    if parallel is not None and main_process:
        description += f" in {parallel.world_size} processes"
    bar = _progress_bar(config.epochs, "epoch", description) if main_process else nullcontext()

    def report(progress) -> None:
        bar.update(progress.epoch - bar.n)
        postfix = {"loss": f"{progress.loss:.3f}"}
        if progress.validation_latent_mse is not None:
            postfix["val latent MSE"] = f"{progress.validation_latent_mse:.3f}"
        bar.set_postfix(postfix)

    with bar:
        model = train(source, config=config, progress=report if main_process else None, parallel=parallel)
    if not main_process:
        return 0
    model.save(args.out, overwrite=args.force)
    last = model.history[-1] if model.history else {}
    print(f"wrote {args.out}: {last.get('step')} steps on {last.get('tasks_seen')} tasks, stopped: {last.get('stopped_reason')}, "
          f"device {model.device}")
    restarts = (model.provenance or {}).get("restarts")
    if restarts:
        print(f"restarted {restarts} time(s): the first validation of the earlier start(s) sat on the prior; "
              f"kept the start seeded {model.provenance['seed_used']}")
    if model.verdict is None:
        print("no verdict: training had no validation tasks (--validation 0)")
        return 0
    print(model.verdict.message)
    return 0 if model.verdict.learned else EXIT_NOT_LEARNED


def _query_mesh(args, tasks):
    """The query ``(time, space)`` of ``dklfm infer``: the measured mesh, or ``--points``/``--grid``/``--t-max``."""
    import numpy as np

    time = space = None
    start = float(tasks.time.min())
    stop = float(tasks.time.max())
    if args.t_max is not None:
        if not np.isfinite(args.t_max) or args.t_max <= start:
            raise InvalidInputError(f"--t-max {args.t_max} must be a finite time after the first measured time {start:g}.")
        stop = float(args.t_max)
    if args.grid is not None:
        if not tasks.is_spatial:
            raise InvalidInputError("--grid is for space x time measurements; use --points for time series.")
        if min(args.grid) < 2:
            raise InvalidInputError(f"--grid needs at least 2 points per axis, got {args.grid[0]} {args.grid[1]}.")
        _check_query_size(args.grid[0] * args.grid[1], tasks.n_tasks)
        space = np.linspace(float(tasks.space.min()), float(tasks.space.max()), args.grid[0])
        time = np.linspace(start, stop, args.grid[1])
    elif args.points is not None:
        if args.points < 2:
            raise InvalidInputError(f"--points must be at least 2, got {args.points}.")
        _check_query_size(args.points * (tasks.n_space if tasks.is_spatial else 1), tasks.n_tasks)
        time = np.linspace(start, stop, args.points)
    elif args.t_max is not None:
        step = float(np.median(np.diff(tasks.time.numpy()))) if tasks.n_time > 1 else stop - start
        if not step > 0 or not np.isfinite((stop - start) / step):
            raise InvalidInputError(f"The measured times are too close together to step to --t-max {args.t_max:g}; give --points.")
        _check_query_size(((stop - start) / step + 1) * (tasks.n_space if tasks.is_spatial else 1), tasks.n_tasks)
        time = np.arange(start, stop + 0.5 * step, step)
    return time, space


MAX_QUERY_VALUES = 200_000
"""Largest inference query, in (task, mesh point) pairs: about 1.5 GB of working memory (measured: 20,000 times
for the 3 p53 replicates take 0.8 GB)."""


def _check_query_size(points: float, n_tasks: int) -> None:
    if points * n_tasks > MAX_QUERY_VALUES:
        raise InvalidInputError(
            f"The query has {points:.3g} mesh points for each of {n_tasks} task(s), more than the {MAX_QUERY_VALUES} "
            "(task, point) pairs one run infers; ask for fewer with --points or --grid."
        )


MAX_SIMULATED_MESH = 10_000
"""Largest mesh of ``dklfm simulate`` per task (a chunk of 1024 tasks then holds about 400 MB per variable)."""
MAX_WINDOW_FACTOR = 1000
"""``--t-max`` may stretch a system's time window to at most this many times its default length."""


def _check_simulation_mesh(args, system) -> None:
    import numpy as np

    size = args.points if args.points is not None else args.grid[0] * args.grid[1] if args.grid is not None else None
    if size is not None and size > MAX_SIMULATED_MESH:
        raise InvalidInputError(f"A mesh of {size} points per task is more than the {MAX_SIMULATED_MESH} dklfm simulate writes; use fewer points.")
    if args.t_max is not None:
        start, stop = system.time_range
        longest = start + MAX_WINDOW_FACTOR * (stop - start)
        if not np.isfinite(args.t_max) or not start < args.t_max <= longest:
            raise InvalidInputError(
                f"--t-max {args.t_max} must be a finite time after the system's start {start:g}, at most {longest:g} "
                f"({MAX_WINDOW_FACTOR} times its default window)."
            )


def _infer(args) -> None:
    from .io import load_measurements, write_result
    from .systems import SYSTEMS
    from .trained import load_model

    _check_output_path(args.out, (".nc", ".csv"), inputs=(args.model, args.measurements), force=args.force)
    model = load_model(args.model, device=args.device)
    system = SYSTEMS.get(model.system_name)
    aliases = system.output_aliases if system is not None else None
    if args.out.suffix == ".nc" and _is_netcdf_file(args.measurements) and not args.refine:
        return _infer_streamed(args, model, aliases)
    tasks = load_measurements(
        args.measurements, expected_outputs=list(model.output_names), outputs_in_order=args.outputs_in_order,
        output_aliases=aliases,
    )
    _announce_measurements(args, tasks, model)
    time, space = _query_mesh(args, tasks)
    result = model.infer(tasks, time=time, space=space, time_mapping=args.time_mapping, refine=args.refine)
    write_result(result, args.out, overwrite=args.force)
    timing = f"{result.attrs.get('infer_ms_per_task', float('nan')):.2f} ms per task"
    if args.refine:
        timing = f"first answer {result.attrs['first_answer_ms_per_task']:.2f} ms, refined {timing}"
    print(f"wrote {args.out}: latent force of {result.sizes['task']} task(s) on {result.sizes['time']} time point(s), {timing}")


def _is_netcdf_file(path: Path) -> bool:
    from .io.source import NETCDF_MAGIC, is_netcdf

    try:
        with open(path, "rb") as handle:
            head = handle.read(max(len(magic) for magic in NETCDF_MAGIC))
    except OSError:
        return False
    return is_netcdf(head, path.name)


def _announce_measurements(args, tasks, model) -> None:
    """Say how the measured outputs were matched, and warn when the file names another system than the model's."""
    from .io.format import shown

    if "output_match" in tasks.dataset.attrs:
        print(f"dklfm infer: outputs taken as the model's: {tasks.dataset.attrs['output_match']}", file=sys.stderr)
    named = tasks.dataset.attrs.get("system")
    if named and named != model.system_name:
        warnings.warn(f"{args.measurements.name} names the system {shown(named)} but the model was trained on {model.system_name!r}.", stacklevel=1)


def _infer_streamed(args, model, aliases) -> None:
    """``dklfm infer`` of a netCDF file into netCDF, a chunk of tasks at a time (:mod:`dklfm_explore.stream`)."""
    from .stream import TaskChunks, infer_chunks

    chunks = TaskChunks(args.measurements, expected_outputs=list(model.output_names), output_aliases=aliases,
                        outputs_in_order=args.outputs_in_order)
    _announce_measurements(args, chunks.first, model)
    time, space = _query_mesh(args, chunks.first)
    with _progress_bar(chunks.n_tasks, "task", f"inferring {args.measurements.name}") as bar, _terminate_as_interrupt():
        summary = infer_chunks(model, chunks, args.out, time=time, space=space, time_mapping=args.time_mapping,
                               overwrite=args.force, progress=lambda done, total: bar.update(done - bar.n))
    print(f"wrote {args.out}: latent force of {summary.n_tasks} task(s) on {summary.n_time} time point(s), "
          f"{summary.infer_ms_per_task:.2f} ms per task")


@contextmanager
def _terminate_as_interrupt():
    """Within the block, SIGTERM (a scheduler's or torchrun's stop) unwinds like Ctrl-C, so partial files are removed."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _design(args) -> None:
    from .design import next_measurements
    from .io import load_measurements
    from .trained import load_model

    if args.out is not None:
        _check_output_path(args.out, (".csv",))
    model = load_model(args.model, device=args.device)
    tasks = load_measurements(args.measurements, expected_outputs=list(model.output_names))
    names = [str(name) for name in tasks.dataset["task"].values]
    if args.task is not None and args.task not in names:
        raise InvalidInputError(f"No task {args.task!r} in {args.measurements.name}; its tasks are {', '.join(names)}.")
    index = 0 if args.task is None else names.index(args.task)
    plan = next_measurements(model, tasks, args.next, args.candidates, task=index, time_mapping=args.time_mapping)
    print(f"next measurements for task {names[index]} (latent variance reduction, averaged over the window):")
    print(plan.to_string(index=False))
    if args.out is not None:
        plan.to_csv(args.out, index=False)
        print(f"wrote {args.out}")


def _info(args) -> None:
    path = args.path
    if not path.is_file():
        raise InvalidInputError(f"No file at {str(path)!r}.")
    if path.suffix == ".pt":
        from .trained import load_model

        model = load_model(path, device="cpu")
        print(describe_model(model))
        return
    from .data import open_taskset

    tasks = open_taskset(path)
    print(tasks)
    for key, value in tasks.dataset.attrs.items():
        print(f"  {key}: {value}")
    print(f"  parameters: {', '.join(tasks.parameter_names)}")


def describe_model(model) -> str:
    """A few lines on a trained model: system, outputs, training window, sizes, how training ended, its verdict."""
    last = model.history[-1] if model.history else {}
    provenance = model.provenance or {}
    if provenance.get("source") == "spec":
        origin = f"fresh simulations of {provenance.get('spec', {}).get('system')!r}"
    elif provenance.get("source"):
        origin = f"the task set {provenance.get('file') or '(in memory)'}"
    else:
        origin = "(not recorded: a checkpoint older than provenance)"
    lines = [
        f"DKLFM for {model.system_name!r} with outputs {', '.join(model.output_names)}",
        f"  trained on time {model.time_window[0]:g} to {model.time_window[1]:g}"
        + (f", space {model.space_window[0]:g} to {model.space_window[1]:g}" if model.space_window else ""),
        f"  model: {model.model_config}",
        f"  training: {model.config}",
        f"  trained from: {origin}" + (f", {provenance.get('steps')} steps, {provenance.get('tasks_seen')} tasks seen" if provenance else "")
        + (f", after {provenance['restarts']} restart(s) from starts stuck at the prior" if provenance.get("restarts") else ""),
        f"  epochs: {last.get('epoch')}, best validation latent MSE: {last.get('best_validation_latent_mse')}, "
        f"stopped: {last.get('stopped_reason')}",
        f"  verdict: {model.verdict.message if model.verdict is not None else 'none (a checkpoint older than the verdict, or no validation tasks)'}",
    ]
    return "\n".join(lines)


def _bench(args) -> None:
    from .bench import main as harness

    harness(args.args, prog="dklfm bench")


def _check_output_path(path: Path, suffixes: tuple[str, ...], *, inputs: tuple[Path, ...] = (), force: bool = False) -> None:
    """Refuse an output with another suffix, in a missing folder, that is one of the ``inputs``, or that
    exists already (unless ``force``)."""
    if path.suffix not in suffixes:
        raise InvalidInputError(f"Output file {str(path)!r} must end in {' or '.join(suffixes)}.")
    if not path.parent.exists():
        raise InvalidInputError(f"The folder {str(path.parent)!r} for the output file does not exist.")
    for source in inputs:
        if path.resolve() == source.resolve() or (path.exists() and source.exists() and path.samefile(source)):
            raise InvalidInputError(f"--out {str(path)!r} is an input of this command; write the result to another file.")
    if path.exists() and not force:
        raise InvalidInputError(f"{str(path)!r} exists already; choose another --out or pass --force to replace it.")


def _reader_went_away() -> int:
    """Stdout's reader closed the pipe (``dklfm info | head``): stop quietly, as a killed pipe writer does."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
