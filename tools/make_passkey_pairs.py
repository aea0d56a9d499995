#!/usr/bin/env python3
"""Passkey retrieval examples for pretraining (the HARPE experiment, docs/attention.md).

A model of a million parameters trained on a few million tokens of prose never learns to retrieve
a number from its context, so the passkey test (Note [Passkey] in core/eval/long_context.h) reads
0% for every method and cannot tell them apart. These examples, mixed into pretraining as a
`pairs` source, teach retrieval at the short pretraining context; the test then asks whether each
way of extending the context keeps it at longer lengths.

Each example is the test's own prompt: the instruction, filler prose with the needle ("The pass
key is N. Remember it. N is the pass key.") at a random depth, and the question; the response is
" N." (the loss counts the response only). Filler comes from the corpus split of the same name,
so no validation prose is trained on. Keys are random five-digit numbers from a seeded generator.

    python3 tools/make_passkey_pairs.py data/brown data/passkey [--train 20000] [--max-filler 192]
"""

import argparse
import json
import os
import random

INSTRUCTION = ("There is important information hidden inside a lot of irrelevant text. Find it "
               "and memorize it. I will quiz you about the important information there.\n")
QUESTION = "\nWhat is the pass key? The pass key is"


def filler_text(path):
    # One line of prose: blank lines separate documents in the corpus, and an example is one.
    with open(path, encoding="utf-8") as f:
        return " ".join(f.read().split())


def examples(text, count, max_filler, rng):
    for _ in range(count):
        key = str(rng.randrange(10000, 100000))
        needle = f" The pass key is {key}. Remember it. {key} is the pass key. "
        size = rng.randint(0, max_filler)
        start = rng.randrange(0, len(text) - size)
        filler = text[start:start + size]
        at = round(rng.random() * size)
        prompt = INSTRUCTION + filler[:at] + needle + filler[at:] + QUESTION
        yield {"prompt": prompt, "response": f" {key}."}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", help="directory with train.txt, validation.txt, test.txt")
    parser.add_argument("out", help="directory to write train/validation/test.jsonl into")
    parser.add_argument("--train", type=int, default=20000, help="training examples")
    parser.add_argument("--eval", type=int, default=500, help="validation and test examples")
    parser.add_argument("--max-filler", type=int, default=192,
                        help="filler characters at most (uniform from 0)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for split, count in (("train", args.train), ("validation", args.eval), ("test", args.eval)):
        rng = random.Random(f"{args.seed}/{split}")
        text = filler_text(os.path.join(args.corpus, f"{split}.txt"))
        target = os.path.join(args.out, f"{split}.jsonl")
        with open(target + ".tmp", "w", encoding="utf-8") as f:
            for example in examples(text, count, args.max_filler, rng):
                f.write(json.dumps(example) + "\n")
        os.replace(target + ".tmp", target)
        print(f"{target}: {count} examples")


if __name__ == "__main__":
    main()
