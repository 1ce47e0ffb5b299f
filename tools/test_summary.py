#!/usr/bin/env python3
"""Counts test cases from Bazel's test.xml files and prints "N passed, N failed".

    test_summary.py --testlogs=DIR [--cuda=passed|failed|skipped] //pkg:test ...

A test target without results (it failed to build, or crashed before writing them) counts as
one failed case. Skipped cases are reported on their own line. Exit status: 1 if anything failed.
"""
import argparse
import os
import sys
import xml.etree.ElementTree as ElementTree


def count_target(testlogs, label):
    """Returns (passed, failed, skipped, failure_names) for one test target."""
    package, name = label.lstrip("/").split(":")
    path = os.path.join(testlogs, package, name, "test.xml")
    if not os.path.exists(path):
        return 0, 1, 0, [f"{label}: no results (it failed to build or did not run)"]
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as error:
        return 0, 1, 0, [f"{label}: unreadable results ({error})"]
    passed = failed = skipped = 0
    failures = []
    for case in root.iter("testcase"):
        case_name = f"{label} {case.get('classname', '')}.{case.get('name', '')}"
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
            failures.append(case_name)
        elif (case.find("skipped") is not None or case.get("result") == "skipped"
              or case.get("status") == "notrun"):
            skipped += 1
        else:
            passed += 1
    if passed + failed + skipped == 0:
        return 0, 1, 0, [f"{label}: ran no test cases"]
    return passed, failed, skipped, failures


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--testlogs", required=True)
    parser.add_argument("--cuda", default="skipped", choices=["passed", "failed", "skipped"])
    parser.add_argument("--seconds", type=int, default=0)
    parser.add_argument("targets", nargs="*")
    args = parser.parse_args()

    passed = failed = skipped = 0
    failures = []
    for label in args.targets:
        p, f, s, names = count_target(args.testlogs, label)
        passed, failed, skipped = passed + p, failed + f, skipped + s
        failures += names
    if args.cuda == "passed":
        passed += 1
    elif args.cuda == "failed":
        failed += 1
        failures.append("CUDA targets failed to compile (bazel build --config=cuda)")

    print()
    print(f"test targets: {len(args.targets)}; CUDA compile: {args.cuda}; "
          f"wall time: {args.seconds} s")
    for name in failures:
        print(f"FAILED: {name}")
    if skipped:
        print(f"{skipped} skipped")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
