"""The DKLFM Explorer dashboard: one template, a sidebar of settings and one tab per task."""

from __future__ import annotations

import panel as pn

from .base import Session
from .inference import ExtrapolationView, InferenceView, SuperResolutionView, _ResultSection
from .system import SystemView
from .taskset import TaskSetView
from .training import TrainingView
from .upload import YourDataView

__all__ = ["Explorer", "explorer"]

TITLE = "DKLFM Explorer"
ACCENT = "#1f5f8b"



FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"


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
        self.extrapolation = ExtrapolationView(self.session, self.training, self.system, shown=False)
        self.super_resolution = SuperResolutionView(self.session, self.training, self.system, shown=False)
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
        self.tabs = pn.Tabs(*self.sections.items(), dynamic=True, sizing_mode="stretch_width")
        self.tabs.param.watch(self._on_tab, "active")
        if start:
            self.start()

    def start(self) -> None:
        """The session's first work: the preview, the default task set and the bundled model (about a second)."""
        self.system.refresh_preview()
        self.taskset.generate_now()
        self.training.guard(lambda: self.training.load_bundled(self.system.system))
        self.system._preview_pane.loading = False

    def _on_tab(self, event) -> None:
        section = list(self.sections.values())[event.new]
        if isinstance(section, _ResultSection):
            section.show()

    def show(self, name: str) -> None:
        """Switch to the tab called ``name`` (as a click on it does)."""
        self.tabs.active = list(self.sections).index(name)

    def template(self) -> pn.template.BaseTemplate:
        """The page: settings in the sidebar, the sections as tabs.

        The Fast design without its web font (see :class:`OfflineFast`).
        """
        return pn.template.FastListTemplate(
            title=TITLE,
            sidebar=[self.system.sidebar()],
            main=[self.tabs],
            accent=ACCENT,
            sidebar_width=340,
            theme_toggle=False,
            design=OfflineFast,
            font=FONT,
            font_url="",
        )

    def __panel__(self):
        return pn.Column(pn.Row(self.system.sidebar(), self.tabs), sizing_mode="stretch_width")


def explorer() -> pn.template.BaseTemplate:
    """Build a fresh dashboard (call once per page load); ``.servable()`` it or display it in a notebook.

    Served, the page is answered first (settings, equation, a loading preview) and the session's
    first work (:meth:`Explorer.start`) runs once the browser has connected; elsewhere it runs at once.
    """
    app = Explorer(start=False)
    app.system._preview_pane.loading = True
    pn.state.onload(app.start)
    return app.template()
