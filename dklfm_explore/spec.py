"""The simulation specification: everything that decides which tasks a simulation draws.

A :class:`SimulationSpec` names a system and fixes its mesh (a point count, a grid size or
explicit coordinates), time window, number of outputs, observation noise, parameter ranges,
force prior, seed and chunk size.  :func:`~dklfm_explore.simulate.simulate` takes one, a task
set records it in its attrs (``spec``, JSON) and restores it (:attr:`TaskSet.spec`), the
baselines read the mesh and force prior from it, and training from the simulator draws fresh
tasks from it.  Task sets written before the spec existed carry ``settings`` JSON instead;
:meth:`SimulationSpec.from_legacy_settings` reads them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields, replace
from typing import Mapping

import torch

from .errors import InvalidInputError
from .systems.base import ForcePrior, Mesh, System, get_system
from .systems.mesh import make_mesh

__all__ = ["SimulationSpec", "SPEC_ATTR", "LEGACY_SETTINGS_ATTR"]

SPEC_ATTR = "spec"
"""Task-set attribute holding :meth:`SimulationSpec.to_dict` as JSON."""
LEGACY_SETTINGS_ATTR = "settings"
"""Attribute of task sets written before the spec existed (JSON of the simulate() keywords)."""
MAX_NOISE_LEVEL = 10.0


@dataclass(frozen=True)
class SimulationSpec:
    """Which tasks a simulation draws; frozen, JSON round-trippable.

    Parameters
    ----------
    system : str
        A registered system name (a :class:`System` instance is replaced by its name).
    n_points : int, optional
        Time points; default the system's ``default_points`` (or the time count of its grid).
    grid : (int, int), optional
        ``(n_space, n_time)`` for space x time systems; default the system's ``default_grid``.
    time, space : tuple of float, optional
        Explicit, strictly increasing coordinates, overriding the counts (e.g. the union of
        a coarse and a fine grid, so one task is known on both).
    t_range : (float, float), optional
        Time window; default the system's ``time_range``.
    n_outputs : int, optional
        Outputs, for systems whose states are their outputs (genes); default all the system's.
    noise_level : float, optional
        Noise std as a fraction of each output's std across tasks; default the system's.
    parameter_ranges : mapping ``{name: (low, high)}``, optional
        Overrides of the system's parameter bounds; stored as sorted ``(name, (low, high))`` pairs.
    force_prior : ForcePrior or dict, optional
        Default the system's.
    seed : int
        Chunk ``k`` of a simulation draws from its own stream of this seed.
    chunk_size : int
        Tasks drawn at once.
    """

    system: str
    n_points: int | None = None
    grid: tuple[int, int] | None = None
    time: tuple[float, ...] | None = None
    space: tuple[float, ...] | None = None
    t_range: tuple[float, float] | None = None
    n_outputs: int | None = None
    noise_level: float | None = None
    parameter_ranges: tuple[tuple[str, tuple[float, float]], ...] = ()
    force_prior: ForcePrior | None = None
    seed: int = 0
    chunk_size: int = 1024

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        if isinstance(self.system, System):
            set_("system", self.system.name)
        if not isinstance(self.system, str) or not self.system:
            raise InvalidInputError(f"SimulationSpec.system must be a system name, got {self.system!r}.")
        if self.n_points is not None:
            set_("n_points", _count(self.n_points, "n_points", 3))
        if self.grid is not None:
            if len(tuple(self.grid)) != 2:
                raise InvalidInputError(f"SimulationSpec.grid must be (n_space, n_time), got {self.grid!r}.")
            set_("grid", tuple(_count(value, "grid", 3) for value in self.grid))
        for name in ("time", "space"):
            if getattr(self, name) is not None:
                set_(name, _axis(getattr(self, name), name))
        if self.t_range is not None:
            low, high = _pair(self.t_range, "t_range")
            if not high > low:
                raise InvalidInputError(f"SimulationSpec.t_range must end after it starts, got ({low:g}, {high:g}).")
            set_("t_range", (low, high))
        if self.n_outputs is not None:
            set_("n_outputs", _count(self.n_outputs, "n_outputs", 1))
        if self.noise_level is not None:
            level = float(self.noise_level)
            if not 0 <= level < MAX_NOISE_LEVEL:
                raise InvalidInputError(f"noise_level {self.noise_level} must be in [0, {MAX_NOISE_LEVEL:g}).")
            set_("noise_level", level)
        ranges = self.parameter_ranges
        items = ranges.items() if isinstance(ranges, Mapping) else (ranges or ())
        pairs = []
        for name, bounds in items:
            low, high = _pair(bounds, f"parameter_ranges[{name!r}]")
            if low > high:
                raise InvalidInputError(f"Parameter range {name!r} has low {low:g} above high {high:g}.")
            pairs.append((str(name), (low, high)))
        set_("parameter_ranges", tuple(sorted(pairs)))
        if isinstance(self.force_prior, Mapping):
            set_("force_prior", _force_prior(self.force_prior))
        elif self.force_prior is not None and not isinstance(self.force_prior, ForcePrior):
            raise InvalidInputError(f"SimulationSpec.force_prior must be a ForcePrior or a dict, got {type(self.force_prior).__name__}.")
        set_("seed", _integer(self.seed, "seed"))
        set_("chunk_size", _count(self.chunk_size, "chunk_size", 1))

    @property
    def ranges(self) -> dict[str, tuple[float, float]]:
        """``parameter_ranges`` as a dict."""
        return dict(self.parameter_ranges)

    @property
    def explicit_mesh(self) -> bool:
        return self.time is not None or self.space is not None

    def get_system(self) -> System:
        """The registered system this spec names."""
        return get_system(self.system)

    def replace(self, **changes) -> "SimulationSpec":
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def resolved(self, system: System | None = None) -> "SimulationSpec":
        """The same spec with every default made explicit from ``system`` (default: the named one).

        The counts of an explicit mesh are left None; otherwise ``n_points`` (ODE) or ``grid``
        (space x time) is filled in.
        """
        system = system or self.get_system()
        n_outputs = self.n_outputs or len(system.output_names)
        if getattr(system, "state_names", None) is not None and n_outputs != len(system.output_names):
            raise InvalidInputError(f"System {system.name!r} has exactly {len(system.output_names)} output(s), not {n_outputs}.")
        n_points, grid = self.n_points, self.grid
        if not self.explicit_mesh:
            if system.is_spatial:
                n_space, n_time = grid or system.default_grid
                if n_points is not None and self.grid is None:
                    n_time = n_points
                grid, n_points = (n_space, n_time), None
            elif grid is not None:
                raise InvalidInputError(f"System {system.name!r} is over time only; give --points (n_points), not --grid.")
            else:
                n_points = n_points or system.default_points
        return replace(
            self,
            system=system.name,
            n_points=n_points,
            grid=grid,
            t_range=tuple(self.t_range or ((self.time[0], self.time[-1]) if self.time is not None else system.time_range)),
            n_outputs=n_outputs,
            noise_level=system.noise_level if self.noise_level is None else self.noise_level,
            force_prior=self.force_prior or system.force_prior,
        )

    def mesh(self, system: System | None = None) -> Mesh:
        """The mesh the tasks are solved and observed on."""
        system = system or self.get_system()
        as_tensor = lambda values: None if values is None else torch.tensor(values, dtype=torch.float64)  # noqa: E731
        if self.space is not None and not system.is_spatial:
            raise InvalidInputError(f"System {system.name!r} is over time only; the spec gives space coordinates.")
        return make_mesh(system, n_points=self.n_points, grid=self.grid, t_range=self.t_range,
                         time=as_tensor(self.time), space=as_tensor(self.space))

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (tuples as lists); :meth:`from_dict` inverts it."""
        values = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name == "parameter_ranges":
                value = {name: list(bounds) for name, bounds in value}
            elif field.name == "force_prior" and value is not None:
                value = {f.name: list(v) if isinstance(v, tuple) else v for f in fields(value) for v in [getattr(value, f.name)]}
            elif isinstance(value, tuple):
                value = list(value)
            values[field.name] = value
        return values

    @classmethod
    def from_dict(cls, values: Mapping) -> "SimulationSpec":
        """Build a spec from :meth:`to_dict`'s output, naming any unknown key."""
        if not isinstance(values, Mapping):
            raise InvalidInputError(f"A simulation spec must be a dict, got {type(values).__name__}.")
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidInputError(f"Unknown simulation spec field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "SimulationSpec":
        try:
            values = json.loads(text)
        except (TypeError, ValueError) as error:
            raise InvalidInputError(f"The simulation spec is not valid JSON ({error}).") from error
        return cls.from_dict(values)

    @classmethod
    def from_legacy_settings(cls, system: str, settings: Mapping, *, n_outputs: int | None = None,
                             time=None, space=None) -> "SimulationSpec":
        """Read the ``settings`` JSON of task sets written before the spec existed.

        Those files recorded only whether the mesh was explicit (``explicit_mesh``), not its
        coordinates: pass the file's own ``time``/``space`` coordinates for that case.
        """
        explicit = bool(settings.get("explicit_mesh"))
        prior = settings.get("force_prior")
        return cls(
            system=system,
            n_points=None if explicit else settings.get("n_points"),
            grid=None if explicit or settings.get("grid") is None else tuple(settings["grid"]),
            time=None if not explicit or time is None else tuple(float(v) for v in time),
            space=None if not explicit or space is None else tuple(float(v) for v in space),
            t_range=None if settings.get("t_range") is None else tuple(settings["t_range"]),
            n_outputs=n_outputs,
            noise_level=settings.get("noise_level"),
            parameter_ranges=settings.get("parameter_ranges") or {},
            force_prior=_force_prior(prior) if isinstance(prior, Mapping) else None,
            seed=settings.get("seed", 0),
            chunk_size=settings.get("chunk_size", 1024),
        )


def _force_prior(values: Mapping) -> ForcePrior:
    known = {field.name for field in fields(ForcePrior)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InvalidInputError(f"Unknown force prior field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
    return ForcePrior(**{key: tuple(value) if isinstance(value, list) else value for key, value in values.items()})


def _integer(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
        raise InvalidInputError(f"SimulationSpec.{name} must be an integer, got {value!r}.")
    return int(value)


def _count(value, name: str, minimum: int) -> int:
    number = _integer(value, name)
    if number < minimum:
        raise InvalidInputError(f"SimulationSpec.{name} must be at least {minimum}, got {value}.")
    return number


def _pair(values, name: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in values)
    except (TypeError, ValueError):
        raise InvalidInputError(f"SimulationSpec.{name} must be two numbers (low, high), got {values!r}.") from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise InvalidInputError(f"SimulationSpec.{name} must be finite, got ({low}, {high}).")
    return low, high


def _axis(values, name: str) -> tuple[float, ...]:
    try:
        axis = tuple(float(v) for v in (values.tolist() if hasattr(values, "tolist") else values))
    except (TypeError, ValueError):
        raise InvalidInputError(f"SimulationSpec.{name} must be a sequence of numbers.") from None
    if len(axis) < 2 or not all(math.isfinite(v) for v in axis) or any(b <= a for a, b in zip(axis, axis[1:])):
        raise InvalidInputError(f"SimulationSpec.{name} must hold at least 2 finite, strictly increasing values.")
    return axis
