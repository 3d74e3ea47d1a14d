"""The DKLFM Explorer dashboard: one template, a sidebar of settings and one tab per task."""

from __future__ import annotations

import panel as pn

from .base import Session
from .inference import ExtrapolationView, InferenceView, SuperResolutionView
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

    Building it simulates the default task set (a few hundred milliseconds) and
    picks up a bundled pretrained model for that system if the package ships one,
    so the first screen is never empty.
    """

    def __init__(self, **params):
        super().__init__(**params)
        self.session = Session()
        self.system = SystemView(self.session)
        self.taskset = TaskSetView(self.session, self.system)
        self.training = TrainingView(self.session)
        self.inference = InferenceView(self.session, self.training)
        self.extrapolation = ExtrapolationView(self.session, self.training, self.system)
        self.super_resolution = SuperResolutionView(self.session, self.training, self.system)
        self.your_data = YourDataView(self.session, self.training)
        self.taskset.generate_now()
        self.training.guard(lambda: self.training.load_bundled(self.system.system))
        self.tabs = pn.Tabs(
            ("System", self.system),
            ("Task set", self.taskset),
            ("Training", self.training),
            ("Inference", self.inference),
            ("Extrapolation", self.extrapolation),
            ("Super-resolution", self.super_resolution),
            ("Your data", self.your_data),
            dynamic=False, sizing_mode="stretch_width",
        )

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
    """Build a fresh dashboard (call once per page load); ``.servable()`` it or display it in a notebook."""
    return Explorer().template()
