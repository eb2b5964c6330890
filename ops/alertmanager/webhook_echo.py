"""Example Alertmanager webhook receiver: prints one line per alert of each notification.

    python ops/alertmanager/webhook_echo.py [--host 127.0.0.1] [--port 5001]

Standard library only, so it runs in a bare python image. Replace it with a real on-call
integration; it exists to show what Alertmanager sends and to see alerts arrive.
"""

from __future__ import annotations

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def format_notification(path: str, payload: dict[str, Any]) -> list[str]:
    """One readable line per alert: receiver path, status, severity, name, labels, summary."""
    lines = []
    for alert in payload.get("alerts", []):
        labels = dict(alert.get("labels", {}))
        name = labels.pop("alertname", "?")
        severity = labels.pop("severity", "-")
        where = " ".join(f"{k}={v}" for k, v in sorted(labels.items()))
        summary = alert.get("annotations", {}).get("summary", "")
        status = alert.get("status", payload.get("status", "?")).upper()
        lines.append(f"{path} [{status}] {severity} {name} {where} :: {summary}")
    return lines


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        try:
            payload = json.loads(self.rfile.read(length))
        except json.JSONDecodeError:
            self.send_error(400, "body is not JSON")
            return
        for line in format_notification(self.path, payload):
            print(line, flush=True)
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request access log; the alert lines are the output."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((args.host, args.port), Receiver)
    print(f"listening for Alertmanager webhooks on http://{args.host}:{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
