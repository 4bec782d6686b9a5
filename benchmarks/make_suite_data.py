"""Build five more labelled sets for the benchmark suite, of shapes the other sets lack, from Debian packages.

Everything comes through apt from the Debian archive (bookworm, section main; no other download);
nothing is committed: the files go to ``--out`` (default /tmp/rnnonnx-data) as CSV with columns ``text,label``.
Licences are those of the packages (see each package's ``/usr/share/doc/PACKAGE/copyright``).

* ``fortunes-en.csv``: English fortune cookies (packages ``fortunes`` and ``fortunes-min``, from the
  BSD fortune collection, BSD licence), labelled by the file they come from (art, computers,
  definitions, law, politics, riddles, science, startrek, zippy, ...). Many classes (about 40),
  imbalanced (50 to 1,000 per class), short (a sentence or a quip), and classes that overlap in topic.
* ``fortunes-de.csv``: German fortune cookies (package ``fortunes-de``, GPL-2+), labelled by file
  (zitate, witze, unfug, linuxtag, regeln, woerterbuch, fussball, ...). Another language, about 25
  imbalanced classes.
* ``debian-sections.csv``: English Debian package descriptions over *every* Debian section with at least
  ``--min-class`` packages (libs, libdevel, python, perl, devel, doc, games, ...), not just the 8 topic
  sections of ``debian-en``: about 50 classes, several nearly indistinguishable (libs vs libdevel),
  natural imbalance kept up to the per-class cap. Package descriptions are DFSG-free text under each
  package's own licence.
* ``debian-synopses.csv``: the one-line synopses of Debian packages (``Description:`` first lines, e.g.
  "Perl script indenter and reformatter"), labelled by section, 30,000 rows of the sections with 500+
  packages (see train_speed.py, which times training on the same rows). Many short texts: the shape
  where training time matters most.
* ``man-fr.csv``: French manual pages (package ``manpages-fr``, GPL-3+ translations), labelled by
  manual section (1 commands, 4 devices, 5 file formats, 7 overviews, 8 administration); roff markup
  stripped. Long documents in another language, with few rows: the hard case for a neural model.

Every set: texts whitespace-normalized, identical texts (case-insensitive) kept once and texts seen with
two labels dropped, classes under ``--min-class`` rows dropped, at most ``--per-class`` rows per class
drawn with a fixed seed, rows shuffled with that seed: the same command writes the same files.

    python benchmarks/make_suite_data.py --out /tmp/rnnonnx-data

Apt state goes to ``OUT/apt`` as in make_datasets.py (its own lists directory), so the system's package
lists are left alone; the package lists already there are reused.
"""

from __future__ import annotations

import argparse
import gzip
import random
import sys
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_datasets import (  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)
    DEBIAN_INDEX,
    apt_update,
    cat_index,
    describe,
    description_text,
    download_deb,
    record_sources,
    roff_text,
    stanzas,
    write_csv,
)
from train_speed import synopsis_rows  # noqa: E402

FORTUNE_DIRS = {"fortunes-en": (("fortunes", ""), ("fortunes-min", "")), "fortunes-de": (("fortunes-de", "de"),)}
MAN_FR_SECTIONS = ("1", "4", "5", "7", "8")


def curated(labelled: Iterable[tuple[str, str]], per_class: int, min_class: int, seed: int) -> list[tuple[str, str]]:
    """Normalized, de-duplicated (a text with two labels dropped), small classes dropped, capped, shuffled."""
    labels_of: dict[str, set[str]] = defaultdict(set)
    first: dict[str, str] = {}
    for text, label in labelled:
        text = " ".join(text.split())
        key = text.lower()
        labels_of[key].add(label)
        first.setdefault(key, text)
    by_label: dict[str, list[str]] = defaultdict(list)
    for key, labels in labels_of.items():
        if len(labels) == 1:
            by_label[next(iter(labels))].append(first[key])
    rng = random.Random(seed)
    rows: list[tuple[str, str]] = []
    for label in sorted(by_label):
        texts = sorted(by_label[label])
        if len(texts) < min_class:
            continue
        chosen = rng.sample(texts, min(per_class, len(texts))) if per_class else texts
        rows.extend((t, label) for t in chosen)
    rng.shuffle(rows)
    return rows


def fortune_entries(path: Path) -> list[str]:
    """The cookies of one fortune file: blocks separated by a line holding only ``%``."""
    raw = path.read_bytes().decode("utf-8", "replace")
    blocks = "\n".join(line if line.strip() != "%" else "\0" for line in raw.splitlines()).split("\0")
    return [b.strip() for b in blocks if len(b.split()) >= 3]


def fortunes(state: Path, name: str) -> Iterable[tuple[str, str]]:
    """(cookie, file name) pairs from the fortune packages of ``name``; index and link files skipped."""
    for package, subdir in FORTUNE_DIRS[name]:
        folder = download_deb(package, state) / "usr/share/games/fortunes" / subdir
        for path in sorted(folder.iterdir()):
            if path.is_file() and not path.is_symlink() and not path.suffix:
                yield from ((text, path.name) for text in fortune_entries(path))


def debian_all_sections(lists: Path) -> Iterable[tuple[str, str]]:
    """(English description, section) for every package of the main index."""
    sections = {
        record["Package"]: record.get("Section", "").split("/")[-1]
        for record in stanzas(cat_index(lists / f"{DEBIAN_INDEX}_binary-amd64_Packages.lz4"))
    }
    for record in stanzas(cat_index(lists / f"{DEBIAN_INDEX}_i18n_Translation-en.lz4")):
        label = sections.get(record.get("Package", ""))
        value = record.get("Description-en")
        if label and value:
            yield description_text(value), label


def man_pages_fr(state: Path) -> Iterable[tuple[str, str]]:
    """French manual pages, labelled by section (links, ``.so`` stubs and pages under 20 words skipped)."""
    root = download_deb("manpages-fr", state) / "usr/share/man/fr"
    for section in MAN_FR_SECTIONS:
        for path in sorted((root / f"man{section}").glob("*.gz")):
            if path.is_symlink():
                continue
            raw = gzip.decompress(path.read_bytes()).decode("utf-8", "replace")
            if raw.lstrip().startswith(".so "):
                continue
            text = roff_text(raw)
            if len(text.split()) >= 20:
                yield text, section


def main() -> None:
    """Build every set into ``--out`` and print a summary line for each."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/rnnonnx-data"))
    parser.add_argument("--per-class", type=int, default=1000, help="cap per class (0: no cap); debian-sections uses a third")
    parser.add_argument("--min-class", type=int, default=50, help="classes with fewer rows are dropped (man-fr: a fifth)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default="", help="comma-separated sets to build (default: all)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    state = args.out / "apt"
    lists = apt_update(state)
    builders = {
        "fortunes-en": lambda: curated(fortunes(state, "fortunes-en"), args.per_class, args.min_class, args.seed),
        "fortunes-de": lambda: curated(fortunes(state, "fortunes-de"), args.per_class, args.min_class, args.seed),
        "debian-sections": lambda: curated(debian_all_sections(lists), args.per_class // 3, args.min_class * 2, args.seed),
        "debian-synopses": lambda: synopsis_rows(lists),
        "man-fr": lambda: curated(man_pages_fr(state), args.per_class, max(1, args.min_class // 5), args.seed),
    }
    names = [n for n in args.only.split(",") if n] or list(builders)
    unknown = [n for n in names if n not in builders]
    if unknown:
        sys.exit(f"unknown set: {', '.join(unknown)} (sets: {', '.join(builders)})")
    for name in names:
        rows = builders[name]()
        write_csv(args.out / f"{name}.csv", rows)
        print(describe(name, rows, "word"))
    record_sources(args.out)


if __name__ == "__main__":
    main()
