"""SEntFiN at sentence level, as a file ``finsent eval`` reads: each headline once, with its label when all
its entity labels agree (headlines whose entities disagree are dropped).

SEntFiN lists a headline once per entity it names; ``finsent eval`` scores rows, so it would count such a
headline several times. This is the rule of ``bench/bench_distill.py`` and of a recipe's
``unique_texts: true``: the test split gives 957 headlines.

    python bench/sentfin_sentences.py $FINSENT_DATA_DIR/sentfin/splits/test.csv /tmp/sentfin_test_sentences.csv
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

from finsent_cli.core.data.examples import agreeing_texts
from finsent_cli.core.data.readers import read_table
from finsent_cli.core.io import atomic_write_text

FILE_NAME = "sentfin_test_sentences.csv"
"""The name ``bench/model_cards.py`` gives the file (``finsent eval`` names a dataset by its file name)."""


def sentence_rows(path: Path) -> list[tuple[str, str]]:
    """(text, label) per distinct text of an entity-level file, kept when all its rows agree; file order."""
    records, _ = read_table(path)
    return agreeing_texts((r.text, str(r.label).strip().lower()) for r in records)


def write_sentences(src: Path, dst: Path) -> int:
    """Write ``dst`` (CSV: text, label) from the entity-level ``src``, atomically; returns the row count."""
    rows = sentence_rows(src)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["text", "label"])
    writer.writerows(rows)
    atomic_write_text(dst, buf.getvalue())
    return len(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path, help="SEntFiN split (text, label, target, ...)")
    ap.add_argument("dst", type=Path, help="CSV to write (text, label)")
    args = ap.parse_args()
    print(f"wrote {args.dst}: {write_sentences(args.src, args.dst)} headlines")


if __name__ == "__main__":
    main()
