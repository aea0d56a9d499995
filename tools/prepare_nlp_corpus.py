#!/usr/bin/env python3
"""Turn the npm package nlp-corpus (sentences of many kinds of English) into evaluation splits.

Usage: prepare_nlp_corpus.py PACKAGE_DIR OUT_DIR

The package holds builds/doc-0.json .. doc-99.json, each a JSON array of 1000 sentences drawn from
lyrics, TV transcripts, SMS messages, legal text, fiction, forum posts and more: text unlike the
Brown corpus, for out-of-domain evaluation only (a source with validation and test files and no
training file). doc-0 .. doc-4 become validation.txt and doc-5 .. doc-9 test.txt; every 10
sentences make one document (one sentence per line, documents separated by an empty line).
"""
import json
import pathlib
import sys


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    package, out_dir = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, numbers in (("validation", range(0, 5)), ("test", range(5, 10))):
        sentences = []
        for number in numbers:
            file = package / "builds" / f"doc-{number}.json"
            loaded = json.loads(file.read_text(encoding="utf-8"))
            if not isinstance(loaded, list):
                print(f"{file}: expected a JSON array of sentences", file=sys.stderr)
                return 1
            # One line per sentence: line breaks inside a sentence would cut documents.
            sentences += [" ".join(str(s).split()) for s in loaded if str(s).strip()]
        documents = ["\n".join(sentences[i:i + 10]) for i in range(0, len(sentences), 10)]
        tmp = out_dir / f".{split}.txt.tmp"
        tmp.write_text("\n\n".join(documents) + "\n", encoding="utf-8")
        tmp.replace(out_dir / f"{split}.txt")
        print(f"  {split}: {len(documents)} documents, {len(sentences)} sentences")
    return 0


if __name__ == "__main__":
    sys.exit(main())
