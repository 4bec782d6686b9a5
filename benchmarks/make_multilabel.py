"""Build a multi-label data set from Debian's package tags (debtags) on package descriptions.

Source: the package index of the Debian release APT is configured for, as ``apt-cache
dumpavail`` prints it (Debian's ``Packages`` files: the ``Description`` and ``Tag`` fields of
every binary package; the tags are the debtags vocabulary, https://wiki.debian.org/Debtags).
When APT has also downloaded the English descriptions (``apt-get update -o
Acquire::Languages=en``: ``/var/lib/apt/lists/*_i18n_Translation-en*``), each text is the long
description, matched by ``Description-md5``; otherwise the one-line synopsis.

Labels: each package's tags from the facets ``--facets`` (default ``use`` and ``works-with``),
kept when at least ``--min-count`` packages carry them, then the ``--tags`` most frequent
(default 20). Packages with none of them, and repeated texts (``-dbg``/``-doc`` siblings share
descriptions; a text in both training and test would flatter every model), are left out, so
every row has at least one label and every text is unique.

Writes to ``--out``: ``train.jsonl`` and ``test.jsonl`` (``{"text", "label": [tags]}``, a seeded
80/20 split), ``train.txt`` (the training rows in fastText's ``__label__`` format, for
``rnnonnx train --data train.txt``) and ``tags.json`` (the kept tags and their counts).

    python benchmarks/make_multilabel.py --out /tmp/debtags
"""

from __future__ import annotations

import argparse
import glob
import json
import lzma
import random
import subprocess
from collections import Counter
from pathlib import Path


def stanzas(text: str) -> list[dict[str, str]]:
    """The records of a Debian control file (RFC 822-like): field -> value, continuation lines joined."""
    records, current, key = [], {}, None
    for line in text.splitlines():
        if not line.strip():
            if current:
                records.append(current)
            current, key = {}, None
        elif line[0] in " \t" and key:
            current[key] += "\n" + line[1:]
        elif ":" in line:
            key, _, value = line.partition(":")
            current[key] = value.strip()
    if current:
        records.append(current)
    return records


def long_descriptions() -> dict[str, str]:
    """``Description-md5`` -> the English long description, from APT's downloaded Translation-en files."""
    found: dict[str, str] = {}
    for path in glob.glob("/var/lib/apt/lists/*_i18n_Translation-en*"):
        if path.endswith(".lz4"):
            raw = subprocess.run(["lz4cat", path], capture_output=True, check=True).stdout
        elif path.endswith(".xz"):
            raw = lzma.decompress(Path(path).read_bytes())
        else:
            raw = Path(path).read_bytes()
        for record in stanzas(raw.decode("utf-8", "replace")):
            if "Description-md5" in record and "Description-en" in record:
                found[record["Description-md5"]] = record["Description-en"]
    return found


def clean(description: str) -> str:
    """A description as one text: lines joined, Debian's ``.`` paragraph marks dropped."""
    return " ".join(line.strip() for line in description.splitlines() if line.strip() not in ("", ".")).strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--facets", default="use,works-with")
    parser.add_argument("--tags", type=int, default=20, help="keep the N most frequent tags")
    parser.add_argument("--min-count", type=int, default=50)
    parser.add_argument("--test", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    facets = tuple(f"{facet.strip()}::" for facet in args.facets.split(","))
    packages = stanzas(subprocess.run(["apt-cache", "dumpavail"], capture_output=True, text=True, check=True).stdout)
    longer = long_descriptions()
    rows: dict[str, set[str]] = {}
    for package in packages:
        tags = {t.strip() for t in package.get("Tag", "").replace("\n", " ").split(",")}
        tags = {t for t in tags if t.startswith(facets) and not t.endswith("::TODO")}
        text = clean(longer.get(package.get("Description-md5", ""), package.get("Description", "")))
        if text and tags:
            rows.setdefault(text, set()).update(tags)
    counts = Counter(t for tags in rows.values() for t in tags)
    kept = [t for t, n in counts.most_common() if n >= args.min_count][: args.tags]
    data = sorted((text, sorted(tags & set(kept))) for text, tags in rows.items() if tags & set(kept))
    random.Random(args.seed).shuffle(data)
    cut = round(len(data) * (1 - args.test))
    args.out.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", data[:cut]), ("test", data[cut:])):
        with open(args.out / f"{name}.jsonl", "w", encoding="utf-8") as handle:
            for text, labels in part:
                handle.write(json.dumps({"text": text, "label": labels}, ensure_ascii=False) + "\n")
    with open(args.out / "train.txt", "w", encoding="utf-8") as handle:
        for text, labels in data[:cut]:
            handle.write(" ".join(f"__label__{t}" for t in labels) + " " + " ".join(text.split()) + "\n")
    summary = {"tags": {t: counts[t] for t in kept}, "rows": len(data), "train": cut, "test": len(data) - cut}
    summary["long_descriptions"] = bool(longer)
    (args.out / "tags.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
