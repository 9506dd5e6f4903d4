#!/usr/bin/env python3
"""Summarize an Autobahn TestSuite report and compare it with the committed expectation.

usage: summarize.py INDEX_JSON AGENT EXPECTED_JSON [--update]

Exits non-zero when any case is not OK (or INFORMATIONAL where the suite itself says so),
or when the summary differs from EXPECTED_JSON. With --update, rewrites EXPECTED_JSON.
"""
import json
import sys

ACCEPTED = {"OK", "INFORMATIONAL"}


def case_key(case_id):
    return [int(part) for part in case_id.split(".")]


def main():
    index_path, agent, expected_path = sys.argv[1:4]
    update = "--update" in sys.argv[4:]
    with open(index_path) as f:
        index = json.load(f)
    if agent not in index:
        sys.exit("no results for agent %r in %s" % (agent, index_path))
    results = index[agent]
    summary = {}
    bad = []
    for case_id in sorted(results, key=case_key):
        r = results[case_id]
        summary[case_id] = {"behavior": r["behavior"], "behaviorClose": r["behaviorClose"]}
        if r["behavior"] not in ACCEPTED or r["behaviorClose"] not in ACCEPTED:
            bad.append("%s: behavior=%s close=%s (remote close code %s)" % (
                case_id, r["behavior"], r["behaviorClose"], r.get("remoteCloseCode")))
    counts = {}
    for r in summary.values():
        counts[r["behavior"]] = counts.get(r["behavior"], 0) + 1
    print("autobahn %s: %d cases: %s" % (
        agent, len(summary), ", ".join("%s %d" % kv for kv in sorted(counts.items()))))
    for line in bad:
        print("  NOT OK " + line)
    text = json.dumps(summary, indent=1, sort_keys=False) + "\n"
    if update:
        with open(expected_path, "w") as f:
            f.write(text)
        print("wrote " + expected_path)
    else:
        try:
            with open(expected_path) as f:
                expected = json.load(f)
        except FileNotFoundError:
            expected = None
        if expected != summary:
            print("results differ from " + expected_path + ":")
            exp = expected or {}
            for case_id in sorted(set(exp) | set(summary), key=case_key):
                if exp.get(case_id) != summary.get(case_id):
                    print("  %s: expected %s, got %s" % (case_id, exp.get(case_id), summary.get(case_id)))
            bad.append("diff")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
