"""`dklfm` with hostile-but-realistic arguments: it never writes onto an input or an existing file unless told,
bounds what it is asked to compute, matches the names scientists use, and always ends in one sentence."""

import os
import subprocess
import sys

import pytest
import xarray as xr

from dklfm_explore import example_csv
from dklfm_explore.cli import MAX_QUERY_VALUES, main
from dklfm_explore.datasets.registry import DATA_DIR

MODEL = DATA_DIR / "transcription_p53.pt"
P53_CSV = DATA_DIR / "p53_5gy.csv"


def one_sentence(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_infer_never_writes_onto_its_input(tmp_path, capsys):
    measurements = tmp_path / "mydata.csv"
    measurements.write_text(example_csv("transcription"))
    before = measurements.read_bytes()
    for out in (measurements, tmp_path / "." / "mydata.csv"):
        assert main(["infer", str(MODEL), str(measurements), "--out", str(out), "--force"]) == 2
        assert "is an input of this command" in one_sentence(capsys)
    assert measurements.read_bytes() == before


def test_an_existing_output_is_replaced_only_with_force(tmp_path, capsys):
    measurements = tmp_path / "genes.csv"
    measurements.write_text(example_csv("transcription"))
    result, tasks = tmp_path / "result.csv", tmp_path / "tasks.nc"
    for path in (result, tasks, tmp_path / "model.pt"):
        path.write_bytes(b"precious")
    commands = (
        ["infer", str(MODEL), str(measurements), "--out", str(result)],
        ["simulate", "transcription", "--tasks", "2", "--points", "6", "--out", str(tasks)],
        ["train", str(tasks), "--out", str(tmp_path / "model.pt"), "--epochs", "1"],
    )
    for argv in commands:
        assert main(argv) == 2
        assert "exists already; choose another --out or pass --force" in one_sentence(capsys)
    assert all(path.read_bytes() == b"precious" for path in (result, tasks, tmp_path / "model.pt"))
    for argv in commands[:2]:
        assert main(argv + ["--force"]) == 0
    assert "latent_mean" in result.read_text()
    assert xr.open_dataset(tasks, engine="h5netcdf").sizes["task"] == 2


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--t-max", "nan"], "--t-max nan must be a finite time"),
        (["--t-max", "inf"], "--t-max inf must be a finite time"),
        (["--t-max", "-5"], "after the first measured time 0"),
        (["--t-max", "1e6"], f"more than the {MAX_QUERY_VALUES} (task, point) pairs"),
        (["--t-max", "1e18"], f"more than the {MAX_QUERY_VALUES} (task, point) pairs"),
        (["--points", "1000000000000"], f"more than the {MAX_QUERY_VALUES} (task, point) pairs"),
        (["--points", "1"], "--points must be at least 2"),
    ],
)
def test_infer_query_is_validated_and_bounded_up_front(extra, message, tmp_path, capsys):
    assert main(["infer", str(MODEL), str(P53_CSV), "--out", str(tmp_path / "r.nc")] + extra) == 2
    assert message in one_sentence(capsys)
    assert not (tmp_path / "r.nc").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--t-max", "nan"], "--t-max nan must be a finite time after the system's start 0"),
        (["--t-max", "inf"], "--t-max inf must be a finite time"),
        (["--t-max", "1e18"], "at most 12000 (1000 times its default window)"),
        (["--points", "1000000000000"], "more than the 10000 dklfm simulate writes"),
    ],
)
def test_simulate_mesh_is_validated_and_bounded(extra, message, tmp_path, capsys):
    assert main(["simulate", "transcription", "--tasks", "2", "--out", str(tmp_path / "t.nc")] + extra) == 2
    assert message in one_sentence(capsys)
    assert os.listdir(tmp_path) == []


def test_official_gene_symbols_are_taken_and_the_result_keeps_them(tmp_path, capsys):
    symbols = tmp_path / "symbols.csv"
    symbols.write_text(P53_CSV.read_text().replace("DR5", "TNFRSF10B").replace("p21", "CDKN1A"))
    out = tmp_path / "r.nc"
    assert main(["infer", str(MODEL), str(symbols), "--out", str(out)]) == 0
    assert "TNFRSF10B -> DR5; CDKN1A -> p21" in capsys.readouterr().err
    result = xr.open_dataset(out, engine="h5netcdf")
    assert result["output"].values.tolist() == ["DDB2", "BIK", "TNFRSF10B", "CDKN1A", "SESN1"]
    assert result["task"].values.tolist() == ["1", "2", "3"]


def test_outputs_in_order_maps_columns_by_position(tmp_path, capsys):
    renamed = tmp_path / "renamed.csv"
    text = P53_CSV.read_text()
    for k, gene in enumerate(["DDB2", "BIK", "DR5", "p21", "SESN1"]):
        text = text.replace(gene, f"gene{k}")
    renamed.write_text(text)
    out = tmp_path / "r.csv"
    assert main(["infer", str(MODEL), str(renamed), "--out", str(out)]) == 2
    assert "ask for outputs in order (--outputs-in-order)" in one_sentence(capsys)
    assert main(["infer", str(MODEL), str(renamed), "--out", str(out), "--outputs-in-order"]) == 0
    assert "gene0 -> DDB2; gene1 -> BIK; gene2 -> DR5; gene3 -> p21; gene4 -> SESN1" in capsys.readouterr().err
    assert "gene2_mean" in out.read_text().splitlines()[0]


def test_data_of_another_system_is_warned_about(tmp_path, capsys):
    other = tmp_path / "other.csv"
    other.write_text(P53_CSV.read_text().replace("# system: transcription\n", "# system: transcription-linear\n"))
    assert main(["infer", str(MODEL), str(other), "--out", str(tmp_path / "r.nc")]) == 0
    assert "names the system 'transcription-linear' but the model was trained on 'transcription'" in capsys.readouterr().err


def test_a_closed_pipe_ends_quietly():
    command = f"{sys.executable} -m dklfm_explore.cli info {MODEL} | head -c 10"
    run = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert run.stdout == "DKLFM for "
    assert run.stderr == ""


GENES = ("DDB2", "BIK", "DR5", "p21", "SESN1")


def _genes_csv(path, values, times=None, replicates=None):
    """A CSV of the p53 model's five genes: ``values (row, gene)``; one replicate unless ``replicates`` labels the rows."""
    times = list(range(len(values))) if times is None else times
    header = "time," + ("replicate," if replicates else "") + ",".join(GENES)
    rows = [f"{t}," + (f"{replicates[i]}," if replicates else "") + ",".join("" if v is None else repr(float(v)) for v in row)
            for i, (t, row) in enumerate(zip(times, values))]
    path.write_text("\n".join([header] + rows) + "\n")
    return path


def _varying(n=8, scale=1.0):
    return [[scale * (100 + 10 * k + 7 * t + (t * t) % 5) for k in range(5)] for t in range(n)]


@pytest.mark.parametrize(
    "values, message",
    [
        ([row[:0] + [1e200] + row[1:] if t == 3 else row for t, row in enumerate(_varying())], "Output 'DDB2' of data.csv reaches 1e+200"),
        (_varying(scale=1e295), "Output 'DDB2' of data.csv reaches 1.53e+297, beyond the 1e+150"),
    ],
)
def test_infer_refuses_outputs_it_cannot_scale_instead_of_writing_nan(values, message, tmp_path, capsys):
    out = tmp_path / "r.csv"
    assert main(["infer", str(MODEL), str(_genes_csv(tmp_path / "data.csv", values)), "--out", str(out)]) == 2
    assert message in one_sentence(capsys)
    assert not out.exists()


@pytest.mark.parametrize(
    "values, named",
    [
        ([row[:2] + [7.0] + row[3:] for row in _varying()], "Output(s) 'DR5' of data.csv do not vary"),
        ([[5.0] * 5] * 8, "Output(s) 'DDB2', 'BIK', 'DR5', 'p21', 'SESN1' of data.csv do not vary"),
        ([[1 + 1e-15 * t] * 5 for t in range(8)], "Output(s) 'DDB2', 'BIK', 'DR5', 'p21', 'SESN1' of data.csv do not vary"),
    ],
)
def test_constant_outputs_are_named_and_tiny_units_are_not_constant(values, named, tmp_path, capsys):
    out = tmp_path / "r.csv"
    assert main(["infer", str(MODEL), str(_genes_csv(tmp_path / "data.csv", values)), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert named in err and err.count("do not vary") == 1
    table = [line.split(",") for line in out.read_text().splitlines() if not line.startswith("#")]
    column = table[0].index("DR5_std")
    # scaled by its own size (about 1 to 7), not by the 1e-12 floor: a predictive std above 0.01, never 1e-13
    assert all(float(row[column]) > 0.01 for row in table[1:])
    tiny = _genes_csv(tmp_path / "tiny.csv", _varying(scale=1e-14))
    assert main(["infer", str(MODEL), str(tiny), "--out", str(tmp_path / "tiny_r.csv")]) == 0
    assert "do not vary" not in capsys.readouterr().err


def test_an_output_missing_from_one_replicate_is_named(tmp_path, capsys):
    values = _varying(4) + [row[:3] + [None] + row[4:] for row in _varying(4)]
    data = _genes_csv(tmp_path / "data.csv", values, times=[0, 1, 2, 3] * 2, replicates=["r1"] * 4 + ["r2"] * 4)
    assert main(["infer", str(MODEL), str(data), "--out", str(tmp_path / "r.csv")]) == 2
    assert "Output 'p21' of task 'r2' of data.csv has no observed value" in one_sentence(capsys)


def test_times_too_far_from_the_training_window_are_one_sentence(tmp_path, capsys):
    data = _genes_csv(tmp_path / "ns.csv", _varying(), times=[int(1.7e18) + k * 3_600_000_000_000 for k in range(8)])
    assert main(["infer", str(MODEL), str(data), "--out", str(tmp_path / "r.csv")]) == 2
    assert "lie more than 1e+06 window lengths from its training window 0 to 12" in one_sentence(capsys)
    assert main(["infer", str(MODEL), str(data), "--out", str(tmp_path / "r.csv"), "--time-mapping", "scale"]) == 0


def test_nanosecond_times_equal_in_double_precision_are_explained(tmp_path, capsys):
    data = _genes_csv(tmp_path / "ns.csv", _varying(3), times=["10000000000000001", "10000000000000000", "10000000000000004"])
    assert main(["infer", str(MODEL), str(data), "--out", str(tmp_path / "r.csv")]) == 2
    assert "Times '10000000000000001' and '10000000000000000' on lines 2 and 3 of ns.csv are the same number in double precision" in one_sentence(capsys)


def test_a_long_system_name_is_cut_in_the_warning(tmp_path, capsys):
    other = tmp_path / "other.csv"
    other.write_text(P53_CSV.read_text().replace("# system: transcription\n", f"# system: {'x' * 100_000}\n"))
    assert main(["infer", str(MODEL), str(other), "--out", str(tmp_path / "r.nc")]) == 0
    warning = [line for line in capsys.readouterr().err.splitlines() if "names the system" in line]
    assert len(warning) == 1 and len(warning[0]) < 300 and "(100000 characters)" in warning[0]
