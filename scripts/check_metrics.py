#!/usr/bin/env python3
"""Checks a Prometheus text exposition on stdin with prometheus_client's
parser (an implementation independent of rvsd's) and prints one line per
sample as `name{sorted labels} value`, for the tests to read.
Exits non-zero when the text does not parse."""
import sys

from prometheus_client.parser import text_string_to_metric_families

for family in text_string_to_metric_families(sys.stdin.read()):
    if not family.name.startswith("rvs_"):
        sys.exit(f"metric {family.name} lacks the rvs_ prefix")
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        print(f"{s.name}{{{labels}}} {s.value}")
