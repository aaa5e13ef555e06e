"""Real epitope-specific receptors to implant into simulated repertoires (a benchmark with real signal).

The receptors come from the MIRA SARS-CoV-2 assays of the ImmuneCODE release (Nolan et al. 2020, Snyder et
al. 2020): human TRB junctions with their V and J genes and the donor (``subject``) each came from, one file
per epitope group. The tcrdist3 package (MIT licence) ships them under ``tcrdist/data/covid19/``; install
just its files with ``pip install --no-deps tcrdist3==0.3``, or give the downloaded wheel, the folder or one
of the CSV files as ``source``. Nothing of tcrdist3 is imported: only its data files are read.

Typical use::

    receptors = read_mira_receptors()                      # HTTDPSFLGRY-specific receptors, 30 donors
    train_set, test_set = split_by_donor(receptors, seed=0)  # disjoint donors, no junction in both
    table, truth = implant_receptors(rep.table, train_set, rate=0.005, rng=rng, repertoire=rep.id)
"""

from __future__ import annotations

import importlib.util
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from deeprc_core.errors import DeepRCError
from deeprc_core.io import AMINO_ACIDS, DEFAULT_MAX_LENGTH
from deeprc_core.simulate import _CODON  # the simulator's codon per amino acid, so both encode alike

MIRA_PACKAGE = "tcrdist3"  # PyPI package that ships the MIRA files (its import name is tcrdist)
MIRA_FOLDER = "tcrdist/data/covid19"  # where they lie inside the package
DEFAULT_EPITOPE_FILE = "mira_epitope_1_8260_HTTDPSFLGRY.tcrdist3.csv"  # ORF1ab HTTDPSFLGRY, 8,260 receptors
RECEPTOR_COLUMNS = ("subject", "junction_aa", "v_call", "j_call", "epitope")


def installed_mira_folder() -> Path | None:
    """The MIRA folder of an installed tcrdist3 (found without importing it), or None."""
    try:
        spec = importlib.util.find_spec("tcrdist")
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        folder = Path(location) / "data" / "covid19"
        if folder.is_dir():
            return folder
    return None


def _read_csv_bytes(source: str | os.PathLike | None, epitope_file: str) -> tuple[bytes, str]:
    if source is None:
        folder = installed_mira_folder()
        if folder is None:
            raise DeepRCError(
                f"The real-signal receptors come from the {MIRA_PACKAGE} package, which is not installed; install "
                f"its data with 'pip install --no-deps {MIRA_PACKAGE}==0.3' or give the path of its wheel or CSV file."
            )
        source = folder
    path = Path(source)
    if path.is_dir():
        path = path / epitope_file
    if not path.exists():
        raise DeepRCError(f"{path} does not exist; give a {MIRA_PACKAGE} wheel, its covid19 data folder or a CSV file.")
    if path.suffix == ".whl" or zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as wheel:
            member = f"{MIRA_FOLDER}/{epitope_file}"
            if member not in wheel.namelist():
                raise DeepRCError(f"{path.name} holds no {member}; is it the {MIRA_PACKAGE} wheel?")
            return wheel.read(member), f"{path.name}:{member}"
    return path.read_bytes(), path.name


def read_mira_receptors(
    source: str | os.PathLike | None = None,
    epitope_file: str = DEFAULT_EPITOPE_FILE,
    max_length: int = DEFAULT_MAX_LENGTH,
) -> pd.DataFrame:
    """Epitope-specific TRB receptors of one MIRA file, cleaned.

    Parameters
    ----------
    source
        None (the installed tcrdist3), a tcrdist3 wheel, its ``covid19`` data folder, or a MIRA CSV file.
    epitope_file
        File name of the epitope group inside the package (ignored when ``source`` is a CSV file).
    max_length
        Junctions longer than this are dropped (as reading a repertoire would).

    Returns
    -------
    pandas.DataFrame
        Columns ``subject`` (donor ID as a string), ``junction_aa``, ``v_call``, ``j_call`` (IMGT names) and
        ``epitope``; one row per distinct (donor, junction, V, J). Rows whose junction is not ``C ... F/W`` of
        the 20 amino acids, or that lack a V or J gene, are dropped.
    """
    data, name = _read_csv_bytes(source, epitope_file)
    try:
        raw = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DeepRCError(f"{name} is not a readable CSV file ({error}).") from error
    wanted = {"subject": "subject", "cdr3_b_aa": "junction_aa", "v_b_gene": "v_call", "j_b_gene": "j_call"}
    missing = [c for c in wanted if c not in raw.columns]
    if missing:
        raise DeepRCError(f"{name} lacks the column(s) {', '.join(missing)} of a tcrdist3 MIRA file.")
    frame = raw[list(wanted)].rename(columns=wanted).apply(lambda c: c.str.strip())
    frame["junction_aa"] = frame["junction_aa"].str.upper()
    frame["epitope"] = raw["epitope"].str.strip() if "epitope" in raw.columns else Path(name).stem
    letters = f"^C[{AMINO_ACIDS}]*[FW]$"
    keep = (
        frame["junction_aa"].str.fullmatch(letters)
        & frame["junction_aa"].str.len().between(6, max_length)
        & frame["v_call"].str.startswith("TRBV")
        & frame["j_call"].str.startswith("TRBJ")
    )
    frame = frame[keep].drop_duplicates(["subject", "junction_aa", "v_call", "j_call"])
    if frame.empty:
        raise DeepRCError(f"{name} holds no usable TRB receptor (junction C...F/W with V and J genes).")
    return frame[list(RECEPTOR_COLUMNS)].reset_index(drop=True)


def split_by_donor(
    receptors: pd.DataFrame, test_fraction: float = 0.5, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split receptors into two sets from disjoint donors, so that no exact clone can be matched across them.

    Donors are shuffled (seeded) and each goes to the set furthest below its target share of receptors.
    Junctions of the second set that also occur in the first (public clones) are dropped from the second.

    Returns
    -------
    first, second
        Receptors of the training donors and of the test donors (``test_fraction`` of the receptors, roughly).
    """
    if not 0 < test_fraction < 1:
        raise DeepRCError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}.")
    sizes = receptors.groupby("subject").size()
    if len(sizes) < 2:
        raise DeepRCError("The receptors come from one donor only; a donor split needs at least two.")
    donors = sizes.index.to_numpy()[np.random.default_rng(seed).permutation(len(sizes))]
    total, filled, test_donors = float(sizes.sum()), np.zeros(2), set()
    targets = np.array([1 - test_fraction, test_fraction]) * total
    for donor in donors:
        side = int(np.argmax(targets - filled))
        filled[side] += sizes[donor]
        if side == 1:
            test_donors.add(donor)
    if not test_donors or len(test_donors) == len(sizes):
        raise DeepRCError("The donor split left one side empty; use more donors or another test_fraction.")
    in_test = receptors["subject"].isin(test_donors)
    first, second = receptors[~in_test], receptors[in_test]
    second = second[~second["junction_aa"].isin(set(first["junction_aa"]))]
    return first.reset_index(drop=True), second.reset_index(drop=True)


def junction_nucleotides(junction_aa: str) -> str:
    """A nucleotide junction that translates to ``junction_aa`` (the codon the simulator re-encodes implants with)."""
    return "".join(_CODON[a] for a in junction_aa)


def implant_receptors(
    table: pd.DataFrame,
    receptors: pd.DataFrame,
    rate: float,
    rng: np.random.Generator,
    repertoire: str = "",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Replace a fraction of a repertoire's clones by real receptors.

    Parameters
    ----------
    table
        One repertoire (columns ``junction``, ``junction_aa``, ``v_call``, ``j_call``, ``duplicate_count``, as
        :attr:`deeprc_core.simulate.SimulatedRepertoire.table`).
    receptors
        Receptors to draw from (:func:`read_mira_receptors` columns); distinct junctions are drawn without
        replacement, none already present in the repertoire.
    rate
        Fraction of the repertoire's rows to replace (at least one when above zero).
    rng
        Random generator (rows and receptors drawn).
    repertoire
        Repertoire ID written into the truth table.

    Returns
    -------
    table, truth
        The new table (same rows and clone sizes; the chosen rows carry the receptors' junction, V and J) and one
        truth row per implanted receptor: ``repertoire``, ``sequence``, ``v_call``, ``j_call``, ``motif`` (the
        epitope), ``motif_start`` (0) and ``motif_length`` (the whole junction), ``original_sequence``,
        ``subject``.
    """
    if not 0 <= rate <= 1:
        raise DeepRCError(f"rate is a fraction and must lie between 0 and 1, got {rate!r}.")
    n = max(1, round(rate * len(table))) if rate > 0 else 0
    candidates = receptors.drop_duplicates("junction_aa")
    candidates = candidates[~candidates["junction_aa"].isin(set(table["junction_aa"]))]
    if n > len(candidates):
        raise DeepRCError(f"Only {len(candidates)} distinct receptors are left to implant, but {n} are needed.")
    table = table.copy()
    rows = rng.choice(len(table), size=n, replace=False)
    picked = candidates.iloc[rng.choice(len(candidates), size=n, replace=False)]
    original = table["junction_aa"].to_numpy()[rows]
    column = {c: table.columns.get_loc(c) for c in ("junction", "junction_aa", "v_call", "j_call")}
    table.iloc[rows, column["junction_aa"]] = picked["junction_aa"].to_numpy()
    table.iloc[rows, column["junction"]] = [junction_nucleotides(s) for s in picked["junction_aa"]]
    table.iloc[rows, column["v_call"]] = picked["v_call"].to_numpy()
    table.iloc[rows, column["j_call"]] = picked["j_call"].to_numpy()
    truth = pd.DataFrame(
        {
            "repertoire": repertoire,
            "sequence": picked["junction_aa"].to_numpy(),
            "v_call": picked["v_call"].to_numpy(),
            "j_call": picked["j_call"].to_numpy(),
            "motif": picked["epitope"].to_numpy(),
            "motif_start": 0,
            "motif_length": picked["junction_aa"].str.len().to_numpy(),
            "original_sequence": original,
            "subject": picked["subject"].to_numpy(),
        }
    )
    return table, truth


__all__ = [
    "DEFAULT_EPITOPE_FILE",
    "MIRA_PACKAGE",
    "implant_receptors",
    "installed_mira_folder",
    "junction_nucleotides",
    "read_mira_receptors",
    "split_by_donor",
]
