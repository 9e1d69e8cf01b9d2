"""The checks the interop scripts share: every check is counted and every failure kept, so one
run reports all that is wrong rather than the first thing."""
import sys

_failures = []
_count = 0


def check(what, actual, expected):
    global _count
    _count += 1
    if actual != expected:
        _failures.append(f"{what}: expected {expected!r}, got {actual!r}")


def report(who, address):
    """Exits 1 with the failures on stderr, or prints how many checks held."""
    if _failures:
        for failure in _failures:
            print(f"FAIL {failure}", file=sys.stderr)
        sys.exit(1)
    print(f"{who}: all {_count} checks hold against {address}")
