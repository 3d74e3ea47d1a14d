"""A plot pane whose panels wrap onto new rows on a narrow page, each with its own toolbar."""

from __future__ import annotations

import holoviews as hv
import panel as pn
import param
from bokeh.models import SaveTool

from ..io import file_stem

__all__ = ["FIGURE_FORMATS", "PlotPane", "panels_of", "saved_as"]

FIGURE_FORMATS = ("png", "svg")
"""What a plot's save tool can write: a PNG image, or SVG (vector; Bokeh then draws the figure as SVG in the page too)."""


def panels_of(plot) -> list:
    """The figures of ``plot``: a layout's panels, each with a toolbar (so each can be saved), else the plot itself.

    A toolbar sits on the right: one above a figure shares the title's line and disappears beside a long title.
    """
    if plot is None:
        return []
    if not isinstance(plot, hv.Layout):
        return [plot]
    panels = []
    for panel in plot.values():
        if panel.opts.get(backend="bokeh").kwargs.get("toolbar", "right") is None:
            panel = panel.opts(toolbar="right", clone=True, backend="bokeh")
        panels.append(panel)
    return panels


def _draw_as_svg(plot, element) -> None:
    plot.state.output_backend = "svg"


def _name_the_saved_file(plot, element) -> None:
    """The save tool writes a file named after the figure's title at once (without a name it asks for one)."""
    name = file_stem(getattr(plot.state.title, "text", "") or "", "plot")
    for tool in plot.state.toolbar.tools:
        if isinstance(tool, SaveTool):
            tool.filename = name


def saved_as(panel, figure_format: str):
    """``panel`` drawn so that its save tool writes ``figure_format`` (one of :data:`FIGURE_FORMATS`), named after its title."""
    hooks = [_name_the_saved_file] + ([_draw_as_svg] if figure_format == "svg" else [])
    return panel.opts(hooks=hooks, clone=True, backend="bokeh")


class PlotPane(pn.viewable.Viewer):
    """Show a HoloViews plot; a layout's panels sit in a row that wraps, so none is cut off at the right.

    ``object`` is the plot as the :mod:`~dklfm_explore.plots` functions return it (None shows nothing).
    One Bokeh figure per panel also keeps each panel's axes where they belong when several plots of a
    page change at once (one grid of figures drawn beside another came out with its axes misplaced).
    """

    object = param.Parameter(default=None, doc="The HoloViews element, overlay or layout shown, or None.")
    by_column = param.Boolean(default=False, doc="Keep a layout's columns together (one task per column), wrapping whole columns.")
    figure_format = param.Selector(default="png", objects=list(FIGURE_FORMATS), doc="What each panel's save tool writes.")

    def __init__(self, object=None, **params):
        super().__init__(**params)
        self._box = pn.FlexBox(sizing_mode="stretch_width", flex_wrap="wrap")
        self.param.watch(self._draw, ["object", "figure_format"])
        self.object = object

    def follow(self, source: param.Parameterized) -> "PlotPane":
        """Take ``source.figure_format`` now and whenever it changes (the session's choice); returns ``self``."""
        self.figure_format = source.figure_format
        source.param.watch(lambda event: setattr(self, "figure_format", event.new), "figure_format")
        return self

    def _draw(self, *_):
        panes = [pn.pane.HoloViews(saved_as(panel, self.figure_format), linked_axes=False) for panel in panels_of(self.object)]
        columns = getattr(self.object, "_max_cols", None) if isinstance(self.object, hv.Layout) else None
        if self.by_column and columns and len(panes) > columns:
            panes = [pn.Column(*panes[k::columns]) for k in range(columns)]
        self._box[:] = panes

    @property
    def loading(self) -> bool:
        return self._box.loading

    @loading.setter
    def loading(self, value: bool) -> None:
        self._box.loading = value

    def __panel__(self):
        return self._box
