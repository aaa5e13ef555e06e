"""How fast the app answers: upload of a 100,000-sequence repertoire -> attention table, and the integrated-
gradient logo of the top 50 sequences. Targets: 5 s each.

Run from the repository root::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_app.py [--model models/demo] [--sequences 100000]

Prints the library steps (read, score + attention table, the on-screen table as Arrow, IG, logo), then the
same through the app itself (``AppTest``: upload on the Attention page, rerun to the finished page; the
Attributions page with its defaults), each as the median of a few runs, and the ratio to the 5 s target.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from deeprc_core.attribution import attribute_sequences
from deeprc_core.checkpoint import list_models, load_model
from deeprc_core.io import AMINO_ACIDS, read_repertoire
from deeprc_core.motifs import attribution_logo
from deeprc_core.plots import figure_to_bytes, logo_figure
from deeprc_core.scoring import attention_table
from explorer import settings

settings.set_torch_threads()  # the app's torch thread setting (DEEPRC_TORCH_THREADS)

ROOT = Path(__file__).resolve().parents[1]

TARGET_S = 5.0


def synthetic_repertoire(n: int, seed: int = 0) -> bytes:
    """An AIRR TSV of ``n`` distinct junction-like sequences (1 % carry GWQH), Zipf clone counts."""
    rng = np.random.default_rng(seed)
    letters = np.array(list(AMINO_ACIDS))
    seen: set[str] = set()
    while len(seen) < n:
        lengths = rng.integers(11, 19, n)
        middle = letters[rng.integers(0, 20, (n, 18))]
        for row, length in zip(middle, lengths):
            seq = "CAS" + "".join(row[: length - 4]) + "F"
            if rng.random() < 0.01:
                start = int(rng.integers(3, len(seq) - 6))
                seq = seq[:start] + "GWQH" + seq[start + 4 :]
            seen.add(seq)
            if len(seen) == n:
                break
    frame = pd.DataFrame(
        {
            "junction_aa": sorted(seen),
            "duplicate_count": np.minimum(rng.zipf(2.2, n), 10_000),
            "v_call": rng.choice(["TRBV5-1*01", "TRBV20-1*01", "TRBV7-9*01", "TRBV12-3*01"], n),
            "j_call": rng.choice(["TRBJ2-7*01", "TRBJ1-1*01", "TRBJ2-1*01"], n),
            "productive": "T",
        }
    )
    return frame.to_csv(sep="\t", index=False).encode()


def timed(fn, repeats: int) -> tuple[float, object]:
    """Median wall time of ``fn`` over ``repeats`` runs, each in a worker thread as Streamlit runs page scripts."""
    times, result = [], None
    with ThreadPoolExecutor(max_workers=1) as pool:
        for _ in range(repeats):
            start = time.perf_counter()
            result = pool.submit(fn).result()
            times.append(time.perf_counter() - start)
    return statistics.median(times), result


def report(label: str, seconds: float, target: float | None = None) -> None:
    ratio = f"  ({seconds / target:.2f} x the {target:.0f} s target)" if target else ""
    print(f"  {label:<55s} {seconds:7.2f} s{ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="model folder (default: the first under models/)")
    parser.add_argument("--sequences", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model_dir = Path(args.model) if args.model else next(iter(list_models(ROOT / "models")), None)
    if model_dir is None:
        sys.exit("No model: pass --model or put one under models/.")
    model = load_model(model_dir)
    data = synthetic_repertoire(args.sequences)
    import torch

    print(
        f"model {model_dir.name}, {args.sequences:,}-sequence AIRR file ({len(data) / 2**20:.1f} MiB), "
        f"device {model.device}, {torch.get_num_threads()} torch thread(s)"
    )

    print("library")
    t_read, rep = timed(lambda: read_repertoire(data, name="bench.tsv"), args.repeats)
    report("read_repertoire", t_read)
    t_table, table = timed(lambda: attention_table(model, rep), args.repeats)
    report("score + attention_table (every sequence)", t_table)
    t_arrow, _ = timed(lambda: pa.Table.from_pandas(table.head(5000)), args.repeats)
    report("top 5,000 rows to Arrow (what st.dataframe sends)", t_arrow)
    report("upload -> attention table, library total", t_read + t_table + t_arrow, TARGET_S)
    t_ig, result = timed(lambda: attribute_sequences(model, rep, top=50, n_steps=32), args.repeats)
    report("integrated gradients, top 50, 32 steps", t_ig)
    t_ig50, _ = timed(lambda: attribute_sequences(model, rep, top=50, n_steps=50), 1)
    report("integrated gradients, top 50, 50 steps", t_ig50)
    t_logo, _ = timed(lambda: figure_to_bytes(logo_figure(attribution_logo(result, flank=4)), "png"), args.repeats)
    report("attribution logo -> PNG", t_logo)
    report("IG logo of the top 50 (32 steps), library total", t_ig + t_logo, TARGET_S)

    print("app (AppTest, the whole page run)")
    from streamlit.testing.v1 import AppTest

    with tempfile.TemporaryDirectory() as trained:
        import os

        os.environ["DEEPRC_TRAINED_DIR"] = trained
        os.environ["DEEPRC_MODELS_DIR"] = str(model_dir.parent)
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
        at.run()
        at.switch_page("app_pages/attention.py").run()
        start = time.perf_counter()
        at.file_uploader(key="attention_upload").set_value(("bench.tsv", data, "text/tab-separated-values")).run()
        t_page = time.perf_counter() - start
        assert not at.exception, [e.value for e in at.exception]
        shown = at.dataframe[0].value
        assert len(shown) == 5000, len(shown)
        report("upload 100k -> Attention page finished (incl. plots, 1 IG)", t_page, TARGET_S)
        start = time.perf_counter()
        at.run()
        report("same page again (cached)", time.perf_counter() - start)
        start = time.perf_counter()
        at.switch_page("app_pages/attributions.py").run()
        assert not at.exception, [e.value for e in at.exception]
        report("Attributions page, top 50, 32 steps (two logos)", time.perf_counter() - start, TARGET_S)
        start = time.perf_counter()
        at.switch_page("app_pages/attention.py").run()
        report("back to Attention (everything cached)", time.perf_counter() - start)
        for page, label in (
            ("app_pages/kernel_motifs.py", "Kernel motifs page (3 sample patients, 4 kernels)"),
            ("app_pages/validate.py", "Validate page (sample truth, 3 patients)"),
            ("app_pages/report.py", "Report page (HTML built, 100k upload)"),
            ("app_pages/classify.py", "Classify page (3 sample patients)"),
        ):
            start = time.perf_counter()
            at.switch_page(page).run()
            assert not at.exception, [e.value for e in at.exception]
            report(label, time.perf_counter() - start, TARGET_S)


if __name__ == "__main__":
    main()
