"""Build labelled text sets from public Debian data, to check the default recipe beyond the built-in set.

Everything comes through apt from the Debian archive (no other download); nothing is committed:
the files go to ``--out`` (default /tmp/rnnonnx-data) as CSV with columns ``text,label``.

* ``debian-en.csv``: English package descriptions (short + long), labelled by Debian section,
  8 topic sections (admin, games, graphics, net, science, sound, text, utils), at most 1,000 per
  section, identical texts kept once. Multi-class, a few dozen words each.
* ``debian-de.csv``, ``debian-fr.csv``, ``debian-ja.csv``, ``debian-ko.csv``: the same, from the
  German, French, Japanese and Korean translations of the descriptions (mapped to sections by
  package name). ``--analyzer auto`` reads the Japanese and the Korean by character. The Korean
  translations wrap their lines at a fixed width, often inside a word; the lines are joined with a
  space, as in every set, which splits those words in two.
* ``kernel-docs.csv``: the Linux kernel's documentation (package ``linux-doc-6.1``), one .rst file
  per row, labelled by its top directory (admin-guide, driver-api, filesystems, hwmon, networking,
  userspace-api). Long documents: hundreds to thousands of words.
* ``man-de.csv``: German manual pages (package ``manpages-de``), labelled by manual section
  (1 commands, 5 file formats, 7 overviews, 8 administration); roff markup stripped. Long, non-English.

    python benchmarks/make_datasets.py --out /tmp/rnnonnx-data

The sets follow the Debian archive of the day: a point release can change a package (the kernel
documentation above all) and with it a set's rows. ``OUT/SOURCES.txt`` names the archive's release
dates and the .deb files a build read; the benchmark suite ties every result to its split's sha256.

Apt state goes to ``OUT/apt`` (its own lists directory, with the translations enabled), so the
system's package lists are left alone. Needs ``apt-get``, ``dpkg-deb`` and ``/usr/lib/apt/apt-helper``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import random
import re
import statistics
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SECTIONS = ("admin", "games", "graphics", "net", "science", "sound", "text", "utils")
LANGUAGES = ("en", "de", "fr", "ja", "ko")
KERNEL_DIRS = ("admin-guide", "driver-api", "filesystems", "hwmon", "networking", "userspace-api")
MAN_SECTIONS = ("1", "5", "7", "8")
DEBIAN_INDEX = "deb.debian.org_debian_dists_bookworm_main"


# --- apt plumbing -----------------------------------------------------------------------------------


def apt_update(state: Path) -> Path:
    """``apt-get update`` into a private lists directory with translations; returns that directory."""
    lists = state / "lists"
    if not all((lists / f"{DEBIAN_INDEX}_i18n_Translation-{language}.lz4").exists() for language in LANGUAGES):
        (lists / "partial").mkdir(parents=True, exist_ok=True)
        (state / "cache").mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "apt-get",
                "update",
                "-o",
                f"Dir::State::Lists={lists}",
                "-o",
                f"Dir::Cache={state / 'cache'}",
                "-o",
                f"Acquire::Languages={','.join(LANGUAGES)}",
            ],
            check=True,
        )
    return lists


def record_sources(out: Path) -> None:
    """Write ``OUT/SOURCES.txt``: each index's release date and every .deb read, so a set whose rows
    changed can be traced to the archive that changed it."""
    state = out / "apt"
    lines = []
    for release in sorted((state / "lists").glob("*_InRelease")):
        date = next((line for line in release.read_text(errors="replace").splitlines() if line.startswith("Date:")), "")
        lines.append(f"{release.name.removesuffix('_InRelease')}: {date.removeprefix('Date:').strip()}")
    lines += sorted(deb.name for deb in (state / "debs").glob("*.deb"))
    (out / "SOURCES.txt").write_text("\n".join(lines) + "\n")


def cat_index(path: Path) -> str:
    """The decompressed text of an apt index file (lz4, gz or plain)."""
    return subprocess.run(["/usr/lib/apt/apt-helper", "cat-file", str(path)], check=True, capture_output=True).stdout.decode(
        "utf-8"
    )


def stanzas(text: str) -> Iterator[dict[str, str]]:
    """Deb822 paragraphs as dicts; continuation lines are kept (with their newline) in the value."""
    for block in text.split("\n\n"):
        record: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            if line.startswith((" ", "\t")) and key:
                record[key] += "\n" + line
            elif ":" in line:
                key, _, value = line.partition(":")
                record[key] = value.strip()
        if record:
            yield record


def description_text(value: str) -> str:
    """A Debian description field (synopsis plus long text) as plain prose."""
    lines = value.split("\n")
    body = [line[1:] if line.startswith(" ") else line for line in lines[1:]]
    body = ["" if line.strip() == "." else line for line in body]
    return " ".join([lines[0].rstrip(".") + "."] + [line.strip() for line in body if line.strip()])


def download_deb(package: str, state: Path) -> Path:
    """Fetch a .deb with ``apt-get download`` and unpack it; returns the unpacked root."""
    debs = state / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    root = debs / package
    if not root.exists():
        if not list(debs.glob(f"{package}_*.deb")):
            subprocess.run(["apt-get", "download", package], cwd=debs, check=True)
        deb = sorted(debs.glob(f"{package}_*.deb"))[-1]
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


# --- the sets -----------------------------------------------------------------------------------------


def debian_descriptions(lists: Path, language: str, per_class: int, seed: int) -> list[tuple[str, str]]:
    """Package descriptions in ``language``, labelled by section, balanced by a per-class cap."""
    sections: dict[str, str] = {}
    for record in stanzas(cat_index(lists / f"{DEBIAN_INDEX}_binary-amd64_Packages.lz4")):
        sections[record["Package"]] = record.get("Section", "").split("/")[-1]
    by_label: dict[str, list[str]] = {s: [] for s in SECTIONS}
    seen: set[str] = set()
    for record in stanzas(cat_index(lists / f"{DEBIAN_INDEX}_i18n_Translation-{language}.lz4")):
        label = sections.get(record.get("Package", ""))
        value = record.get(f"Description-{language}")
        if label not in by_label or not value:
            continue
        text = description_text(value)
        key = " ".join(text.lower().split())
        if key in seen:
            continue
        seen.add(key)
        by_label[label].append(text)
    return _balanced(by_label, per_class, seed)


def _balanced(by_label: dict[str, list[str]], per_class: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows: list[tuple[str, str]] = []
    for label, texts in sorted(by_label.items()):
        chosen = rng.sample(texts, min(per_class, len(texts))) if per_class else texts
        rows.extend((t, label) for t in chosen)
    rng.shuffle(rows)
    return rows


_RST_NOISE = re.compile(r"^(\.\. .*|:\w[\w-]*:.*|[=\-~^*#+`'\"]{3,}\s*)$")


def rst_text(raw: str) -> str:
    """reStructuredText with directives, field lists and heading underlines dropped."""
    lines = [line for line in raw.splitlines() if not _RST_NOISE.match(line.strip())]
    return " ".join(" ".join(lines).split())


def kernel_docs(state: Path) -> list[tuple[str, str]]:
    """One row per kernel documentation file in the chosen top directories (subdirectories included)."""
    docs = download_deb("linux-doc-6.1", state) / "usr/share/doc/linux-doc-6.1/Documentation"
    rows: list[tuple[str, str]] = []
    for label in KERNEL_DIRS:
        for path in sorted((docs / label).rglob("*.rst.gz")):
            text = rst_text(gzip.decompress(path.read_bytes()).decode("utf-8", "replace"))
            if len(text.split()) >= 20:
                rows.append((text, label))
    random.Random(0).shuffle(rows)
    return rows


_ROFF_ESCAPES = [
    (re.compile(r"\\f(\[[^\]]*\]|\(..|.)"), ""),  # font changes
    (re.compile(r"\\\*(\[[^\]]*\]|\(..|.)"), ""),  # strings
    (re.compile(r"\\\((..)"), " "),  # special characters
    (re.compile(r"\\\[[^\]]*\]"), " "),
    (re.compile(r"\\[-e]"), "-"),
    (re.compile(r"\\[&|^,/%:]"), ""),
    (re.compile(r"\\s[-+]?\d"), ""),
    (re.compile(r"\\(.)"), r"\1"),
]
_TEXT_MACROS = {
    "SH",
    "SS",
    "B",
    "I",
    "BR",
    "IR",
    "RB",
    "RI",
    "BI",
    "IB",
    "TP",
    "IP",
    "SM",
    "SB",
    "UR",
    "MT",
    "OP",
    "Nm",
    "Nd",
    "Sh",
}


def roff_text(raw: str) -> str:
    """A man page's words: comments, the title line and layout requests dropped, text macros kept."""
    out: list[str] = []
    for line in raw.splitlines():
        if line.startswith(('.\\"', "'\\\"", '.\\"')) or line.startswith(".TH"):
            continue
        if line.startswith((".", "'")):
            name, _, args = line[1:].strip().partition(" ")
            if name not in _TEXT_MACROS:
                continue
            line = args.replace('"', " ")
        for pattern, repl in _ROFF_ESCAPES:
            line = pattern.sub(repl, line)
        out.append(line)
    return " ".join(" ".join(out).split())


def man_pages_de(state: Path) -> list[tuple[str, str]]:
    """German manual pages from ``manpages-de``, labelled by section (links and stubs skipped)."""
    root = download_deb("manpages-de", state) / "usr/share/man/de"
    rows: list[tuple[str, str]] = []
    for section in MAN_SECTIONS:
        for path in sorted((root / f"man{section}").glob("*.gz")):
            if path.is_symlink():
                continue
            raw = gzip.decompress(path.read_bytes()).decode("utf-8", "replace")
            if raw.lstrip().startswith(".so "):
                continue
            text = roff_text(raw)
            if len(text.split()) >= 20:
                rows.append((text, section))
    random.Random(0).shuffle(rows)
    return rows


# --- output -------------------------------------------------------------------------------------------


def write_csv(path: Path, rows: Iterable[tuple[str, str]]) -> None:
    """CSV with a ``text,label`` header."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


def describe(name: str, rows: list[tuple[str, str]], analyzer: str) -> str:
    """One summary line: rows, classes, class counts, median and 90th-percentile length in tokens."""
    from rnnonnx.text import analyze

    lengths = sorted(len(analyze(t, analyzer)) for t, _ in rows)
    counts = Counter(label for _, label in rows)
    p90 = lengths[int(0.9 * (len(lengths) - 1))]
    return (
        f"{name}: {len(rows)} rows, {len(counts)} classes {dict(sorted(counts.items()))}, "
        f"median {statistics.median(lengths):.0f} {analyzer} tokens, 90th percentile {p90}"
    )


def main() -> None:
    """Build every set into ``--out`` and print a summary of each."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/rnnonnx-data"))
    parser.add_argument("--per-class", type=int, default=1000, help="cap per section for the description sets (0: no cap)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    state = args.out / "apt"
    lists = apt_update(state)
    sets: list[tuple[str, list[tuple[str, str]], str]] = []
    for language in LANGUAGES:
        sets.append(
            (
                f"debian-{language}",
                debian_descriptions(lists, language, args.per_class, args.seed),
                "char" if language in ("ja", "ko") else "word",
            )
        )
    sets.append(("kernel-docs", kernel_docs(state), "word"))
    sets.append(("man-de", man_pages_de(state), "word"))
    for name, rows, analyzer in sets:
        write_csv(args.out / f"{name}.csv", rows)
        print(describe(name, rows, analyzer))
    record_sources(args.out)


if __name__ == "__main__":
    main()
