#!/usr/bin/env python3
"""Keeps at most N files of a fuzz corpus: those that add the most coverage edges, greedily.

    fuzz/cap_corpus.py CONTROL_FILE N

CONTROL_FILE is the merge control file of a libFuzzer merge over the corpus, which lists every
input and the edges it covers:

    BIN=~/.cache/bp-relay/fuzz-target/x86_64-unknown-linux-gnu/release/TARGET
    $BIN -merge=1 -use_counters=0 -merge_control_file=/tmp/ctl "$(mktemp -d)" fuzz/corpus/TARGET
    fuzz/cap_corpus.py /tmp/ctl 150

After `cargo fuzz cmin` every input still adds an edge, but past a hundred or so most add one
edge in a dependency's parser (a standard header name, a serde_json error): the cap keeps the
corpus small at the cost of those. Prints the share of edges kept and deletes the other files.
"""
import os
import sys


def main(control_file, cap):
    lines = open(control_file).read().split("\n")
    count = int(lines[0])
    files = lines[2 : 2 + count]
    edges = {}
    for line in lines[2 + count :]:
        fields = line.split()
        if fields and fields[0] == "COV":
            edges[int(fields[1])] = set(fields[2:])
    size = {index: os.path.getsize(files[index]) for index in edges}
    every_edge = set().union(*edges.values())
    covered, kept = set(), []
    while len(kept) < cap:
        best = max(edges, key=lambda index: (len(edges[index] - covered), -size[index]))
        if not edges[best] - covered:
            break
        covered |= edges[best]
        kept.append(best)
    for index, path in enumerate(files):
        if index not in kept:
            os.remove(path)
    print(f"kept {len(kept)} of {count} files, {len(covered)} of {len(every_edge)} edges")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
