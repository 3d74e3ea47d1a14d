"""What every dashboard section shares: a message area, guarded actions, background jobs."""

from __future__ import annotations

import logging
import threading

from typing import Any, Callable

import panel as pn
import param
from panel.io.state import set_curdoc
from tornado.ioloop import IOLoop

from ..errors import DKLFMError
from .session import Session

__all__ = ["Section", "BackgroundJob", "JobControls", "Banner", "Confirm", "INTERNAL_ERROR", "eta_text", "next_tick"]

log = logging.getLogger(__name__)

INTERNAL_ERROR = "An internal error occurred; the details are in the server log."


class Section(pn.viewable.Viewer):
    """A dashboard section with its own message line and error handling.

    Actions run through :meth:`guard`: a :class:`DKLFMError` shows its message;
    anything else is logged with its traceback and shows :data:`INTERNAL_ERROR`.
    :attr:`confirm` asks before an action replaces something loaded.
    """

    session = param.ClassSelector(class_=Session, doc="The page's state, which the section reads and changes.")
    message = param.String(default="", doc="Shown above the section; empty hides it.")
    message_kind = param.Selector(default="info", objects=["info", "success", "warning", "danger"])

    def __init__(self, session: Session, **params):
        super().__init__(session=session, **params)
        self._alert = pn.pane.Alert(visible=False, margin=(5, 10), sizing_mode="stretch_width")
        self.confirm = Confirm()
        self.param.watch(self._show_message, ["message", "message_kind"])

    def _show_message(self, *_):
        self._alert.object = self.message
        self._alert.alert_type = self.message_kind
        self._alert.visible = bool(self.message)

    def say(self, text: str, kind: str = "info") -> None:
        """Show ``text`` in the section's message area."""
        self.message_kind = kind
        self.message = text

    def guard(self, action: Callable[[], Any]) -> Any:
        """Run ``action``; show a DKLFMError's message, log anything else as an internal error."""
        try:
            return action()
        except DKLFMError as error:
            self.say(str(error), "danger")
        except Exception:
            log.exception("Dashboard action failed")
            self.say(INTERNAL_ERROR, "danger")
        return None


def next_tick(callback: Callable[[], None]) -> bool:
    """Run ``callback`` on the served page's next tick, after what changed so far has reached the browser.

    Returns False (and runs nothing) off a server, in notebooks and tests, where the caller runs it at once.
    """
    doc = pn.state.curdoc
    if doc is None or doc.session_context is None:
        return False

    def scheduled():
        with set_curdoc(doc):
            callback()
    doc.add_next_tick_callback(scheduled)
    return True


class BackgroundJob:
    """Run a long job on a worker thread and deliver its callbacks to the page's document.

    ``work(progress, cancelled)`` runs on the thread.  ``progress(value)`` and the
    final ``on_done(result)`` / ``on_finally()`` are scheduled on the Bokeh document
    of the session that started the job (or called directly when there is none,
    as in notebooks and tests), so other sessions and this page stay responsive.
    They are handed to the server's IOLoop with its thread-safe ``add_callback``:
    a document's ``add_next_tick_callback`` called from another thread queues the
    callback without waking the loop.

    Parameters
    ----------
    section : Section
        Shows errors raised by ``work`` (DKLFMError message, else internal error).
    """

    def __init__(self, section: Section):
        self.section = section
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._doc = None
        self._loop = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def cancel(self) -> None:
        self._cancel.set()

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def start(self, work: Callable, *, on_progress: Callable, on_done: Callable, on_finally: Callable) -> None:
        self._cancel.clear()
        self._doc = pn.state.curdoc
        self._loop = IOLoop.current() if self._doc is not None and self._doc.session_context is not None else None

        def report(value):
            self._deliver(on_progress, value)

        def run():
            try:
                result = work(report, self.cancelled)
            except DKLFMError as error:
                self._deliver(self.section.say, str(error), "danger")
            except Exception:
                log.exception("Dashboard background job failed")
                self._deliver(self.section.say, INTERNAL_ERROR, "danger")
            else:
                self._deliver(lambda value: self.section.guard(lambda: on_done(value)), result)
            finally:
                self._deliver(on_finally)

        self._thread = threading.Thread(target=run, name="dklfm-job", daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the job (tests and notebooks)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _deliver(self, callback: Callable, *args) -> None:
        doc = self._doc
        if doc is not None and doc.session_context is not None:
            def scheduled():
                with set_curdoc(doc):
                    callback(*args)
            self._loop.add_callback(doc.add_next_tick_callback, scheduled)
        else:
            callback(*args)


def eta_text(seconds: float | None) -> str:
    """'ETA 1 min 05 s' from a number of seconds (empty when unknown)."""
    if seconds is None or seconds != seconds:
        return ""
    seconds = max(0, int(round(seconds)))
    minutes, rest = divmod(seconds, 60)
    return f"ETA {minutes} min {rest:02d} s" if minutes else f"ETA {rest} s"


class JobControls(pn.viewable.Viewer):
    """Start / stop buttons and a progress bar over one :class:`BackgroundJob` of a section.

    The section sets :attr:`running` and :attr:`progress`; Stop cancels the job.
    """

    running = param.Boolean(default=False, doc="Whether the job is under way.")
    progress = param.Integer(default=0, bounds=(0, 100), doc="Percent done.")

    def __init__(self, job: BackgroundJob, start: Callable[[], None], *, start_label: str, stop_label: str, **params):
        super().__init__(**params)
        self.job = job
        self.start_button = pn.widgets.Button(label=start_label, color="primary")
        self.stop_button = pn.widgets.Button(label=stop_label, color="warning", disabled=True)
        self.start_button.on_click(lambda _: start())
        self.stop_button.on_click(lambda _: job.cancel())
        self._bar = pn.indicators.Progress(value=0, max=100, visible=False, sizing_mode="stretch_width", bar_color="primary")
        self.param.watch(self._show, ["running", "progress"])

    def _show(self, *_):
        self.start_button.disabled = self.running
        self.stop_button.disabled = not self.running
        self._bar.visible = self.running
        self._bar.value = self.progress

    def __panel__(self):
        return pn.Column(pn.Row(self.start_button, self.stop_button), self._bar, sizing_mode="stretch_width")


class Banner(pn.viewable.Viewer):
    """One line and one button shown on every tab while the session's parts disagree.

    ``check()`` returns ``(text, button label, action)`` when they disagree, else None; the banner
    asks again whenever the session's spec, sidebar spec, task set or model change.
    """

    def __init__(self, session: Session, check: Callable[[], tuple[str, str, Callable[[], None]] | None], **params):
        super().__init__(**params)
        self.session = session
        self._check = check
        self._action: Callable[[], None] | None = None
        self._text = pn.pane.Markdown(sizing_mode="stretch_width", margin=(0, 10))
        self._button = pn.widgets.Button(color="warning", align="center")
        self._button.on_click(lambda _: self._action and self._action())
        self._row = pn.Row(self._text, self._button, visible=False, sizing_mode="stretch_width",
                           styles={"background": "#fff3cd", "border": "1px solid #ffe69c", "border-radius": "4px"})
        session.param.watch(self.refresh, ["spec", "sidebar_spec", "tasks", "model"])
        self.refresh()

    def refresh(self, *_):
        found = self._check()
        self._row.visible = found is not None
        if found is not None:
            self._text.object, self._button.label, self._action = found

    @property
    def text(self) -> str:
        return self._text.object if self._row.visible else ""

    def __panel__(self):
        return self._row


class Confirm(pn.viewable.Viewer):
    """A question shown in place before something loaded is replaced: nothing changes until it is answered.

    :meth:`ask` shows the question with two buttons; the first runs ``on_yes``, the second ``on_no``
    (if given); either hides it.  Asking again replaces an unanswered question.
    """

    def __init__(self, **params):
        super().__init__(**params)
        self._text = pn.pane.Markdown(sizing_mode="stretch_width", margin=(0, 10))
        self.yes_button = pn.widgets.Button(color="warning", align="center")
        self.no_button = pn.widgets.Button(color="light", align="center")
        self.yes_button.on_click(lambda _: self.answer(True))
        self.no_button.on_click(lambda _: self.answer(False))
        self._row = pn.Row(self._text, self.yes_button, self.no_button, visible=False, sizing_mode="stretch_width",
                           styles={"background": "#e7f1ff", "border": "1px solid #9ec5fe", "border-radius": "4px"})
        self._actions: tuple[Callable[[], None], Callable[[], None] | None] | None = None

    def ask(self, text: str, yes: str, on_yes: Callable[[], None], no: str = "Keep it", on_no: Callable[[], None] | None = None) -> None:
        self._text.object, self.yes_button.label, self.no_button.label = text, yes, no
        self._actions = (on_yes, on_no)
        self._row.visible = True

    def answer(self, yes: bool) -> None:
        """Answer the open question (as a click on one of its buttons does)."""
        actions, self._actions = self._actions, None
        self._row.visible = False
        if actions is None:
            return
        action = actions[0] if yes else actions[1]
        if action is not None:
            action()

    @property
    def pending(self) -> bool:
        return self._actions is not None

    @property
    def text(self) -> str:
        return self._text.object if self.pending else ""

    def __panel__(self):
        return self._row
