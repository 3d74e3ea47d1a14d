"""The p53 target genes of Barenco et al. (2006): MOLT4 cells after gamma irradiation.

MAS5 expression (linear scale) of five p53 targets with the technical
measurement error of each value, from Martino Barenco's Bioconductor package
rHVDM (see ``data/PROVENANCE.md``): 3 replicates x 7 times (0-12 h) at 5 Gy,
and one series x 9 times (0-20 h) at 0.5 Gy.
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path
from typing import Sequence

import numpy as np
import xarray as xr

from ..data import TaskSet
from ..errors import UnknownNameError
from ..io import measurements_to_csv
from ..systems import P53_GENES
from .registry import DATA_DIR, BundledDataset, register_dataset

__all__ = ["load_p53", "write_p53_csvs", "P53_DOSES", "P53_PROBES", "P53_CITATION"]

P53_PROBES = {
    "DDB2": ("203409_at", "DDB2"),
    "BIK": ("205780_at", "BIK"),
    "DR5": ("209295_at", "TNFRSF10B"),
    "p21": ("202284_s_at", "CDKN1A"),
    "SESN1": ("218346_s_at", "SESN1"),
}
"""Gene (as in :data:`~dklfm_explore.systems.P53_GENES`) -> (Affymetrix HG-U133A probe, HGNC symbol)."""

GENE_ALIASES = {symbol: gene for gene, (_, symbol) in P53_PROBES.items()}
"""HGNC symbols (``TNFRSF10B``, ``CDKN1A``, ...) accepted for the gene names."""

P53_DOSES = {"5Gy": "fiveGyMAS5_5targets_long.csv", "0.5Gy": "halfGyMAS5_5targets_long.csv"}
"""Dose -> bundled long-format file (copied unchanged from the rHVDM extraction)."""

P53_CSVS = {"5Gy": "p53_5gy.csv", "0.5Gy": "p53_0.5gy.csv"}
"""Dose -> the same data in the CSV upload format, written by :func:`write_p53_csvs`."""

P53_CITATION = (
    "Barenco M, Tomescu D, Brewer D, Callard R, Stark J, Hubank M. Ranked prediction of p53 targets using hidden "
    "variable dynamic modeling. Genome Biology 2006, 7(3):R25. doi:10.1186/gb-2006-7-3-r25"
)
P53_SOURCE = (
    "Bioconductor package rHVDM (github.com/bioc/rHVDM, commit c0a6c7714379865235cf73a7a17e9bbe5b2bb64a), "
    "objects fiveGyMAS5 (data/HVDMexample.rda) and twodosesMAS5 (data/HVDMexample2.rda); see PROVENANCE.md"
)
OUTPUT_UNIT = "MAS5 signal"


def load_p53(dose: str = "5Gy", *, genes: Sequence[str] = P53_GENES) -> TaskSet:
    """Load the measured p53 target genes after one irradiation dose.

    Parameters
    ----------
    dose : {"5Gy", "0.5Gy"}
        ``"5Gy"``: 3 replicates x 7 times (0, 2, ..., 12 h).  ``"0.5Gy"``: one
        series x 9 times (0, 2, ..., 12, 16, 20 h).  Case is ignored.
    genes : sequence of str
        Genes to keep, in this order; names of :data:`P53_GENES` or their HGNC
        symbols (``TNFRSF10B`` for DR5, ``CDKN1A`` for p21).

    Returns
    -------
    TaskSet
        ``y : (task, output, time)``, MAS5 signal on a linear scale, and
        ``y_se : (task, output, time)``, the standard deviation of each value's
        technical measurement error.  ``task`` holds the replicate labels as in a CSV (``"1"``, ...),
        ``time`` is in hours; the ``output`` dimension also carries the
        coordinates ``probe`` and ``gene_symbol``.  The attrs give the citation
        and the provenance.

    Raises
    ------
    UnknownNameError
        For an unknown dose or gene.

    Examples
    --------
    >>> load_p53("5Gy").dataset["y"].shape
    (3, 5, 7)
    """
    dose = _dose(dose)
    names = []
    for gene in genes:
        gene = GENE_ALIASES.get(gene, gene)
        if gene not in P53_PROBES:
            raise UnknownNameError("p53 gene", gene, P53_PROBES)
        names.append(gene)
    return TaskSet(_read(dose).sel(output=names))


def write_p53_csvs(directory: str | Path = DATA_DIR) -> list[Path]:
    """Write both doses in the CSV upload format (``p53_5gy.csv``, ``p53_0.5gy.csv``).

    This generated the bundled copies; a test checks they are unchanged.  Values
    are written at full precision, so :func:`~dklfm_explore.measurements.load_measurements`
    reads back exactly :func:`load_p53`.
    """
    directory = Path(directory)
    return [measurements_to_csv(load_p53(dose), directory / P53_CSVS[dose]) for dose in P53_DOSES]


def _dose(dose: str) -> str:
    doses = {key.lower(): key for key in P53_DOSES}
    try:
        return doses[str(dose).replace(" ", "").lower()]
    except KeyError:
        raise UnknownNameError("p53 dose", str(dose), P53_DOSES) from None


def _read(dose: str) -> xr.Dataset:
    path = DATA_DIR / P53_DOSES[dose]
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    gene_of = {probe: gene for gene, (probe, _) in P53_PROBES.items()}
    replicates = sorted({int(row["replicate"]) for row in rows})
    times = sorted({float(row["time_h"]) for row in rows})
    shape = (len(replicates), len(P53_GENES), len(times))
    y, se = np.full(shape, np.nan), np.full(shape, np.nan)
    for row in rows:
        at = (replicates.index(int(row["replicate"])), P53_GENES.index(gene_of[row["probe"]]), times.index(float(row["time_h"])))
        y[at], se[at] = float(row["expr"]), float(row["se"])
    title = f"p53 targets in MOLT4 cells after {dose} gamma irradiation (Barenco et al. 2006)"
    attrs = {
        "title": title,
        "dataset": f"p53-{dose.lower()}",
        "system": "transcription",
        "dose": dose,
        "cell_line": "MOLT4 (human T-cell leukaemia)",
        "platform": "Affymetrix HG-U133A",
        "processing": "MAS5.0, rescaled; linear (un-logged) scale",
        "measurement_error": "y_se: standard deviation of the technical measurement error (rHVDM se.exprs), same scale as y",
        "citation": P53_CITATION,
        "data_source": P53_SOURCE,
        "time_unit": "h",
        "output_unit": OUTPUT_UNIT,
        "latent_name": "p53 activity",
    }
    return xr.Dataset(
        {
            "y": (("task", "output", "time"), y, {"long_name": "MAS5 expression", "units": OUTPUT_UNIT}),
            "y_se": (("task", "output", "time"), se, {"long_name": "measurement error (standard deviation)", "units": OUTPUT_UNIT}),
        },
        coords={
            "task": np.array([str(replicate) for replicate in replicates]),
            "output": list(P53_GENES),
            "time": np.array(times),
            "probe": ("output", [P53_PROBES[gene][0] for gene in P53_GENES]),
            "gene_symbol": ("output", [P53_PROBES[gene][1] for gene in P53_GENES]),
        },
        attrs=attrs,
    )


def _register(dose: str, design: str) -> BundledDataset:
    return register_dataset(
        BundledDataset(
            name=f"p53-{dose.lower()}",
            title=f"p53 targets after {dose} (Barenco et al. 2006)",
            description=(
                f"Five p53 target genes (DDB2, BIK, DR5, p21, SESN1) in human MOLT4 T-cells, {design} after {dose} "
                "gamma irradiation; MAS5 microarray signal (linear scale) with the known measurement error of each value."
            ),
            system="transcription",
            citation=P53_CITATION,
            csv=P53_CSVS[dose],
            loader=functools.partial(load_p53, dose),
        )
    )


_register("5Gy", "3 replicates x 7 times (0-12 h)")
_register("0.5Gy", "one series x 9 times (0-20 h)")
