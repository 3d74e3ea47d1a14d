"""The DKLFM Explorer dashboard: one template, a sidebar of settings and one tab per task."""

from __future__ import annotations

import panel as pn
from panel.io.resources import LOCAL_DIST

from .base import Banner
from .extrapolation import ExtrapolationView
from .inference import InferenceView
from .sections import ModelSection, ResultSection
from .super_resolution import SuperResolutionView
from .panes import FIGURE_FORMATS
from .session import Session
from .system import SystemView
from .taskset import TaskSetView
from .training import TrainingView
from .upload import YourDataView

__all__ = ["Explorer", "explorer"]

TITLE = "DKLFM Explorer"
ACCENT = "#1f5f8b"



SIDEBAR_WIDTH = 340
"""Panel's setting widgets are 300 px wide; with their margins they need this much."""
FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"
TAB_BAR_CSS = ".bk-headers-wrapper, .bk-headers { flex-wrap: wrap; } .bk-tab { padding: 4px 10px; }"
"""The tab bar wraps onto a second line on narrow screens instead of cutting tabs off."""


OfflineFast = type("Fast", (pn.theme.Fast,), {
    "__doc__": "Panel's Fast design without the Open Sans font it fetches from Google, so the app runs offline.",
    "__module__": __name__,
    "_resources": {**pn.theme.Fast._resources, "font": {}},
})
"""Named ``Fast`` because Panel finds a design's bundled files under its class name in lower case."""


class Explorer(pn.viewable.Viewer):
    """All sections of the dashboard over one :class:`~dklfm_explore.ui.base.Session`.

    Starting it (at construction, or later with ``start=False`` and :meth:`start`) draws the
    preview, simulates the default task set (a few hundred milliseconds) and picks up a
    bundled pretrained model for that system if the package ships one, so the first screen
    is never empty.  Tabs are rendered when first shown, and the
    model tabs (inference, extrapolation, super-resolution) compute their first
    result then, on a worker thread.
    """

    def __init__(self, *, start: bool = True, **params):
        super().__init__(**params)
        self.session = Session()
        self.system = SystemView(self.session, preview=False)
        self.taskset = TaskSetView(self.session, self.system)
        self.training = TrainingView(self.session)
        self.inference = InferenceView(self.session, self.training, shown=False)
        self.extrapolation = ExtrapolationView(self.session, self.training, shown=False)
        self.super_resolution = SuperResolutionView(self.session, self.training, shown=False)
        self.your_data = YourDataView(self.session, self.training)
        self.sections = {
            "System": self.system,
            "Task set": self.taskset,
            "Training": self.training,
            "Inference": self.inference,
            "Extrapolation": self.extrapolation,
            "Super-resolution": self.super_resolution,
            "Your data": self.your_data,
        }
        self.banners = {name: Banner(self.session, self.disagreement) for name in self.sections}
        for controls in (self.taskset.controls, self.training.controls):
            controls.param.watch(lambda _: [banner.refresh() for banner in self.banners.values()], "running")
        for section in self.sections.values():
            if isinstance(section, ModelSection):
                section.train_for = self.train_for
        self.tabs = pn.Tabs(*((name, pn.Column(self.banners[name], section, sizing_mode="stretch_width")) for name, section in self.sections.items()),
                            dynamic=True, sizing_mode="stretch_width", stylesheets=[TAB_BAR_CSS])
        self.tabs.param.watch(self._on_tab, "active")
        self.figure_format = pn.widgets.RadioButtonGroup.from_param(
            self.session.param.figure_format, name="Plots save as", options={name.upper(): name for name in FIGURE_FORMATS}, color="light",
            description="What the save tool beside every plot writes: a PNG image, or SVG to edit as vectors (the plots are then drawn as SVG on the page too).",
        )
        if start:
            self.start()

    def disagreement(self):
        """``(text, button label, action)`` when the sidebar, the task set and the model disagree, else None."""
        session = self.session
        tasks, wanted, model = session.tasks, session.sidebar_spec, session.model
        if tasks is None or wanted is None or self.taskset.running or self.training.running:
            return None
        have = session.spec
        if tasks.system_name and wanted.system != tasks.system_name:
            return (f"The sidebar shows **{wanted.system}**, but the task set and the tabs are of **{tasks.system_name}**.",
                    f"Generate {wanted.system} tasks", self.align)
        if have is not None and wanted != have:
            return ("The settings in the sidebar differ from those that made the task set.",
                    "Generate tasks with these settings", self.align)
        if model is not None and tasks.system_name and model.system_name != tasks.system_name:
            return (f"The model in use is for **{model.system_name}**, the task set is of **{tasks.system_name}**.",
                    f"Train a model for {tasks.system_name}", lambda: self.train_for(tasks.system_name))
        return None

    def align(self) -> None:
        """Simulate the task set the sidebar describes; then use a model of its system from the list or the bundle."""
        self.taskset.generate(then=self._model_for_tasks)
        if self.taskset.confirm.pending:
            self.show("Task set")

    def _model_for_tasks(self) -> None:
        system = self.session.tasks.system_name
        if self.session.model is not None and self.session.model.system_name == system:
            return
        entry = next((e for e in reversed(self.session.models) if e.system_name == system), None)
        if entry is not None:
            self.session.choose(entry)
        else:
            self.training.guard(lambda: self.training.load_bundled(system))

    def train_for(self, system: str | None) -> None:
        """Train a model for ``system``: on the session's task set if it is of that system, else on a fresh one of its defaults."""
        tasks = self.session.tasks
        if system is None or (tasks is not None and tasks.system_name == system):
            self.show("Training")
            self.training.train()
            return
        self.system.system = system
        self.taskset.generate(then=self.training.train)
        self.show("Task set" if self.taskset.confirm.pending else "Training")

    def start(self) -> None:
        """The session's first work: the preview, the default task set and the bundled model (about a second)."""
        self.system.refresh_preview()
        self.taskset.generate_now()
        self.training.guard(lambda: self.training.load_bundled(self.system.system))
        self.system._preview_pane.loading = False
        for banner in self.banners.values():
            banner.refresh()

    def _on_tab(self, event) -> None:
        section = list(self.sections.values())[event.new]
        if isinstance(section, ResultSection):
            section.show()
        for banner in self.banners.values():
            banner.refresh()

    def show(self, name: str) -> None:
        """Switch to the tab called ``name`` (as a click on it does)."""
        self.tabs.active = list(self.sections).index(name)

    def template(self) -> pn.template.BaseTemplate:
        """The page: settings in the sidebar, the sections as tabs.

        The Fast design without its web font (see :class:`OfflineFast`).
        """
        return pn.template.FastListTemplate(
            title=TITLE,
            sidebar=[self.system.sidebar(), self._figure_format_row()],
            main=[self.tabs],
            accent=ACCENT,
            sidebar_width=SIDEBAR_WIDTH,
            theme_toggle=False,
            design=OfflineFast,
            font=FONT,
            font_url="",
        )

    def _figure_format_row(self) -> pn.viewable.Viewable:
        return pn.Column(pn.pane.Markdown("**Plots save as**", margin=(10, 10, 0, 10)), self.figure_format, sizing_mode="stretch_width")

    def __panel__(self):
        return pn.Column(pn.Row(pn.Column(self.system.sidebar(), self._figure_format_row()), self.tabs), sizing_mode="stretch_width")


def _serve_stylesheets_locally() -> None:
    """Make Panel fall back to the server's own copy of its stylesheets, never its CDN.

    Panel resolves a component's stylesheet against the document's ``dist_url`` and, for updates
    that arrive without a document (results delivered from a worker thread, a spinner switched on),
    against its CDN: an offline page then fails to load ``loading.css`` and ``markdown.css``.
    A served page has every file under ``static/extensions/panel/``, so that is the fallback here.
    """
    import panel.reactive

    panel.reactive.CDN_DIST = LOCAL_DIST


def explorer() -> pn.template.BaseTemplate:
    """Build a fresh dashboard (call once per page load); ``.servable()`` it or display it in a notebook.

    Served, the page is answered first (settings, equation, a loading preview) and the session's
    first work (:meth:`Explorer.start`) runs once the browser has connected; elsewhere it runs at once.
    """
    if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
        _serve_stylesheets_locally()
    app = Explorer(start=False)
    app.system._preview_pane.loading = True
    pn.state.onload(app.start)
    if pn.state.location is not None:
        pn.state.location.sync(app.tabs, {"active": "tab"})
        pn.state.location.sync(app.system, {"system": "system"})
        pn.state.location.sync(app.inference, {"task": "task"})
    return app.template()
