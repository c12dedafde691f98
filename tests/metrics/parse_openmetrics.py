"""Parses an OpenMetrics exposition from stdin with the Prometheus project's own parser
(prometheus-client, pinned in .ci/run), which refuses anything the format does not allow.
Prints {family name: type} as JSON; exits non-zero with the parser's message otherwise."""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

families = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    families[family.name] = family.type
print(json.dumps(families))
