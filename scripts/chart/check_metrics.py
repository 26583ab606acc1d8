"""Cross-checks the dashboard, the alert rules and the runbook against the relay's metrics.

Fails (exit 1, one line per problem) when:
- the dashboard JSON is malformed for Grafana's sidecar (no uid/title, duplicate panel ids,
  panels off the 24-column grid, a query panel without queries);
- a dashboard query or an alert expression names a bp_relay_* metric the relay does not expose;
- an alert lacks a severity, summary, description, a `for:` or a runbook_url whose anchor is a
  heading of docs/runbook.md;
- a metric selector of an alert lacks `job="bp-relay"` (the token the chart rewrites into the
  release's job and namespace, so that releases do not see each other's series);
- an alert has no promtool unit test;
- values.schema.json disagrees with the rules: every alert must be a possible disabledAlerts
  entry and overrides key, and exactly the alerts with a `# threshold` value accept `threshold`.
"""
import argparse
import json
import re
import sys

import yaml

METRIC = re.compile(r"\bbp_relay_[a-z0-9_]+\b")
SEVERITIES = {"critical", "warning", "info"}


def known_metrics(path):
    names = set()
    for line in open(path):
        line = line.split("#", 1)[0].split()
        if not line:
            continue
        names.add(line[0])
        if line[1:] == ["histogram"]:
            names.update(line[0] + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names


def github_anchor(heading):
    """The anchor GitHub gives a Markdown heading."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def check_dashboard(path, metrics, problems):
    dash = json.load(open(path))
    for key in ("uid", "title", "panels", "schemaVersion"):
        if key not in dash:
            problems.append(f"dashboard: missing {key}")
    ids = set()
    exprs = 0
    for panel in dash.get("panels", []):
        pid = panel.get("id")
        if pid in ids:
            problems.append(f"dashboard: duplicate panel id {pid}")
        ids.add(pid)
        pos = panel.get("gridPos", {})
        if pos.get("x", 0) + pos.get("w", 0) > 24:
            problems.append(f"dashboard: panel {panel.get('title')!r} is wider than the grid")
        if panel.get("type") == "row":
            continue
        targets = panel.get("targets") or []
        if not targets:
            problems.append(f"dashboard: panel {panel.get('title')!r} has no query")
        for target in targets:
            exprs += 1
            for name in METRIC.findall(target.get("expr", "")):
                if name not in metrics:
                    problems.append(f"dashboard: panel {panel.get('title')!r} uses unknown metric {name}")
    for var in dash.get("templating", {}).get("list", []):
        query = var.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query)
        for name in METRIC.findall(text):
            if name not in metrics:
                problems.append(f"dashboard: variable {var.get('name')} uses unknown metric {name}")
    return len(ids), exprs


SELECTOR = re.compile(r"\b(bp_relay_[a-z0-9_]+|up)\b(\{[^}]*\})?")


def check_rules(path, metrics, runbook, tests, schema, problems):
    anchors = {github_anchor(m) for m in re.findall(r"^#{1,6} (.+)$", open(runbook).read(), re.M)}
    tested = set(re.findall(r"alertname:\s*(\w+)", open(tests).read()))
    rule_values = json.load(open(schema))["properties"]["metrics"]["properties"]["prometheusRule"]["properties"]
    disableable = set(rule_values["disabledAlerts"]["items"]["enum"])
    overrides = rule_values["overrides"]["properties"]
    alerts = 0
    for group in yaml.safe_load(open(path))["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert")
            if not name:
                continue
            alerts += 1
            for metric in METRIC.findall(rule["expr"]):
                if metric not in metrics:
                    problems.append(f"rules: {name} uses unknown metric {metric}")
            if rule.get("labels", {}).get("severity") not in SEVERITIES:
                problems.append(f"rules: {name} has no severity in {sorted(SEVERITIES)}")
            annotations = rule.get("annotations", {})
            for key in ("summary", "description", "runbook_url"):
                if not annotations.get(key):
                    problems.append(f"rules: {name} has no {key}")
            url = annotations.get("runbook_url", "")
            if "/docs/runbook.md#" not in url:
                problems.append(f"rules: {name} runbook_url does not point into docs/runbook.md")
            elif url.rsplit("#", 1)[1] not in anchors:
                problems.append(f"rules: {name} runbook_url anchor #{url.rsplit('#', 1)[1]} is not a heading of {runbook}")
            if name not in tested:
                problems.append(f"rules: {name} has no promtool unit test in {tests}")
            if "for" not in rule:
                problems.append(f"rules: {name} has no for: (write `for: 0m` and say why when it fires at once)")
            for match in SELECTOR.finditer(rule["expr"]):
                if match.group(1) in ("up",) or match.group(1).startswith("bp_relay_"):
                    if 'job="bp-relay"' not in (match.group(2) or ""):
                        problems.append(f'rules: {name}: {match.group(0)} does not select job="bp-relay"')
            if name not in disableable:
                problems.append(f"rules: {name} is not a metrics.prometheusRule.disabledAlerts value in {schema}")
            if name not in overrides:
                problems.append(f"rules: {name} is not a metrics.prometheusRule.overrides key in {schema}")
            elif ("# threshold" in rule["expr"]) != ("threshold" in overrides[name]["properties"]):
                problems.append(f"rules: {name}: a `# threshold` value in the expression and a threshold override in {schema} go together")
    for name in sorted(set(overrides) - names_in(path)):
        problems.append(f"schema: overrides.{name} is not an alert of {path}")
    return alerts


def names_in(path):
    return {rule.get("alert") for group in yaml.safe_load(open(path))["groups"] for rule in group["rules"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--dashboard", required=True)
    parser.add_argument("--rules", required=True)
    parser.add_argument("--runbook", required=True)
    parser.add_argument("--tests", required=True)
    parser.add_argument("--schema", required=True)
    args = parser.parse_args()
    metrics = known_metrics(args.metrics)
    problems = []
    panels, exprs = check_dashboard(args.dashboard, metrics, problems)
    alerts = check_rules(args.rules, metrics, args.runbook, args.tests, args.schema, problems)
    for problem in problems:
        print(problem)
    print(f"dashboard: {panels} panels, {exprs} queries; rules: {alerts} alerts; {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
