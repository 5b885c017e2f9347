"""Reads a Prometheus text exposition on stdin, parses it with Debian's python3-prometheus-client
(prometheus_client.parser.text_string_to_metric_families, the parser Prometheus' Python client
ships) and prints it as JSON: {family: {"type": ..., "samples": [[name, labels, value], ...]}}.
A text the parser refuses exits with status 1 and the parser's error."""
import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families


def main():
    text = sys.stdin.read()
    out = {}
    try:
        for fam in text_string_to_metric_families(text):
            if fam.name in out:
                raise ValueError("family %s appears twice" % fam.name)
            out[fam.name] = {
                "type": fam.type,
                "help": fam.documentation,
                "samples": [[s.name, s.labels, s.value if math.isfinite(s.value) else str(s.value)] for s in fam.samples],
            }
    except Exception as e:  # the parser's own error, for the test's message
        print("unparsable exposition: %r" % e, file=sys.stderr)
        sys.exit(1)
    json.dump(out, sys.stdout)


main()
