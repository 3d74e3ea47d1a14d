"""The measurement loader: the CSV/netCDF upload format, its round trips and its errors."""

import codecs
import csv
import io
import time

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dklfm_explore.data import TaskSet
from dklfm_explore.errors import InvalidInputError, UnknownNameError
from dklfm_explore.io import MIN_POINTS, example_csv, load_measurements, measurements_to_csv
from dklfm_explore.simulate import simulate
from dklfm_explore.systems import SYSTEMS


def load(text: str, **kwargs) -> TaskSet:
    return load_measurements(text.encode(), name="m.csv", **kwargs)


def mesh_values(tasks: TaskSet, name: str = "y") -> np.ndarray:
    return tasks.dataset[name].values


# ---------------------------------------------------------------- structure


def test_columns_become_outputs_with_units_from_the_header():
    tasks = load("time [h],DDB2 [MAS5 signal],p21 [MAS5 signal]\n0,1.5,2\n2,3.25,4\n4,5,6e2\n")
    assert tasks.dataset["y"].dims == ("task", "output", "time")
    assert tasks.output_names == ["DDB2", "p21"]
    assert tasks.time.tolist() == [0.0, 2.0, 4.0]
    assert mesh_values(tasks)[0].tolist() == [[1.5, 3.25, 5.0], [2.0, 4.0, 600.0]]
    assert tasks.dataset.attrs["time_unit"] == "h"
    assert tasks.dataset.attrs["output_unit"] == "MAS5 signal"
    assert tasks.dataset.attrs["source"] == "m.csv"
    assert "f" not in tasks.dataset and "y_se" not in tasks.dataset


def test_unsorted_irregular_times_are_sorted_with_their_values():
    tasks = load("time,a,b\n5,50,-5\n0.5,5,-0.5\n2,20,-2\n0.25,2.5,-0.25\n")
    assert tasks.time.tolist() == [0.25, 0.5, 2.0, 5.0]
    assert mesh_values(tasks)[0, 0].tolist() == [2.5, 5.0, 20.0, 50.0]
    assert mesh_values(tasks)[0, 1].tolist() == [-0.25, -0.5, -2.0, -5.0]


def test_missing_cells_are_masked_never_filled():
    tasks = load("time,a,b\n0,1,\n1,NA,2\n2,3,nan\n3,N/A,4\n4,5,null\n")
    y = mesh_values(tasks)[0]
    assert np.isnan(y).sum() == 5
    assert y[0, [0, 2, 4]].tolist() == [1.0, 3.0, 5.0]
    assert y[1, [1, 3]].tolist() == [2.0, 4.0]


def test_replicates_become_tasks_on_the_union_of_their_times():
    text = "time,replicate,a\n0,ctrl,1\n1,ctrl,2\n2,ctrl,3\n0,dose,10\n1.5,dose,11\n3,dose,12\n4,dose,13\n"
    tasks = load(text)
    assert tasks.dataset["task"].values.tolist() == ["ctrl", "dose"]
    assert tasks.time.tolist() == [0.0, 1.0, 1.5, 2.0, 3.0, 4.0]
    y = mesh_values(tasks)[:, 0]
    np.testing.assert_array_equal(y[0], [1, 2, np.nan, 3, np.nan, np.nan])
    np.testing.assert_array_equal(y[1], [10, np.nan, 11, np.nan, 12, 13])


def test_replicate_labels_keep_their_order_of_appearance_as_written():
    tasks = load("time,replicate,a\n" + "".join(f"{t},{r},{t}\n" for r in (3, 1) for t in range(3)))
    assert tasks.dataset["task"].values.tolist() == ["3", "1"]


def test_force_and_measurement_error_columns():
    text = "time,a [nM],b [nM],force [a.u.],a_se\n0,1,2,0.5,0.1\n1,2,3,,0.2\n2,3,4,0.7,\n"
    tasks = load(text)
    assert tasks.has_latent
    np.testing.assert_array_equal(tasks.f()[0].numpy(), [0.5, np.nan, 0.7])
    se = mesh_values(tasks, "y_se")[0]
    np.testing.assert_array_equal(se[0], [0.1, 0.2, np.nan])
    assert np.isnan(se[1]).all()
    assert tasks.dataset.attrs["latent_unit"] == "a.u."


def test_space_column_gives_a_space_by_time_mesh():
    rows = [f"{t},{x},{10 * t + x}" for t in (1, 0, 2) for x in (0.5, 0.0, 1.0)]
    tasks = load("time [min],space [mm],y\n" + "\n".join(rows[:-1]) + "\n")
    assert tasks.dataset["y"].dims == ("task", "output", "space", "time")
    assert tasks.space.tolist() == [0.0, 0.5, 1.0]
    y = mesh_values(tasks)[0, 0]
    assert y[1, 2] == 20.5 and y[0, 0] == 0.0
    assert np.isnan(y[2, 2])
    assert tasks.dataset.attrs["space_unit"] == "mm"


def test_outputs_with_different_units_keep_one_unit_each():
    tasks = load("time,a [nM],b [uM]\n0,1,2\n1,2,3\n2,3,4\n")
    assert tasks.dataset.attrs["output_unit"] == ""
    assert tasks.dataset.attrs["output_units"] == '["nM", "uM"]'
    assert "a [nM],b [uM]" in measurements_to_csv(tasks)


def test_comments_become_attrs_and_delimiters_encodings_are_detected():
    text = "# title: my run\n# a free comment\n\ntime;Gene A;replicate\n0;1,5;x\n1;2;x\n2;3;x\n"
    with pytest.raises(InvalidInputError, match="'Gene A'.*line 5"):
        load(text)
    tasks = load(text.replace("1,5", "1.5"))
    assert tasks.dataset.attrs["title"] == "my run"
    assert mesh_values(tasks)[0, 0].tolist() == [1.5, 2.0, 3.0]
    tab = "time\ta\r\n0\t1\r\n1\t2\r\n2\t3\r\n"
    for data in (tab.encode(), codecs.BOM_UTF8 + tab.encode(), tab.encode("utf-16")):
        assert mesh_values(load_measurements(data, name="t.csv"))[0, 0].tolist() == [1.0, 2.0, 3.0]
    quoted = load('"time","a, b"\n0,"1"\n1,2\n2,3\n')
    assert quoted.output_names == ["a, b"]


def test_expected_outputs_by_count_and_by_name_reorders():
    text = "time,b,a\n0,1,10\n1,2,20\n2,3,30\n"
    assert load(text, expected_outputs=2).n_outputs == 2
    tasks = load(text, expected_outputs=["a", "b"])
    assert tasks.output_names == ["a", "b"]
    assert mesh_values(tasks)[0, 0].tolist() == [10.0, 20.0, 30.0]


def test_system_sets_name_default_units_and_checks_the_mesh():
    tasks = load("time,a\n0,1\n1,2\n2,3\n", system="transcription")
    assert tasks.system_name == "transcription"
    assert tasks.dataset.attrs["time_unit"] == "h"
    assert load("time [min],a\n0,1\n1,2\n2,3\n", system="transcription").dataset.attrs["time_unit"] == "min"
    with pytest.raises(InvalidInputError, match="needs a 'space' column"):
        load("time,a\n0,1\n1,2\n2,3\n", system="reaction-diffusion")
    with pytest.raises(UnknownNameError, match="transcription"):
        load("time,a\n0,1\n1,2\n2,3\n", system="no-such-system")


def test_file_paths_and_file_objects(tmp_path):
    path = tmp_path / "upload.csv"
    path.write_text("time,a\n0,1\n1,2\n2,3\n")
    assert load_measurements(path).dataset.attrs["source"] == "upload.csv"
    with path.open("rb") as handle:
        assert mesh_values(load_measurements(handle))[0, 0].tolist() == [1.0, 2.0, 3.0]


# ---------------------------------------------------------------- round trips


def assert_same_measurements(a: TaskSet, b: TaskSet):
    for name in ("y", "f", "y_se"):
        assert (name in a.dataset) == (name in b.dataset), name
        if name in a.dataset:
            xr.testing.assert_identical(a.dataset[name].reset_coords(drop=True).drop_attrs(), b.dataset[name].reset_coords(drop=True).drop_attrs())
    for key in ("time_unit", "space_unit", "output_unit", "latent_unit"):
        assert a.dataset.attrs.get(key, "") == b.dataset.attrs.get(key, "")


@pytest.mark.parametrize("system", ["transcription", "reaction-diffusion"])
def test_simulated_task_set_round_trips_through_csv_bit_for_bit(system, tmp_path):
    shape = dict(grid=(4, 6)) if SYSTEMS[system].is_spatial else dict(n_points=7)
    tasks = simulate(system, 3, seed=5, **shape)
    path = measurements_to_csv(tasks, tmp_path / "tasks.csv")
    back = load_measurements(path)
    assert back.dataset["task"].values.tolist() == ["0", "1", "2"]
    assert_same_measurements(TaskSet(tasks.dataset[["y", "f"]].assign_coords(task=["0", "1", "2"])), back)
    assert back.system_name == system


def test_csv_text_round_trips_with_labels_gaps_and_errors():
    text = (
        "# title: t\n"
        "time [s],replicate,a [nM],force [a.u.],a_se\n"
        "0.1,r 1,0.30000000000000004,1,0.5\n"
        "0.7,r 1,,2,\n"
        "1.3,r 1,1e-300,,0.25\n"
        "2,r 1,5,3,1\n"
        "0.1,r2,7,8,\n"
        "1,r2,-1.5,9,2\n"
        "2,r2,4,10,3\n"
    )
    tasks = load(text)
    again = load(measurements_to_csv(tasks))
    assert_same_measurements(tasks, again)
    assert again.dataset["task"].values.tolist() == ["r 1", "r2"]
    assert measurements_to_csv(again) == measurements_to_csv(tasks)
    assert mesh_values(tasks)[0, 0, 0] == 0.30000000000000004


def test_netcdf_task_set_loads_like_the_original(tmp_path):
    tasks = simulate("transcription", 2, n_points=6, seed=1)
    path = tasks.save(tmp_path / "tasks.nc")
    back = load_measurements(path, expected_outputs=list(tasks.output_names))
    assert_same_measurements(tasks, back)
    assert back.dataset.attrs["source"] == "tasks.nc"


def test_netcdf_without_task_dim_unsorted_is_canonicalised(tmp_path):
    dataset = xr.Dataset(
        {"y": (("time", "output"), [[3.0, 30.0], [1.0, 10.0], [2.0, 20.0]])},
        coords={"time": [3.0, 1.0, 2.0], "output": ["a", "b"]},
    )
    path = tmp_path / "raw.nc"
    dataset.to_netcdf(path, engine="h5netcdf")
    tasks = load_measurements(path)
    assert tasks.dataset["y"].dims == ("task", "output", "time")
    assert tasks.time.tolist() == [1.0, 2.0, 3.0]
    assert mesh_values(tasks)[0].tolist() == [[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]]


@pytest.mark.parametrize("system", sorted(SYSTEMS))
def test_example_csv_shows_every_feature_and_loads(system):
    text = example_csv(system)
    tasks = load(text, system=system, expected_outputs=list(SYSTEMS[system].output_names))
    assert tasks.n_tasks == 2 and tasks.has_latent
    y = mesh_values(tasks)
    assert np.isnan(y[1, ..., 1::2]).all() and np.isfinite(y[1, ..., ::2]).all()
    assert np.isnan(y[0]).sum() == 1
    assert text.startswith("# note: simulated example")


# ---------------------------------------------------------------- bad files

BAD_FILES = [
    ("empty", b"", ["m.csv is empty"]),
    ("blank", b"\n \n\t\n", ["m.csv is empty"]),
    ("comments only", b"# title: x\n", ["no header row"]),
    ("header only", b"time,a\n", ["no data rows"]),
    ("no time column", b"t,a\n0,1\n1,2\n2,3\n", ["no 'time' column", "columns: t, a"]),
    ("no outputs", b"time,replicate\n0,a\n1,a\n2,a\n", ["no output columns"]),
    ("non-numeric cell", b"time,a,b\n0,1,2\n1,abc,3\n2,3,4\n", ["'a'", "line 3", "'abc'"]),
    ("decimal comma", b"time,a\n0,1\n1,\"2,5\"\n2,3\n", ["'a'", "line 3", "'2,5'"]),
    ("non-numeric time", b"time,a\n0,1\n1h,2\n2,3\n", ["'time'", "line 3", "'1h'"]),
    ("missing time", b"time,a\n0,1\n,2\n2,3\n", ["'time'", "empty on line 3"]),
    ("all-NaN output", b"time,a,b\n0,1,\n1,2,NA\n2,3,\n", ["Column 'b'", "no values"]),
    ("all-NaN force", b"time,a,force\n0,1,\n1,2,\n2,3,\n", ["force", "no values"]),
    ("duplicate time", b"time,replicate,a\n0,r1,1\n1,r1,2\n0,r1,3\n2,r1,4\n", ["Time 0", "'r1'", "lines 2 and 4"]),
    ("duplicate time, no replicates", b"time,a\n0,1\n1,2\n1.0,3\n2,4\n", ["Time 1 appears twice", "lines 3 and 4"]),
    ("too few points", b"time,a\n0,1\n1,2\n", ["2 measured point", f"at least {MIN_POINTS}"]),
    ("too few in one replicate", b"time,replicate,a\n0,x,1\n1,x,2\n2,x,3\n0,y,1\n1,y,NA\n", ["Replicate 'y'", "1 measured point"]),
    ("infinite", b"time,a\n0,1\n1,-inf\n2,3\n", ["'a'", "line 3", "infinite"]),
    ("overflow", b"time,a\n0,1\n1,1e999\n2,3\n", ["'a'", "line 3", "infinity"]),
    ("infinite time", b"time,a\n0,1\nInfinity,2\n2,3\n", ["'time'", "line 3", "infinite"]),
    ("short row", b"time,a,b\n0,1,2\n1,2\n2,3,4\n", ["Line 3", "2 cells", "3 columns"]),
    ("long row", b"time,a\n0,1\n1,2,3\n2,3\n", ["Line 3", "3 cells"]),
    ("duplicate column", b"time,a,a\n0,1,2\n1,2,3\n2,3,4\n", ["'a' appears twice", "columns 2 and 3"]),
    ("two time columns", b"time,Time,a\n0,1,2\n1,2,3\n2,3,4\n", ["appears twice", "columns 1 and 2"]),
    ("index column", b",time,a\n0,0,1\n1,1,2\n2,2,3\n", ["Column 1", "no name"]),
    ("negative error", b"time,a,a_se\n0,1,0.1\n1,2,-0.1\n2,3,0.1\n", ["'a_se'", "line 3", "negative"]),
    ("orphan error column", b"time,a,b_se\n0,1,0.1\n1,2,0.1\n2,3,0.1\n", ["'b_se'", "'b'", "not an output"]),
    ("empty replicate", b"time,replicate,a\n0,x,1\n1,,2\n2,x,3\n", ["'replicate'", "line 3"]),
    ("binary", bytes(range(256)) * 4, ["binary"]),
    ("png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", ["binary"]),
    ("xlsx", b"PK\x03\x04\x14\x00\x06\x00" + b"x" * 40, ["zip archive", "export it as CSV"]),
    ("latin-1", "time,a\n0,1\n1,2 µg\n2,3\n".encode("latin-1"), ["not UTF-8", "0xb5", "line 3"]),
    ("broken netCDF", b"\x89HDF\r\n\x1a\n" + b"\x01" * 64, ["not a readable netCDF"]),
]


@pytest.mark.parametrize("data, fragments", [case[1:] for case in BAD_FILES], ids=[case[0] for case in BAD_FILES])
def test_bad_file_raises_one_clear_sentence(data, fragments):
    with pytest.raises(InvalidInputError) as caught:
        load_measurements(data, name="m.csv")
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message
    assert message.endswith(".") and "\n" not in message


def test_expected_outputs_mismatch_names_counts_and_missing_outputs():
    text = "time,a,b,c\n0,1,2,3\n1,2,3,4\n2,3,4,5\n"
    with pytest.raises(InvalidInputError, match=r"has 3 output\(s\) \(a, b, c\) but the model expects 2"):
        load(text, expected_outputs=2)
    with pytest.raises(InvalidInputError, match="lacks the output\\(s\\) d.*does not know: c"):
        load(text, expected_outputs=["a", "b", "d"])
    with pytest.raises(InvalidInputError, match="does not know: c; the model expects a, b"):
        load(text, expected_outputs=["a", "b"])


def test_missing_path_and_netcdf_without_y(tmp_path):
    for missing in (tmp_path / "nope.csv", "a\x00b"):
        with pytest.raises(InvalidInputError, match="No measurement file"):
            load_measurements(missing)
    path = tmp_path / "other.nc"
    xr.Dataset({"z": (("time",), [1.0, 2.0, 3.0])}, coords={"time": [0.0, 1.0, 2.0]}).to_netcdf(path, engine="h5netcdf")
    with pytest.raises(InvalidInputError, match="no variable 'y' \\(found: z\\)"):
        load_measurements(path)


def test_netcdf_with_duplicate_times_or_infinite_values(tmp_path):
    dataset = xr.Dataset({"y": (("output", "time"), [[1.0, 2.0, 3.0]])}, coords={"time": [0.0, 1.0, 1.0], "output": ["a"]})
    dataset.to_netcdf(tmp_path / "dup.nc", engine="h5netcdf")
    with pytest.raises(InvalidInputError, match="Time 1 appears twice"):
        load_measurements(tmp_path / "dup.nc")
    dataset = dataset.assign_coords(time=[0.0, 1.0, 2.0])
    dataset["y"][0, 1] = np.inf
    dataset.to_netcdf(tmp_path / "inf.nc", engine="h5netcdf")
    with pytest.raises(InvalidInputError, match="infinite value at task 0, output a, time 1.0"):
        load_measurements(tmp_path / "inf.nc")


# ---------------------------------------------------------------- fuzzing


def check_result(tasks: TaskSet):
    y = mesh_values(tasks)
    assert tasks.dataset["y"].dims[:2] == ("task", "output")
    assert not np.isinf(y).any()
    assert np.all(np.diff(tasks.time.numpy()) > 0)
    assert np.isfinite(y).any(axis=1).reshape(y.shape[0], -1).sum(axis=1).min() >= MIN_POINTS
    assert np.isfinite(y).any(axis=(0,) + tuple(range(2, y.ndim))).all()


def load_or_reject(data: bytes):
    try:
        tasks = load_measurements(data, name="fuzz.csv")
    except InvalidInputError as error:
        assert str(error)
        return
    check_result(tasks)


FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CELLS = st.sampled_from(["0", "1", "2.5", "-3", "1e3", "", "NA", "nan", "inf", "x", "1,5", '"', "#", " 4 ", "1e999", "r1"])
NAMES = st.sampled_from(["time", "Time [h]", "space", "replicate", "force", "a", "b", "a_se", "c_se", "", "a [nM]"])


@FUZZ
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_crash(data):
    load_or_reject(data)


@FUZZ
@given(st.text(alphabet="time,replicate;ab_se\t\n\r\"#:[]0123456789.-+eENnaif ", max_size=300))
def test_arbitrary_csv_like_text_never_crashes(text):
    load_or_reject(text.encode())


@FUZZ
@given(st.lists(NAMES, min_size=1, max_size=5), st.lists(st.lists(CELLS, min_size=1, max_size=6), max_size=8), st.sampled_from([",", ";", "\t"]))
def test_arbitrary_tables_never_crash(header, rows, delimiter):
    text = "\n".join(delimiter.join(row) for row in [header] + rows)
    load_or_reject(text.encode())


def test_the_documented_example_loads():
    import dklfm_explore.io.format as module

    block = module.__doc__.split("::")[1].split("\n* ")[0]
    text = "\n".join(line[4:] for line in block.strip("\n").splitlines())
    tasks = load(text)
    assert tasks.dataset["task"].values.tolist() == ["1", "2"]
    assert tasks.time.tolist() == [0.0, 2.0, 4.0]
    np.testing.assert_array_equal(mesh_values(tasks)[1, 1], [np.nan, 118.89, 310.47])
    assert mesh_values(tasks, "y_se")[0, 0, 2] == 79.74
    assert tasks.dataset.attrs["title"] == "p53 targets after 5 Gy"


def test_netcdf_with_text_values_is_rejected(tmp_path):
    dataset = xr.Dataset({"y": (("output", "time"), [["a", "b", "c"]])}, coords={"time": [0.0, 1.0, 2.0], "output": ["a"]})
    dataset.to_netcdf(tmp_path / "text.nc", engine="h5netcdf")
    with pytest.raises(InvalidInputError, match="'y' of text.nc holds .* values; it needs numbers"):
        load_measurements(tmp_path / "text.nc")


def test_pool_replicates_averages_points_and_combines_errors():
    from dklfm_explore.datasets import load_p53
    from dklfm_explore.io import pool_replicates

    p53 = load_p53("5Gy")
    pooled = pool_replicates(p53)
    assert pooled.dataset["y"].dims == ("task", "output", "time") and pooled.n_tasks == 1
    assert np.allclose(pooled.dataset["y"].values[0], p53.dataset["y"].values.mean(axis=0))
    expected_se = np.sqrt((p53.dataset["y_se"].values ** 2).sum(axis=0)) / 3
    assert np.allclose(pooled.dataset["y_se"].values[0], expected_se)


# ---------------------------------------------------------------- hostile but realistic files


def test_replicate_labels_are_the_strings_written_and_never_merged():
    labels = ("1", "01", "+1", "3", "٣", "123456789012345678901", "9" * 4400)
    tasks = load("time,replicate,a\n" + "".join(f"{t},{r},{10 * k + t}\n" for k, r in enumerate(labels) for t in range(3)))
    assert tasks.dataset["task"].values.tolist() == list(labels)
    assert mesh_values(tasks)[:, 0, 0].tolist() == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    again = load(measurements_to_csv(tasks))
    assert again.dataset["task"].values.tolist() == list(labels)


def test_a_header_cell_with_a_long_run_of_spaces_is_read_in_linear_time():
    names = ["a" + " " * 100_000 + "b", "c" + " " * 100_000 + "[", " " * 100_000 + "d [nM]"]
    started = time.perf_counter()
    tasks = load("time," + ",".join(names) + "\n0,1,2,3\n1,2,3,4\n2,3,4,5\n")
    elapsed = time.perf_counter() - started
    assert tasks.output_names == ["a" + " " * 100_000 + "b", "c" + " " * 100_000 + "[", "d"]
    assert tasks.dataset.attrs["output_units"] == '["", "", "nM"]'
    # A quadratic header scan took about 17 s per such cell here; the linear one takes milliseconds.  5 s leaves
    # room for a machine shared with other jobs and still fails on the quadratic scan.
    assert elapsed < 5.0


def test_a_long_cell_is_cut_in_the_message():
    with pytest.raises(InvalidInputError) as caught:
        load("time,a\n0," + "x" * 100_000 + "\n1,2\n2,3\n")
    assert len(str(caught.value)) < 300 and "(100000 characters)" in str(caught.value)
    with pytest.raises(InvalidInputError) as caught:
        load("time," + "a" * 100_000 + "," + "a" * 100_000 + "\n0,1,2\n1,2,3\n2,3,4\n")
    assert len(str(caught.value)) < 300 and "appears twice" in str(caught.value)


def test_a_semicolon_file_with_a_comma_in_a_column_name_is_read_with_semicolons():
    tasks = load("time;DDB2 [MAS5, linear];p21\n0;1,5;2\n1;2;3\n2;3;4\n".replace("1,5", "1.5"))
    assert tasks.output_names == ["DDB2", "p21"]
    assert mesh_values(tasks)[0].tolist() == [[1.5, 2.0, 3.0], [2.0, 3.0, 4.0]]


def test_times_that_span_more_than_a_float_are_refused():
    with pytest.raises(InvalidInputError, match="span more than a float holds"):
        load("time,a\n-1.5e308,1\n0,2\n1.5e308,3\n")


GENES_BY_SYMBOL = "time,DDB2,BIK,TNFRSF10B,cdkn1a,SESN1\n0,1,2,3,4,5\n1,2,3,4,5,6\n2,3,4,5,6,7\n"


def test_outputs_match_the_systems_aliases_and_keep_the_files_names():
    model_outputs = list(SYSTEMS["transcription"].output_names)
    with pytest.raises(InvalidInputError, match="lacks the output\\(s\\) DR5, p21.*--outputs-in-order"):
        load(GENES_BY_SYMBOL, expected_outputs=model_outputs)
    tasks = load(GENES_BY_SYMBOL, expected_outputs=model_outputs, system="transcription")
    assert tasks.output_names == ["DDB2", "BIK", "TNFRSF10B", "cdkn1a", "SESN1"]
    assert tasks.dataset.attrs["output_match"] == "TNFRSF10B -> DR5; cdkn1a -> p21"
    reordered = "time,SESN1,CDKN1A,DDB2,BIK,DR5\n0,5,4,1,2,3\n1,6,5,2,3,4\n2,7,6,3,4,5\n"
    tasks = load(reordered, expected_outputs=model_outputs, system="transcription")
    assert tasks.output_names == ["DDB2", "BIK", "DR5", "CDKN1A", "SESN1"]
    assert mesh_values(tasks)[0, :, 0].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_outputs_in_order_take_the_columns_as_they_come():
    text = "time,g1,g2\n0,1,2\n1,2,3\n2,3,4\n"
    tasks = load(text, expected_outputs=["x", "y"], outputs_in_order=True)
    assert tasks.output_names == ["g1", "g2"] and tasks.dataset.attrs["output_match"] == "g1 -> x; g2 -> y"
    with pytest.raises(InvalidInputError, match="has 2 output\\(s\\) \\(g1, g2\\) but the model expects 3 .*cannot be taken in order"):
        load(text, expected_outputs=["x", "y", "z"], outputs_in_order=True)


# A table the loader must read back exactly, or refuse with a project error when (and only when) a replicate
# has under MIN_POINTS points, an output has no value or the times span more than a float.  Names may hold
# any delimiter (quoted where it is the file's); labels only the file's own, which a spreadsheet quotes: a
# label with an unquoted other delimiter on every line would be ambiguous to any reader.
DELIMITER_CHARS = ",;\t"
TEXT = st.characters(exclude_categories=("Cc", "Cs"))
NAME = st.one_of(
    st.text(TEXT, min_size=1, max_size=12),
    st.builds(lambda a, n, b: a + " " * n + b, st.text(TEXT, min_size=1, max_size=3), st.integers(1, 20_000), st.text(TEXT, min_size=1, max_size=3)),
    st.builds(lambda c, n: c * n, TEXT, st.integers(1, 50_000)),
).map(str.strip).filter(
    lambda name: name and name.lower() not in ("time", "space", "replicate", "force") and not name.endswith(("_se", "]"))
)
LABEL = st.one_of(
    st.text(TEXT, min_size=1, max_size=8),
    st.integers(-(10**30), 10**30).map(str),
    st.builds(lambda c, n: c * n, TEXT, st.integers(1, 50_000)),
).map(str.strip).filter(bool)
NUMBER_CELL = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e308, -1e308, 5e-324, -0.0, 1e-300, 2.0**53 + 1]),
)
MISSING_CELL = st.sampled_from(["", "NA", "nan", "null", "N/A"])
FORMATS = (repr, lambda x: f"{x:.17g}", lambda x: f" {x!r} ", lambda x: f"{x:.17e}")


@st.composite
def measured_tables(draw):
    delimiter = draw(st.sampled_from(DELIMITER_CHARS))
    names = draw(st.lists(NAME, min_size=1, max_size=3, unique=True))
    labels = draw(st.lists(LABEL.filter(lambda label: not set(label) & (set(DELIMITER_CHARS) - {delimiter})), min_size=1, max_size=3, unique=True))
    rows, values = [], {}
    for label in labels:
        times = draw(st.lists(st.floats(-1e300, 1e300, allow_nan=False), min_size=2, max_size=6, unique=True))
        for at in times:
            cells = [draw(st.one_of(NUMBER_CELL, NUMBER_CELL, NUMBER_CELL, MISSING_CELL)) for _ in names]
            values[label, at] = [np.nan if isinstance(cell, str) else cell for cell in cells]
            fmt = draw(st.sampled_from(FORMATS))
            rows.append([fmt(at), label] + [cell if isinstance(cell, str) else fmt(cell) for cell in cells])
    order = draw(st.permutations(range(len(rows))))
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, quoting=quoting, lineterminator=draw(st.sampled_from(["\n", "\r\n"]))).writerows(
        [["time", "replicate"] + names] + [rows[i] for i in order]
    )
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]))
    in_file_order = list(dict.fromkeys(rows[i][1] for i in order))
    return buffer.getvalue().encode(encoding), names, in_file_order, values


@settings(max_examples=200, deadline=1000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(measured_tables())
def test_any_measured_table_reads_back_exactly_or_is_refused_in_one_sentence(table):
    data, names, labels, values = table
    times = sorted({at for _, at in values})
    points = {label: sum(not np.isnan(row).all() for (other, _), row in values.items() if other == label) for label in labels}
    readable = (
        min(points.values()) >= MIN_POINTS
        and all(any(not np.isnan(row[k]) for row in values.values()) for k in range(len(names)))
        and (len(times) < 2 or np.isfinite(times[-1] - times[0]))
    )
    event("readable" if readable else "refused")
    try:
        tasks = load_measurements(data, name="table.csv")
    except InvalidInputError as error:
        assert not readable, str(error)
        assert str(error).endswith(".") and "\n" not in str(error)
        return
    assert readable
    assert tasks.output_names == names and tasks.dataset["task"].values.tolist() == labels
    assert tasks.time.tolist() == times
    expected = np.full((len(labels), len(names), len(times)), np.nan)
    for (label, at), row in values.items():
        expected[labels.index(label), :, times.index(at)] = row
    np.testing.assert_array_equal(mesh_values(tasks), expected)
