"""Merges the reports of an Autobahn run split into parts (one wstest process per part).

Usage: merge.py OUT PART...  reads OUT/PART/index.json for each part and writes
OUT/index.json, holding every agent's cases from all parts.
"""
import json
import sys


def main():
    out, parts = sys.argv[1], sys.argv[2:]
    merged = {}
    for part in parts:
        with open("%s/%s/index.json" % (out, part)) as f:
            for agent, cases in json.load(f).items():
                merged.setdefault(agent, {}).update(cases)
    with open("%s/index.json" % out, "w") as f:
        json.dump(merged, f)


if __name__ == "__main__":
    main()
