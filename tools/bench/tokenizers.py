#!/usr/bin/env python3
"""Tokenizer benchmark: moelab's BPE family against sentencepiece (the peer), side by side.

Usage: tools/bench/tokenizers.py [--corpus data/brown/train.txt] [--vocab 8000 32000]
                                 [--out runs/bench-tokenizers] [--moelab build/bin/moelab]

For each vocabulary size, in one run on the same corpus and machine, it times
  training:  moelab bpe, moelab scaffold-bpe, sentencepiece --model_type=bpe (spm_train)
  encoding of the whole corpus to ids on disk: moelab bpe / lbpe / scaffold-bpe on 1 thread and on
             every core, sentencepiece (spm_encode, single-threaded)
and prints the ratios to sentencepiece (speedup = sentencepiece time / moelab time). Every time is
the wall time of the command, process start and model loading included (moelab's binary loads
LibTorch and its plugins: about 0.7 s on the CI machines), best of --repeat runs; for moelab the
encode phase alone (the throughput it reports) is listed too.
moelab's encodings are decoded back and compared with the corpus (lossless check).

sentencepiece is configured to be comparable: identity normalization (no NFKC), full character
coverage, no sentence sampling and no length limit, so it trains on the same text and encodes
all of it.

Writes OUT/results.json and OUT/results.md.
"""
import argparse
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time


def timed(command, repeat, stdin=None, stdout=None, report=None):
    """Best wall time of `command` over `repeat` runs; raises on failure. With `report` (a dict),
    also keeps the best encode-phase throughput moelab prints on stderr ("(12.3 MB/s")."""
    best = None
    for _ in range(repeat):
        if stdin is not None:
            stdin.seek(0)
        if stdout is not None:
            stdout.seek(0)
            stdout.truncate()
        start = time.perf_counter()
        done = subprocess.run(command, check=True, stdout=stdout or subprocess.DEVNULL,
                              stderr=subprocess.PIPE, stdin=stdin, text=True)
        elapsed = time.perf_counter() - start
        best = elapsed if best is None else min(best, elapsed)
        match = re.search(r"\(([0-9.]+) MB/s", done.stderr)
        if report is not None and match:
            report["mb_per_s"] = max(report.get("mb_per_s", 0.0), float(match.group(1)))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="data/brown/train.txt")
    parser.add_argument("--vocab", type=int, nargs="+", default=[8000, 32000])
    parser.add_argument("--out", default="runs/bench-tokenizers")
    parser.add_argument("--moelab", default="build/bin/moelab")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    for tool in ("spm_train", "spm_encode"):
        if shutil.which(tool) is None:
            print(f"{tool} not found: install Debian's sentencepiece package "
                  "(tools/setup.sh does)", file=sys.stderr)
            return 2
    corpus = pathlib.Path(args.corpus)
    if not corpus.is_file():
        print(f"{corpus}: no such file (run `bash tools/setup.sh`)", file=sys.stderr)
        return 2
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    corpus_bytes = corpus.stat().st_size
    cores = os.cpu_count() or 1
    moelab = args.moelab

    results = {"corpus": str(corpus), "corpus_bytes": corpus_bytes, "cores": cores,
               "repeat": args.repeat, "vocabularies": []}
    for vocab in args.vocab:
        print(f"== vocabulary {vocab}", flush=True)
        row = {"vocab": vocab, "train_s": {}, "encode_s": {}}
        files = {name: out / f"{name}-{vocab}.json" for name in ("bpe", "scaffold-bpe")}
        for name, path in files.items():
            row["train_s"][f"moelab {name}"] = timed(
                [moelab, "tokenizer", "train", "--algo", name, "--vocab", str(vocab),
                 str(corpus), "-o", str(path)], args.repeat)
        spm_prefix = out / f"spm-{vocab}"
        row["train_s"]["sentencepiece bpe"] = timed(
            ["spm_train", f"--input={corpus}", f"--model_prefix={spm_prefix}",
             f"--vocab_size={vocab}", "--model_type=bpe", "--character_coverage=1.0",
             "--normalization_rule_name=identity", "--input_sentence_size=0",
             "--max_sentence_length=1000000", "--minloglevel=2"], args.repeat)

        ids = out / "ids.txt"
        encoders = {
            "moelab bpe": ["--threads", "1", str(files["bpe"])],
            "moelab lbpe": ["--threads", "1", "--as", "lbpe", str(files["bpe"])],
            "moelab scaffold-bpe": ["--threads", "1", str(files["scaffold-bpe"])],
            f"moelab bpe ({cores} threads)": ["--threads", str(cores), str(files["bpe"])],
        }
        row["encode_phase_mb_per_s"] = {}
        for label, options in encoders.items():
            report = {}
            row["encode_s"][label] = timed(
                [moelab, "tokenizer", "encode", *options, str(corpus), "-o", str(ids)], args.repeat,
                report=report)
            row["encode_phase_mb_per_s"][label] = report.get("mb_per_s")
            tokenizer = options[-1]
            decode = [moelab, "tokenizer", "decode", tokenizer, str(ids), "-o", str(out / "back.txt")]
            if "--as" in options:
                decode[3:3] = ["--as", "lbpe"]
            subprocess.run(decode, check=True, stderr=subprocess.DEVNULL)
            if (out / "back.txt").read_bytes() != corpus.read_bytes():
                print(f"{label}: decoding its ids does not give the corpus back", file=sys.stderr)
                return 1
            row.setdefault("tokens", {})[label] = sum(len(l.split()) for l in ids.open())
        with corpus.open("rb") as text, ids.open("w+b") as sink:
            row["encode_s"]["sentencepiece bpe"] = timed(
                ["spm_encode", f"--model={spm_prefix}.model", "--output_format=id"], args.repeat,
                stdin=text, stdout=sink)
        row.setdefault("tokens", {})["sentencepiece bpe"] = sum(len(l.split()) for l in ids.open())

        peer_train = row["train_s"]["sentencepiece bpe"]
        peer_encode = row["encode_s"]["sentencepiece bpe"]
        row["train_speedup"] = {k: peer_train / v for k, v in row["train_s"].items()}
        row["encode_speedup"] = {k: peer_encode / v for k, v in row["encode_s"].items()}
        results["vocabularies"].append(row)

    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [f"Corpus {corpus} ({corpus_bytes / 1e6:.2f} MB), {cores} cores, best of "
             f"{args.repeat}; speedup = sentencepiece time / time.", ""]
    for row in results["vocabularies"]:
        lines += [f"**Vocabulary {row['vocab']}**", "",
                  "| task | tool | wall s | MB/s (wall) | MB/s (encode phase) | tokens | "
                  "speedup vs sentencepiece (wall) |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
        for label, seconds in row["train_s"].items():
            lines.append(f"| train | {label} | {seconds:.2f} | {corpus_bytes / 1e6 / seconds:.1f} | | | "
                         f"{row['train_speedup'][label]:.2f}x |")
        for label, seconds in row["encode_s"].items():
            phase = row["encode_phase_mb_per_s"].get(label)
            lines.append(f"| encode | {label} | {seconds:.2f} | {corpus_bytes / 1e6 / seconds:.1f} | "
                         f"{phase if phase else '-'} | {row['tokens'][label]} | "
                         f"{row['encode_speedup'][label]:.2f}x |")
        lines.append("")
    table = "\n".join(lines)
    (out / "results.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
