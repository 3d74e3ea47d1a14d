"""Bundled real data: the Barenco et al. (2006) p53 loaders, their CSV copies and the registry."""

import csv
import fnmatch
import hashlib
import tomllib
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from dklfm_explore.datasets import DATA_DIR, DATASETS, get_dataset, load_dataset, load_p53, write_p53_csvs
from dklfm_explore.errors import UnknownNameError
from dklfm_explore.io import load_measurements
from dklfm_explore.systems import P53_GENES, SYSTEMS

SHARED = Path("/work/shared/data/p53_barenco")
"""The project's original extraction; the cross-checks against it are skipped where it is absent."""

COPIED_SHA256 = {
    "fiveGyMAS5_5targets_long.csv": "695349bddcbbcaee5709dea3d543bef7a2a3ff881ee8f4d7d4dbfa4f90bcff7b",
    "halfGyMAS5_5targets_long.csv": "cee2846436e12e494c080e9084526720320b32634a6451edd39ced3961a958aa",
}
HOURS_5GY = [0, 2, 4, 6, 8, 10, 12]
HOURS_HALF_GY = [0, 2, 4, 6, 8, 10, 12, 16, 20]


def value(tasks, name, replicate, gene, hour):
    return float(tasks.dataset[name].sel(task=str(replicate), output=gene, time=hour))


def test_5gy_shape_coordinates_and_units():
    tasks = load_p53("5Gy")
    assert tasks.dataset["y"].dims == ("task", "output", "time")
    assert tasks.dataset["y"].shape == (3, 5, 7)
    assert tasks.dataset["y_se"].shape == (3, 5, 7)
    assert tasks.output_names == list(P53_GENES) == ["DDB2", "BIK", "DR5", "p21", "SESN1"]
    assert tasks.dataset["task"].values.tolist() == ["1", "2", "3"]
    assert tasks.time.tolist() == HOURS_5GY
    assert tasks.dataset["gene_symbol"].values.tolist() == ["DDB2", "BIK", "TNFRSF10B", "CDKN1A", "SESN1"]
    attrs = tasks.dataset.attrs
    assert (attrs["time_unit"], attrs["output_unit"], attrs["system"]) == ("h", "MAS5 signal", "transcription")
    assert "doi:10.1186/gb-2006-7-3-r25" in attrs["citation"]
    assert "c0a6c7714379865235cf73a7a17e9bbe5b2bb64a" in attrs["data_source"]
    assert np.isfinite(tasks.dataset["y"].values).all()
    assert (tasks.dataset["y_se"].values > 0).all()


def test_5gy_pinned_values_from_the_rhvdm_extraction():
    tasks = load_p53("5Gy")
    assert value(tasks, "y", 1, "DDB2", 4) == 1104.537
    assert value(tasks, "y_se", 1, "DDB2", 4) == 79.7350801485828
    assert value(tasks, "y", 3, "p21", 12) == 210.1645
    assert value(tasks, "y_se", 3, "p21", 12) == 22.5278915801598
    assert value(tasks, "y", 2, "BIK", 6) == 322.6356
    assert value(tasks, "y", 1, "DR5", 0) == 29.1
    assert value(tasks, "y", 3, "SESN1", 6) == 404.8108
    assert value(tasks, "y", 1, "p21", 0) == 5.9


def test_half_gy_shape_and_pinned_values():
    tasks = load_p53("0.5Gy")
    assert tasks.dataset["y"].shape == (1, 5, 9)
    assert tasks.dataset["task"].values.tolist() == ["1"]
    assert tasks.time.tolist() == HOURS_HALF_GY
    assert value(tasks, "y", 1, "DDB2", 20) == 598.1
    assert value(tasks, "y_se", 1, "DDB2", 20) == 33.9257939146926
    assert value(tasks, "y", 1, "p21", 16) == 73.5
    assert value(tasks, "y", 1, "DR5", 4) == 117.1
    assert value(tasks, "y_se", 1, "p21", 0) == 3.7526412695824
    assert tasks.dataset.attrs["dose"] == "0.5Gy"


@pytest.mark.skipif(not SHARED.is_dir(), reason="the project's shared extraction is not on this machine")
def test_5gy_equals_the_wide_tables_of_the_extraction():
    tasks = load_p53("5Gy")
    for table, name in (("fiveGyMAS5_5targets_exprs.csv", "y"), ("fiveGyMAS5_5targets_se.csv", "y_se")):
        with (SHARED / table).open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert len(rows) == 5
        for row in rows:
            gene = tasks.dataset["output"].values[tasks.dataset["gene_symbol"].values.tolist().index(row["gene"])]
            for replicate in (1, 2, 3):
                for hour in HOURS_5GY:
                    assert value(tasks, name, replicate, gene, hour) == float(row[f"cARP{replicate}-{hour}hrs.CEL"])


@pytest.mark.parametrize("file, digest", COPIED_SHA256.items())
def test_copied_files_are_unchanged(file, digest):
    assert hashlib.sha256((DATA_DIR / file).read_bytes()).hexdigest() == digest
    assert digest in (DATA_DIR / "PROVENANCE.md").read_text()
    if SHARED.is_dir():
        assert (DATA_DIR / file).read_bytes() == (SHARED / file).read_bytes()


def test_genes_select_reorder_and_accept_hgnc_symbols():
    tasks = load_p53("5gy", genes=["CDKN1A", "DDB2"])
    assert tasks.output_names == ["p21", "DDB2"]
    full = load_p53("5Gy")
    np.testing.assert_array_equal(tasks.dataset["y"].values[:, 0], full.dataset["y"].sel(output="p21").values)


def test_unknown_dose_or_gene_lists_the_valid_ones():
    with pytest.raises(UnknownNameError, match="0.5Gy, 5Gy"):
        load_p53("2Gy")
    with pytest.raises(UnknownNameError, match="BIK, DDB2, DR5, SESN1, p21"):
        load_p53(genes=["TP53"])


def test_each_load_is_an_independent_copy():
    first = load_p53()
    first.dataset["y"][:] = 0.0
    assert value(load_p53(), "y", 1, "DDB2", 4) == 1104.537


@pytest.mark.parametrize("dose, file", [("5Gy", "p53_5gy.csv"), ("0.5Gy", "p53_0.5gy.csv")])
def test_bundled_csv_loads_to_exactly_load_p53(dose, file):
    expected = load_p53(dose)
    loaded = load_measurements(DATA_DIR / file, expected_outputs=list(P53_GENES), system="transcription")
    xr.testing.assert_identical(
        loaded.dataset.drop_attrs(deep=True), expected.dataset.reset_coords(drop=True).drop_attrs(deep=True)
    )
    loaded_attrs = {key: val for key, val in loaded.dataset.attrs.items() if key != "source"}
    assert loaded_attrs == expected.dataset.attrs
    assert loaded.dataset.attrs["source"] == file


def test_bundled_csvs_are_what_write_p53_csvs_generates(tmp_path):
    written = write_p53_csvs(tmp_path)
    assert [path.name for path in written] == ["p53_5gy.csv", "p53_0.5gy.csv"]
    for path in written:
        assert path.read_bytes() == (DATA_DIR / path.name).read_bytes()
    header = (DATA_DIR / "p53_5gy.csv").read_text().splitlines()[11]
    assert header == (
        "time [h],replicate,DDB2 [MAS5 signal],BIK [MAS5 signal],DR5 [MAS5 signal],p21 [MAS5 signal],"
        "SESN1 [MAS5 signal],DDB2_se,BIK_se,DR5_se,p21_se,SESN1_se"
    )


def test_registry_lists_both_doses_with_loadable_entries():
    assert set(DATASETS) == {"p53-5gy", "p53-0.5gy"}
    for name, dataset in DATASETS.items():
        tasks = load_dataset(name)
        assert dataset.name == name == tasks.dataset.attrs["dataset"]
        assert dataset.csv_path.is_file()
        assert dataset.system in SYSTEMS
        assert tasks.output_names == list(SYSTEMS[dataset.system].output_names)
        assert "Barenco" in dataset.citation and dataset.title and dataset.description
    assert get_dataset("p53-5gy").load().n_tasks == 3
    with pytest.raises(UnknownNameError, match="p53-0.5gy, p53-5gy"):
        get_dataset("drosophila")


def test_every_bundled_file_is_package_data():
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["dklfm_explore.datasets"]
    for path in DATA_DIR.iterdir():
        assert any(fnmatch.fnmatch(f"data/{path.name}", pattern) for pattern in globs), path.name
