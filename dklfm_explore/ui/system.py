"""The system and its simulation settings, with widgets generated from the system's specification."""

from __future__ import annotations

import re

import panel as pn
import param

from .. import plots
from ..spec import SimulationSpec
from ..systems import SYSTEMS, System, get_system
from .base import Section, next_tick
from .panes import PlotPane
from .session import Session, simulate_spec

__all__ = ["SimulationSettings", "SystemView", "settings_for", "plain_symbol", "label_on_its_own_line"]

GREEK = {"alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "lambda": "λ", "mu": "μ", "sigma": "σ", "theta": "θ", "kappa": "κ"}
"""LaTeX Greek letters written in the widget labels as the letters themselves."""


SUBSCRIPTS = dict(zip("0123456789ijn", "₀₁₂₃₄₅₆₇₈₉ᵢⱼₙ"))
SUPERSCRIPTS = dict(zip("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹"))


def plain_symbol(symbol: str) -> str:
    """A LaTeX symbol as plain text for a widget label: a Greek letter's command becomes the letter (``\\lambda`` -> λ),
    a one-character sub- or superscript its Unicode form (``b_j`` -> bⱼ, ``u_0`` -> u₀, ``x^2`` -> x²)."""
    text = re.sub(r"\\([A-Za-z]+)", lambda m: GREEK.get(m.group(1), m.group(1)), symbol)
    text = re.sub(r"_\{?([0-9ijn])\}?", lambda m: SUBSCRIPTS[m.group(1)], text)
    return re.sub(r"\^\{?([0-9])\}?", lambda m: SUPERSCRIPTS[m.group(1)], text)


def label_on_its_own_line(widget: pn.widgets.EditableRangeSlider) -> pn.widgets.EditableRangeSlider:
    """Put a range slider's label above its two number boxes, so a long label never pushes them past a narrow sidebar."""
    edit = widget._composite[0]
    edit.styles = {"flex-wrap": "wrap"}
    widget._label.styles = {"flex": "0 0 100%"}
    return widget


PREVIEW_TASKS = 3
"""Tasks drawn for the live preview: enough to see the variety, fast enough to redraw on every change."""
PER_OUTPUT_SCALE_BOUNDS = (0.05, 3.0)
"""Per-output ranges are set as multiples of each output's typical (mid-range) value."""
WIDEN = 1.0
"""Slider bounds extend the default range by this many range-widths on each side."""
DEFAULT_TASKS = 200
"""Default task-set size: simulated at start in well under a second on a laptop CPU."""
MAX_TASKS = 20_000
MAX_POINTS = 400


def _slider_bounds(low: float, high: float) -> tuple[float, float]:
    span = (high - low) or abs(high) or 1.0
    lower = low / 4 if low > 0 else low - WIDEN * span
    return (round(lower, 6), round(high + WIDEN * span, 6))


class SimulationSettings(param.Parameterized):
    """Settings of a simulation: the knobs every system has.

    :func:`settings_for` derives one subclass per system that adds one range
    per kinetic parameter (:class:`~dklfm_explore.systems.ParameterSpec`) and
    sets the force prior's defaults.
    """

    n_tasks = param.Integer(default=DEFAULT_TASKS, bounds=(2, MAX_TASKS), label="number of tasks", doc="Tasks in the task set.")
    n_points = param.Integer(default=30, bounds=(3, MAX_POINTS), label="time points", doc="Points of the time mesh.")
    n_space = param.Integer(default=21, bounds=(3, MAX_POINTS), label="space points", doc="Points of the space mesh.")
    noise_level = param.Number(default=0.1, bounds=(0.0, 1.0), step=0.01, label="observation noise", doc="Noise std as a fraction of each output's std across tasks.")
    seed = param.Integer(default=0, bounds=(0, None), label="seed", doc="Seed of the simulation: same seed, same tasks.")
    kernel = param.Selector(default="rbf", objects=["rbf", "periodic"], label="force kernel", doc="Kernel of the force's GP prior.")
    lengthscale = param.Range(default=(1.0, 3.0), label="force lengthscale", doc="Range the tasks draw their force lengthscale from.")
    period = param.Range(default=(5.0, 10.0), label="force period", doc="Range of the period (periodic kernel).")
    space_lengthscale = param.Range(default=(0.1, 0.4), label="force space lengthscale", doc="Range of the space lengthscale.")
    variance = param.Number(default=1.0, bounds=(0.01, 10.0), step=0.01, label="force variance", doc="Prior variance of the force.")
    mean = param.Number(default=0.0, bounds=(-5.0, 5.0), step=0.1, label="force mean", doc="Prior mean of the force.")

    system_name = ""
    kinetic: tuple = ()

    def visible_names(self) -> list[str]:
        """The settings that apply to this system, in display order."""
        system = get_system(self.system_name)
        names = ["n_tasks"] + (["n_space"] if system.is_spatial else []) + ["n_points", "noise_level", "seed", "kernel", "lengthscale"]
        if self.kernel == "periodic":
            names.append("period")
        if system.is_spatial:
            names.append("space_lengthscale")
        return names + ["variance", "mean"] + [spec.name for spec in self.kinetic]

    def spec(self) -> SimulationSpec:
        """The :class:`SimulationSpec` these settings describe (the number of tasks apart)."""
        system = get_system(self.system_name)
        prior = system.force_prior.with_(
            kernel=self.kernel,
            lengthscale=tuple(self.lengthscale),
            variance=self.variance,
            mean=self.mean,
            period=tuple(self.period) if self.kernel == "periodic" else system.force_prior.period,
            space_lengthscale=tuple(self.space_lengthscale) if system.is_spatial else None,
        )
        ranges = {}
        for spec in self.kinetic:
            low, high = getattr(self, spec.name)
            if spec.per_output:
                typical = [(a + b) / 2 for a, b in zip(_as_tuple(spec.low), _as_tuple(spec.high))]
                ranges[spec.name] = (tuple(low * t for t in typical), tuple(high * t for t in typical))
            else:
                ranges[spec.name] = (low, high)
        mesh = dict(grid=(self.n_space, self.n_points)) if system.is_spatial else dict(n_points=self.n_points)
        return SimulationSpec(system=self.system_name, seed=self.seed, noise_level=self.noise_level,
                              parameter_ranges=ranges, force_prior=prior, **mesh)


def _as_tuple(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def settings_for(system: System | str) -> SimulationSettings:
    """Build the settings of ``system``: its defaults, plus one range widget per kinetic parameter."""
    system = get_system(system)
    extra = {}
    for spec in system.parameters:
        if spec.per_output:
            typical = [(a + b) / 2 for a, b in zip(_as_tuple(spec.low), _as_tuple(spec.high))]
            default = (round(min(_as_tuple(spec.low)[k] / typical[k] for k in range(len(typical))), 3),
                       round(max(_as_tuple(spec.high)[k] / typical[k] for k in range(len(typical))), 3))
            extra[spec.name] = param.Range(
                default=default, bounds=PER_OUTPUT_SCALE_BOUNDS, step=0.01,
                label=f"{spec.name.replace('_', ' ')} {plain_symbol(spec.symbol)} (x typical)",
                doc=f"{spec.doc} [{spec.unit}], per output, as a multiple of its typical value",
            )
        else:
            extra[spec.name] = param.Range(
                default=(spec.low, spec.high), bounds=_slider_bounds(spec.low, spec.high),
                label=f"{spec.name.replace('_', ' ')} {plain_symbol(spec.symbol)} [{plain_symbol(spec.unit)}]", doc=f"{spec.doc} [{spec.unit}]",
            )
    prior = system.force_prior
    for name in ("lengthscale", "period", "space_lengthscale"):
        bounds = getattr(prior, name)
        if bounds is not None:
            base = SimulationSettings.param[name]
            extra[name] = param.Range(default=tuple(bounds), bounds=_slider_bounds(*bounds), label=base.label, doc=base.doc)
    cls = type(f"{type(system).__name__}Settings", (SimulationSettings,), {
        "system_name": system.name,
        "kinetic": tuple(system.parameters),
        **extra,
    })
    values = dict(kernel=prior.kernel, variance=prior.variance, mean=prior.mean, noise_level=system.noise_level)
    if system.is_spatial:
        values["n_space"], values["n_points"] = system.default_grid
    else:
        values["n_points"] = system.default_points
    return cls(**values)


class SystemView(Section):
    """Pick a system, see its equation, set its simulation parameters and preview a few tasks.

    Built with ``preview=False``, it draws no preview until :meth:`refresh_preview` is first called.
    """

    system = param.Selector(default="transcription", objects=list(SYSTEMS), doc="The dynamical system.")
    settings = param.ClassSelector(class_=SimulationSettings, doc="The current system's simulation settings.")
    preview = param.Parameter(default=None, doc="A few tasks simulated with the current settings.")

    def __init__(self, session: Session, *, preview: bool = True, **params):
        super().__init__(session, **params)
        self.param.system.objects = list(SYSTEMS)
        self._previewing = preview
        self.later = next_tick
        self._preview_pending = False
        self._settings_watcher = None
        self._system_select = pn.widgets.Select.from_param(self.param.system, name="System", sizing_mode="stretch_width")
        self._settings_box = pn.Column(sizing_mode="stretch_width")
        self._equation = pn.pane.LaTeX(sizing_mode="stretch_width", styles={"font-size": "1.2em"})
        self._description = pn.pane.Markdown(sizing_mode="stretch_width")
        self._preview_pane = PlotPane(by_column=True).follow(session)
        self._on_system()
        self.param.watch(self._on_system, "system")

    def _on_system(self, *_):
        system = get_system(self.system)
        self._equation.object = f"$${system.equation}$$"
        self._description.object = f"**{system.title}.** {system.description}"
        self.settings = settings_for(system)
        if self._settings_watcher is not None:
            self._settings_watcher[0].param.unwatch(self._settings_watcher[1])
        watcher = self.settings.param.watch(self._on_settings, list(self.settings.param)[1:])
        self._settings_watcher = (self.settings, watcher)
        self._draw_settings()
        if self._previewing:
            self._preview_soon()

    def _on_settings(self, *events):
        if any(event.name == "kernel" for event in events):
            self._draw_settings()
        if self._previewing:
            self._preview_soon()

    def _preview_soon(self):
        """Grey the preview now and redraw it on the page's next tick (at once off a server), so the new equation
        or settings never stand over the old tasks looking current."""
        self._preview_pane.loading = True
        if self._preview_pending:
            return
        self._preview_pending = self.later(self.refresh_preview)
        if not self._preview_pending:
            self.refresh_preview()

    def _draw_settings(self):
        names = self.settings.visible_names()
        widgets = {
            name: {"type": pn.widgets.EditableRangeSlider, "throttled": True} for name in names
            if isinstance(self.settings.param[name], param.Range)
        }
        widgets.update({
            name: {"type": pn.widgets.FloatSlider, "throttled": True} for name in names
            if isinstance(self.settings.param[name], param.Number) and not isinstance(self.settings.param[name], param.Integer)
        })
        widgets.update({
            "n_tasks": {"type": pn.widgets.IntInput, "step": 50},
            "seed": {"type": pn.widgets.IntInput},
            "n_points": {"type": pn.widgets.IntInput},
            "n_space": {"type": pn.widgets.IntInput},
        })
        settings = pn.Param(self.settings, parameters=names, widgets={k: v for k, v in widgets.items() if k in names},
                            show_name=False, sizing_mode="stretch_width")
        for widget in settings._widgets.values():
            if isinstance(widget, pn.widgets.EditableRangeSlider):
                label_on_its_own_line(widget)
        self._settings_box[:] = [settings]

    def refresh_preview(self):
        """Simulate :data:`PREVIEW_TASKS` tasks with the current settings and draw them (and from now on at every change)."""
        self._previewing = True
        self._preview_pending = False

        def run():
            spec = self.settings.spec()
            self.session.sidebar_spec = spec
            self.preview = simulate_spec(spec, PREVIEW_TASKS)
            self._preview_pane.object = plots.sample_tasks(self.preview, PREVIEW_TASKS)
            self.say("")
        self.guard(run)
        self._preview_pane.loading = False

    def sidebar(self) -> pn.viewable.Viewable:
        """The widgets: system choice and its settings."""
        return pn.Column(self._system_select, self._settings_box, sizing_mode="stretch_width")

    def __panel__(self):
        return pn.Column(
            self._alert, self._equation, self._description,
            pn.pane.Markdown("**A few tasks drawn with the settings on the left** (they redraw as you change them):"),
            self._preview_pane, sizing_mode="stretch_width",
        )
