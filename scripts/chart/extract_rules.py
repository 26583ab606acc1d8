"""Prints the rule groups of the PrometheusRule in a rendered chart as a Prometheus rule file.

Usage: extract_rules.py RENDERED.yaml > rules.yaml (then `promtool check rules rules.yaml`).
"""
import sys

import yaml


def main(path):
    with open(path) as f:
        rules = [d for d in yaml.safe_load_all(f) if d and d.get("kind") == "PrometheusRule"]
    if len(rules) != 1:
        sys.exit(f"{path}: expected one PrometheusRule, found {len(rules)}")
    yaml.safe_dump({"groups": rules[0]["spec"]["groups"]}, sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main(sys.argv[1])
