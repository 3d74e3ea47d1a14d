"""The served dashboard driven in headless Chromium (Playwright), fully offline."""

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from dklfm_explore.io import example_csv

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parents[1] / "test-results"
LOCAL = ("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")
LOAD_TIMEOUT_MS = 60_000
"""First page load: imports before the page answers, then the preview, default task set and model once connected."""
TRAIN_TIMEOUT_MS = 90_000
"""Two epochs on 27 tiny tasks; the limit only stops a hung test."""
STEP_TIMEOUT_MS = 60_000
"""One step of a user path (a plot, a message): on 2 CI cores loaded by the server's own training, 20-30 s was seen to run out."""
VIEWPORT = {"width": 1400, "height": 1000}


@pytest.fixture(scope="session")
def device(pytestconfig):
    """pytest-playwright's emulated device (``--device``), shadowing the torch ``device`` fixture of conftest.py."""
    return pytestconfig.getoption("--device")


@pytest.fixture
def app(page, app_url):
    external = []
    page.on("request", lambda request: request.url.startswith(LOCAL) or external.append(request.url))
    page.set_viewport_size(VIEWPORT)
    page.goto(app_url)
    page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0", timeout=LOAD_TIMEOUT_MS)
    expect(page.locator(".bk-Canvas canvas").first).to_be_visible(timeout=LOAD_TIMEOUT_MS)
    yield page
    assert external == []


def tab(page, name):
    page.locator(".bk-tab", has_text=name).click()


TITLES = {"transcription": "Transcriptional regulation.", "transcription-linear": "Transcriptional regulation (linear)."}


def generate(page, system, n_tasks):
    page.locator("select").first.select_option(system)
    expect(page.get_by_text(TITLES[system])).to_be_visible(timeout=STEP_TIMEOUT_MS)
    set_number(page, "number of tasks", n_tasks)
    tab(page, "Task set")
    page.get_by_role("button", name="Generate task set").click()
    expect(page.get_by_text(f"Generated {n_tasks} tasks of {system}")).to_be_visible(timeout=STEP_TIMEOUT_MS)


def set_number(page, label, value, attempts=20):
    """Type into a numeric input until it keeps the value (a re-rendered sidebar may replace it meanwhile)."""
    for _ in range(attempts):
        box = page.get_by_label(label)
        box.fill(str(value))
        box.press("Enter")
        box.press("Tab")
        page.wait_for_timeout(500)
        if page.get_by_label(label).input_value() == str(value):
            return
    raise AssertionError(f"the input {label!r} did not keep {value}")


def train(page, epochs):
    tab(page, "Training")
    set_number(page, "epochs", epochs)
    page.get_by_role("button", name="Train", exact=True).click()
    expect(page.get_by_text("Training finished")).to_be_visible(timeout=TRAIN_TIMEOUT_MS)


def test_first_screen_shows_equation_and_samples(app):
    expect(app.get_by_text("Transcriptional regulation.")).to_be_visible()
    expect(app.get_by_text("task 0: outputs")).to_have_count(0)
    assert app.locator(".bk-Canvas").count() >= 1
    SHOTS.mkdir(exist_ok=True)
    app.screenshot(path=str(SHOTS / "first_screen.png"), full_page=True)


def test_generate_train_and_infer(app):
    generate(app, "transcription-linear", 30)
    app.wait_for_timeout(500)
    app.screenshot(path=str(SHOTS / "task_set.png"), full_page=True)
    train(app, 2)
    expect(app.get_by_text("The new model is in use: the previous one is for transcription.")).to_be_visible()
    app.screenshot(path=str(SHOTS / "training.png"), full_page=True)
    tab(app, "Inference")
    expect(app.get_by_text("on test task 0: standardised latent MSE")).to_be_visible(timeout=STEP_TIMEOUT_MS)
    expect(app.locator(".bk-Canvas canvas").last).to_be_visible()
    app.wait_for_timeout(1000)
    app.screenshot(path=str(SHOTS / "inference.png"), full_page=True)


def test_upload_good_then_bad_csv(app, tmp_path):
    good = tmp_path / "example.csv"
    good.write_text(example_csv("transcription"))
    bad = tmp_path / "bad.csv"
    bad.write_text("when,what\n1,2\n")
    tab(app, "Your data")
    upload = app.locator('input[type="file"][accept=".csv,.nc"]')
    upload.set_input_files(good)
    expect(app.get_by_text("Read example.csv: 2 series")).to_be_visible(timeout=STEP_TIMEOUT_MS)
    expect(app.get_by_text("ms per series")).to_be_visible(timeout=STEP_TIMEOUT_MS)
    app.wait_for_timeout(1000)
    app.screenshot(path=str(SHOTS / "your_data.png"), full_page=True)
    upload.set_input_files(bad)
    expect(app.get_by_text("Replace example.csv and its results with bad.csv?")).to_be_visible(timeout=STEP_TIMEOUT_MS)
    app.get_by_role("button", name="Replace", exact=True).click()
    expect(app.get_by_text("bad.csv has no 'time' column")).to_be_visible(timeout=STEP_TIMEOUT_MS)
    app.screenshot(path=str(SHOTS / "bad_upload.png"), full_page=True)
    upload.set_input_files(good)
    expect(app.get_by_text("Read example.csv: 2 series")).to_be_visible(timeout=STEP_TIMEOUT_MS)
    expect(app.get_by_text("ms per series")).to_be_visible(timeout=STEP_TIMEOUT_MS)
    tab(app, "System")
    app.locator("select").first.select_option("reaction-diffusion")
    expect(app.get_by_text("Reaction–diffusion (gap genes).")).to_be_visible(timeout=STEP_TIMEOUT_MS)


def test_bundled_p53_data_with_the_bundled_model(app):
    from dklfm_explore.datasets import PRETRAINED_MODELS

    if not PRETRAINED_MODELS["transcription"].path.is_file():
        pytest.skip("no bundled transcription model in this checkout")
    tab(app, "Your data")
    expect(app.get_by_role("button", name="Try the bundled p53 data")).to_be_visible(timeout=STEP_TIMEOUT_MS)
    expect(app.locator(".bk-Canvas")).to_have_count(0)
    app.get_by_role("button", name="Try the bundled p53 data").click()
    expect(app.get_by_text("Read the bundled p53 data (5 Gy): 3 series")).to_be_visible(timeout=STEP_TIMEOUT_MS)
    expect(app.get_by_text("Inferred the p53 activity of 3 series")).to_be_visible(timeout=STEP_TIMEOUT_MS)
    expect(app.locator(".bk-Canvas")).to_have_count(7, timeout=STEP_TIMEOUT_MS)  # all series, one series, five outputs
    expect(app.get_by_text("An internal error occurred")).to_have_count(0)
    app.screenshot(path=str(SHOTS / "p53.png"), full_page=True)


def test_switch_system_then_every_tab_says_so_and_one_click_aligns(app):
    app.locator("select").first.select_option("transcription-linear")
    expect(app.get_by_text("Transcriptional regulation (linear).")).to_be_visible(timeout=STEP_TIMEOUT_MS)
    for name in ("Task set", "Training", "Inference", "Extrapolation", "Super-resolution", "Your data", "System"):
        tab(app, name)
        expect(app.get_by_text("but the task set and the tabs are of")).to_be_visible(timeout=STEP_TIMEOUT_MS)
    app.screenshot(path=str(SHOTS / "system_mismatch.png"), full_page=True)
    app.get_by_role("button", name="Generate transcription-linear tasks").click()
    expect(app.get_by_text("but the task set and the tabs are of").locator("visible=true")).to_have_count(0, timeout=STEP_TIMEOUT_MS)
    tab(app, "Task set")
    expect(app.get_by_text("Generated 200 tasks of transcription-linear")).to_be_visible(timeout=STEP_TIMEOUT_MS)
    tab(app, "Inference")
    expect(app.get_by_text("The model in use is for")).to_be_visible(timeout=STEP_TIMEOUT_MS)
    expect(app.get_by_role("button", name="Train a model for transcription-linear")).to_be_visible()


def test_train_then_revert_to_the_bundled_model(app):
    tab(app, "Training")
    expect(app.get_by_text("#1 (in use)")).to_be_visible(timeout=STEP_TIMEOUT_MS)
    set_number(app, "time limit (s)", 3)
    train(app, 2)
    expect(app.get_by_text("The new model is kept in the list but not used")).to_be_visible()
    expect(app.get_by_text("#1 (in use)")).to_be_visible()
    app.get_by_role("button", name="Use #2").click()
    expect(app.get_by_text("#2 (in use)")).to_be_visible(timeout=STEP_TIMEOUT_MS)
    app.screenshot(path=str(SHOTS / "model_list.png"), full_page=True)
    app.get_by_role("button", name="Use #1").click()
    expect(app.get_by_text("#1 (in use)")).to_be_visible(timeout=STEP_TIMEOUT_MS)


def test_upload_good_then_empty_asks_then_clears(app, tmp_path):
    good = tmp_path / "example.csv"
    good.write_text(example_csv("transcription"))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    tab(app, "Your data")
    upload = app.locator('input[type="file"][accept=".csv,.nc"]')
    upload.set_input_files(good)
    expect(app.get_by_text("ms per series")).to_be_visible(timeout=STEP_TIMEOUT_MS)
    upload.set_input_files(empty)
    expect(app.get_by_text("Replace example.csv and its results with empty.csv?")).to_be_visible(timeout=STEP_TIMEOUT_MS)
    app.get_by_role("button", name="Keep example.csv").click()
    expect(app.get_by_text("ms per series")).to_be_visible()  # kept: nothing lost
    again = tmp_path / "again"
    again.mkdir()
    (again / "empty.csv").write_text("")
    upload.set_input_files(again / "empty.csv")
    expect(app.get_by_text("Replace example.csv and its results with empty.csv?")).to_be_visible(timeout=STEP_TIMEOUT_MS)
    app.get_by_role("button", name="Replace", exact=True).click()
    expect(app.get_by_text("empty.csv is empty")).to_be_visible(timeout=STEP_TIMEOUT_MS)
    expect(app.get_by_text("ms per series")).to_have_count(0)
    SHOTS.mkdir(exist_ok=True)
    app.screenshot(path=str(SHOTS / "empty_upload.png"), full_page=True)


def test_a_whole_training_run_from_the_simulator_fetches_nothing_external(app):
    """The ``app`` fixture asserts that no request left the machine, here over a whole training run."""
    tab(app, "Training")
    expect(app.get_by_text("#1 (in use)")).to_be_visible(timeout=60_000)
    expect(app.get_by_role("button", name="fresh simulations (the task set's settings)")).to_have_class(re.compile("active"))
    set_number(app, "tasks per epoch", 32)
    set_number(app, "time limit (s)", 5)
    train(app, 2)
    expect(app.get_by_text("trained here from the simulator")).to_be_visible()
    app.wait_for_timeout(1000)
    SHOTS.mkdir(exist_ok=True)
    app.screenshot(path=str(SHOTS / "trained_from_simulator.png"), full_page=True)


FIGURE_RANGE = """title => { for (const doc of Bokeh.documents) for (const m of doc._all_models.values())
    if (m.title && m.title.text === title && m.x_range) return [m.x_range.start, m.x_range.end]; return null; }"""
ZOOM = """([title, start, end]) => { for (const doc of Bokeh.documents) for (const m of doc._all_models.values())
    if (m.title && m.title.text === title && m.x_range) { m.x_range.setv({start, end}); return true; } return false; }"""

SLIDE = """([title, value]) => { for (const doc of Bokeh.documents) for (const m of doc._all_models.values())
    if (m.title === title && "value_throttled" in m) { m.setv({value, value_throttled: value}); return true; } return false; }"""
"""Move a slider as the end of a drag does (its value, then its throttled value, which the views follow)."""


def test_a_change_of_task_resets_a_zoomed_plot(app):
    tab(app, "Inference")
    expect(app.get_by_text("on test task 0: standardised latent MSE")).to_be_visible(timeout=STEP_TIMEOUT_MS)
    first, second = "DKLFM: transcription factor activity (test task 0)", "DKLFM: transcription factor activity (test task 1)"
    app.wait_for_function(f"() => ({FIGURE_RANGE})({first!r}) !== null", timeout=STEP_TIMEOUT_MS)
    full = app.evaluate(FIGURE_RANGE, first)
    assert app.evaluate(ZOOM, [first, 2.0, 4.0])  # as a box or wheel zoom leaves it
    assert app.evaluate(FIGURE_RANGE, first) == [2.0, 4.0]
    assert app.evaluate(SLIDE, ["test task", 1])
    expect(app.get_by_text("on test task 1: standardised latent MSE")).to_be_visible(timeout=STEP_TIMEOUT_MS)
    app.wait_for_function(f"() => ({FIGURE_RANGE})({second!r}) !== null", timeout=STEP_TIMEOUT_MS)
    assert app.evaluate(FIGURE_RANGE, second) == full


RIGHT_EDGES = "elements => elements.map(e => e.getBoundingClientRect()).filter(r => r.width > 0 && r.height > 0).map(r => r.right)"
"""The right edges of the elements shown (a hidden tab's are empty rectangles)."""


def right_edges(page, selector):
    return page.locator(selector).evaluate_all(RIGHT_EDGES)


@pytest.mark.parametrize("width, height", [(1024, 768), (1440, 900)])
def test_nothing_is_cut_at_the_right_of_the_sidebar_or_the_page(app, width, height):
    app.set_viewport_size({"width": width, "height": height})
    expect(app.get_by_text("A few tasks drawn with the settings on the left")).to_be_visible(timeout=STEP_TIMEOUT_MS)
    app.wait_for_timeout(1000)
    sidebar, main = app.locator("#sidebar").bounding_box(), app.locator("#main").bounding_box()
    edge = min(main["x"] + main["width"], width) + 1
    inputs = right_edges(app, "#sidebar input")
    assert len(inputs) > 8 and max(inputs) <= sidebar["x"] + sidebar["width"] + 1, (inputs, sidebar)
    assert max(right_edges(app, ".bk-tab")) <= edge
    expect(app.locator("#main .bk-Canvas").locator("visible=true")).to_have_count(6, timeout=STEP_TIMEOUT_MS)  # 3 tasks' outputs and latents
    assert max(right_edges(app, "#main .bk-Canvas")) <= edge
    tab(app, "Inference")
    expect(app.get_by_text("on test task 0: standardised latent MSE")).to_be_visible(timeout=STEP_TIMEOUT_MS)
    expect(app.locator("#main .bk-Canvas").locator("visible=true")).to_have_count(1 + 5, timeout=STEP_TIMEOUT_MS)  # the latent, five outputs
    assert max(right_edges(app, "#main .bk-Canvas")) <= edge
    app.screenshot(path=str(SHOTS / f"inference_{width}.png"))


def _save_first_plot(page):
    with page.expect_download(timeout=STEP_TIMEOUT_MS) as download:
        page.locator(".bk-ClickButton").filter(has=page.locator(".bk-tool-icon-save")).first.click()
    return download.value


def test_a_plots_save_tool_writes_a_named_png_then_svg_once_chosen(app, tmp_path):
    first = _save_first_plot(app)
    assert first.suggested_filename == "task_0_outputs.png"  # named after the plot's title, without a prompt
    assert Path(first.path()).read_bytes().startswith(b"\x89PNG")
    app.get_by_role("button", name="SVG").click()
    expect(app.locator(".bk-Canvas svg").first).to_be_attached(timeout=STEP_TIMEOUT_MS)
    second = _save_first_plot(app)
    assert second.suggested_filename == "task_0_outputs.svg"
    assert Path(second.path()).read_text().startswith("<svg")
    SHOTS.mkdir(exist_ok=True)
    app.screenshot(path=str(SHOTS / "svg-chosen.png"))
