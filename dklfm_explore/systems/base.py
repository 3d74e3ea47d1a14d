"""The system interface, its parameter specification and the registry of systems.

A *system* is a differential equation with one hidden driving force ``f``.  It
declares its parameters (:class:`ParameterSpec`), the Gaussian-process prior its
force is drawn from (:class:`ForcePrior`), its mesh, and a batched solver.  The
dashboard, the command line and the simulator discover systems through
:data:`SYSTEMS`; :func:`register_system` adds a user's own.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, ClassVar, Mapping

import torch

from ..errors import InvalidInputError, UnknownNameError

__all__ = [
    "ParameterSpec",
    "ForcePrior",
    "System",
    "SYSTEMS",
    "register_system",
    "get_system",
    "Force",
]

Force = Callable[[torch.Tensor], torch.Tensor]
"""A latent force as a function of time: scalar ``t`` -> Tensor ``(task,)`` (ODEs)."""


@dataclass(frozen=True)
class ParameterSpec:
    """One kinetic parameter of a system and the distribution tasks draw it from.

    Each task draws the parameter independently, uniformly in ``[low, high]``
    (log-uniformly when ``log_uniform``).  With ``per_output=True`` it has one
    value per output (for example one decay rate per gene) and ``low``/``high``
    may be tuples with one bound per output.

    Parameters
    ----------
    name : str
        Identifier, also the variable name in a task set (``decay_rate``).
    symbol : str
        LaTeX symbol as written in the system's equation (``d_j``).
    low, high : float or tuple of float
        Bounds of the sampling distribution; tuples give one bound per output.
    unit : str
        Physical unit, e.g. ``"1/h"``.
    doc : str
        One-line meaning, shown next to the dashboard widget.
    per_output : bool
        Whether each output has its own value.
    log_uniform : bool
        Draw ``log(value)`` uniformly instead of ``value``.
    """

    name: str
    symbol: str
    low: float | tuple[float, ...]
    high: float | tuple[float, ...]
    unit: str
    doc: str
    per_output: bool = False
    log_uniform: bool = False

    def bounds(self, n_outputs: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(low, high)`` as float64 tensors of shape ``(output,)``, or ``()`` if scalar.

        Per-output bounds given for a different number of outputs are cycled.
        """
        low = torch.as_tensor(self.low, dtype=torch.float64)
        high = torch.as_tensor(self.high, dtype=torch.float64)
        if self.per_output:
            low, high = _per_output(low, n_outputs), _per_output(high, n_outputs)
        if torch.any(high < low):
            raise InvalidInputError(
                f"Parameter {self.name!r} has low {self.low} above high {self.high}; give low <= high."
            )
        if self.log_uniform and torch.any(low <= 0):
            raise InvalidInputError(
                f"Parameter {self.name!r} is log-uniform but its low bound {self.low} is not positive."
            )
        return low, high

    def sample(self, n_tasks: int, n_outputs: int, generator: torch.Generator) -> torch.Tensor:
        """Draw values for ``n_tasks`` tasks.

        Returns
        -------
        Tensor ``(task,)`` or ``(task, output)`` if ``per_output``, float64 on the CPU.
        """
        low, high = self.bounds(n_outputs)
        shape = (n_tasks, n_outputs) if self.per_output else (n_tasks,)
        unit = torch.rand(shape, generator=generator, dtype=torch.float64)
        if self.log_uniform:
            return torch.exp(low.log() + unit * (high.log() - low.log()))
        return low + unit * (high - low)


def _per_output(bound: torch.Tensor, n_outputs: int) -> torch.Tensor:
    """Give ``bound`` (scalar or ``(k,)``) one entry per output, cycling if ``k != n_outputs``."""
    flat = bound.reshape(-1)
    return flat[torch.arange(n_outputs) % flat.numel()]


@dataclass(frozen=True)
class ForcePrior:
    """Gaussian-process prior of a system's latent force.

    The kernel over time is ``variance * exp(-(t - t')^2 / (2 lengthscale^2))``
    (``"rbf"``) or ``variance * exp(-2 sin^2(pi |t - t'| / period) / lengthscale^2)``
    (``"periodic"``).  Over space x time the kernel is the product of an RBF in
    space (``space_lengthscale``) and the time kernel.  Each task draws its own
    lengthscales (and period) uniformly from the given ranges.

    Parameters
    ----------
    kernel : {"rbf", "periodic"}
    lengthscale : (float, float)
        Range of the time lengthscale, in the system's time unit.
    variance : float
        Prior variance of the force.
    mean : float
        Prior mean of the force.
    period : (float, float) or None
        Range of the period, for ``kernel="periodic"``.
    space_lengthscale : (float, float) or None
        Range of the space lengthscale, for space x time systems.
    """

    kernel: str = "rbf"
    lengthscale: tuple[float, float] = (1.0, 3.0)
    variance: float = 1.0
    mean: float = 0.0
    period: tuple[float, float] | None = None
    space_lengthscale: tuple[float, float] | None = None

    KERNELS: ClassVar[tuple[str, ...]] = ("rbf", "periodic")

    def __post_init__(self):
        if self.kernel not in self.KERNELS:
            raise UnknownNameError("force kernel", self.kernel, self.KERNELS)
        if self.kernel == "periodic" and self.period is None:
            raise InvalidInputError("A periodic force prior needs a period range, got period=None.")
        for name in ("lengthscale", "period", "space_lengthscale"):
            bounds = getattr(self, name)
            if bounds is not None and not (0 < bounds[0] <= bounds[1]):
                raise InvalidInputError(
                    f"Force prior {name} range {bounds} must be positive with low <= high."
                )
        if not self.variance > 0:
            raise InvalidInputError(f"Force prior variance {self.variance} must be positive.")

    def with_(self, **changes) -> "ForcePrior":
        """Return a copy with some fields changed (validated again)."""
        return replace(self, **changes)


class System:
    """Base class of every dynamical system with one latent force.

    Subclasses set the class attributes below and implement :meth:`solve`
    (or derive from :class:`~dklfm_explore.systems.ode.ODESystem`, which only
    asks for a right-hand side).  Instances are cheap and stateless.

    Attributes
    ----------
    name : str
        Registry key, e.g. ``"transcription"``.
    title : str
        Human title for the dashboard.
    equation : str
        The equation in LaTeX.
    description : str
        Two or three sentences: what the outputs and the latent force mean.
    parameters : tuple of ParameterSpec
    force_prior : ForcePrior
    output_names : tuple of str
        Names of the observed outputs (the ``output`` coordinate).
    output_aliases : dict
        Other names an output goes by, ``{output name: (alias, ...)}`` (a gene's official symbol and
        common names); measurements that name an output so are matched to it, without regard to case.
    time_range : (float, float)
        Default simulation window.
    default_points : int
        Default number of time points (ODE systems).
    space_range : (float, float) or None
        Spatial domain for space x time systems, else ``None``.
    default_grid : (int, int) or None
        Default ``(n_space, n_time)`` for space x time systems.
    noise_level : float
        Default observation noise: the noise standard deviation of each output
        as a fraction of that output's standard deviation across tasks.
    time_unit, space_unit, output_unit, latent_unit : str
    latent_name : str
        What the latent force is, e.g. ``"p53 activity"``.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    equation: ClassVar[str] = ""
    description: ClassVar[str] = ""
    parameters: ClassVar[tuple[ParameterSpec, ...]] = ()
    force_prior: ClassVar[ForcePrior] = ForcePrior()
    output_names: ClassVar[tuple[str, ...]] = ("y",)
    output_aliases: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    time_range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    default_points: ClassVar[int] = 50
    space_range: ClassVar[tuple[float, float] | None] = None
    default_grid: ClassVar[tuple[int, int] | None] = None
    noise_level: ClassVar[float] = 0.05
    time_unit: ClassVar[str] = ""
    space_unit: ClassVar[str] = ""
    output_unit: ClassVar[str] = ""
    latent_unit: ClassVar[str] = ""
    latent_name: ClassVar[str] = "latent force"

    @property
    def is_spatial(self) -> bool:
        """Whether the mesh is space x time (a PDE) rather than time only."""
        return self.space_range is not None

    @property
    def parameter_specs(self) -> Mapping[str, ParameterSpec]:
        """The parameter specifications by name."""
        return {spec.name: spec for spec in self.parameters}

    def sample_parameters(
        self,
        n_tasks: int,
        n_outputs: int | None = None,
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        ranges: Mapping[str, tuple] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Draw kinetic parameters for ``n_tasks`` tasks.

        Parameters
        ----------
        n_tasks : int
        n_outputs : int, optional
            Defaults to ``len(output_names)``.
        generator, seed :
            Source of randomness (a generator wins over a seed).
        ranges : mapping, optional
            ``{name: (low, high)}`` overriding the specification's bounds.

        Returns
        -------
        dict of Tensor
            ``(task,)`` or ``(task, output)`` float64 values on the CPU.
        """
        n_outputs = n_outputs or len(self.output_names)
        generator = _generator(generator, seed)
        specs = dict(self.parameter_specs)
        for key, bounds in (ranges or {}).items():
            if key not in specs:
                raise UnknownNameError("parameter", key, specs, where=f"system {self.name!r}")
            specs[key] = replace(specs[key], low=bounds[0], high=bounds[1])
        return {key: spec.sample(n_tasks, n_outputs, generator) for key, spec in specs.items()}

    def latent_force(
        self,
        draw: torch.Tensor,
        parameters: Mapping[str, torch.Tensor],
        mesh: "Mesh",
        hyper: Mapping[str, torch.Tensor],
    ) -> torch.Tensor:
        """Map a prior draw to the force that drives the system (default: identity).

        Parameters
        ----------
        draw : Tensor ``(task, force_time)`` or ``(task, force_space, force_time)``
        parameters : dict of Tensor
        mesh : Mesh
        hyper : dict of Tensor ``(task,)``
            The force prior's per-task hyperparameters.
        """
        return draw

    def link(self, value: torch.Tensor) -> torch.Tensor:
        """Map an unconstrained Gaussian-process value to the force, elementwise (default: identity).

        The baselines model the force as ``link(g)`` with ``g`` a GP, so a system
        whose force must keep a sign says so here (``exp`` for a positive predator).

        Parameters
        ----------
        value : Tensor ``(...)``

        Returns
        -------
        Tensor ``(...)``, the same shape, dtype and device
        """
        return value

    def solve(self, mesh: "Mesh", force: torch.Tensor, parameters: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Solve the system for a batch of tasks.

        Parameters
        ----------
        mesh : Mesh
            Output and force grids (see :func:`~dklfm_explore.systems.mesh.make_mesh`).
        force : Tensor ``(task, force_time)`` or ``(task, force_space, force_time)``
            The driving force on the mesh's force grid.
        parameters : dict of Tensor ``(task,)`` or ``(task, output)``

        Returns
        -------
        Tensor ``(task, output, time)`` or ``(task, output, space, time)``
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<system {self.name!r}: {self.title}>"


@dataclass(frozen=True)
class Mesh:
    """Where a system is solved and observed.

    ``time`` (and ``space``) are the output grid.  The force is sampled on the
    finer ``force_time`` (``force_space``) grid, which contains every output point
    and every stage time of the fixed-step solver, so the solver never
    interpolates the force.  ``output_index`` picks the output grid out of the
    force grid.
    """

    time: torch.Tensor
    force_time: torch.Tensor
    time_index: torch.Tensor
    solver_time: torch.Tensor
    space: torch.Tensor | None = None
    force_space: torch.Tensor | None = None
    space_index: torch.Tensor | None = None


SYSTEMS: dict[str, System] = {}
"""Registered systems by name."""


def register_system(cls: type[System]) -> type[System]:
    """Register a :class:`System` subclass under its ``name`` (usable as a decorator).

    Raises
    ------
    InvalidInputError
        If the class has no name or lacks parameters, output names or a force prior.
    """
    if not isinstance(cls, type) or not issubclass(cls, System):
        raise InvalidInputError(f"register_system takes a System subclass, got {cls!r}.")
    if not cls.name:
        raise InvalidInputError(f"System class {cls.__name__} needs a non-empty `name`.")
    if not cls.output_names:
        raise InvalidInputError(f"System {cls.name!r} needs at least one output name.")
    names = [spec.name for spec in cls.parameters]
    if len(set(names)) != len(names):
        raise InvalidInputError(f"System {cls.name!r} repeats a parameter name: {names}.")
    SYSTEMS[cls.name] = cls()
    return cls


def get_system(name: "str | System") -> System:
    """Return the registered system called ``name`` (a System instance is returned as is)."""
    if isinstance(name, System):
        return name
    try:
        return SYSTEMS[name]
    except KeyError:
        raise UnknownNameError("system", str(name), SYSTEMS) from None


def _generator(generator: torch.Generator | None, seed: int | None) -> torch.Generator:
    if generator is not None:
        return generator
    new = torch.Generator()
    new.manual_seed(0 if seed is None else int(seed))
    return new
