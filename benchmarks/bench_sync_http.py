"""HTTP source benchmark: our `HttpConnector` (hand-written pagination) vs dlt's REST client and
`rest_api` source, reading the same Greenhouse-shaped API from a local server.

    .venv/bin/python benchmarks/bench_sync_http.py --candidates 20000 --dlt-python /path/to/venv-with-dlt/bin/python

The server answers `GET /v1/candidates` like Greenhouse Harvest: a JSON array per page,
`per_page` 500, the next page in the `Link` header, basic auth. Each reader fetches every page
and turns the records into rows of the columns a sync maps (id, names, first email, updated_at):
ours as Arrow batches, dlt as the dicts its paginator and its `rest_api` resource yield. dlt runs in
the interpreter given by --dlt-python (it is not a dependency of bulkops). Prints figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PER_PAGE = 500


def serve(n: int) -> tuple[ThreadingHTTPServer, str]:
    records = [
        {
            "id": 1000 + i,
            "first_name": f"Grace{i}",
            "last_name": f"Hopper{i}",
            "updated_at": f"2026-01-01T00:00:{i % 60:02d}Z",
            "email_addresses": [{"value": f"grace{i}@example.com", "type": "personal"}],
            "phone_numbers": [{"value": "+1 555 0100", "type": "mobile"}],
            "applications": [{"id": 50000 + i, "status": "active", "current_stage": {"name": "Interview"}}],
        }
        for i in range(n)
    ]
    pages = [json.dumps(records[i : i + PER_PAGE]).encode() for i in range(0, n, PER_PAGE)]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            q = {k: v[-1] for k, v in parse_qs(urlparse(self.path).query).items()}
            page = int(q.get("page", 1))
            body = pages[page - 1] if page <= len(pages) else b"[]"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if page < len(pages):
                host = self.headers["Host"]
                self.send_header(
                    "Link", f'<http://{host}/v1/candidates?per_page={PER_PAGE}&page={page + 1}>; rel="next"'
                )
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"


OURS_SCRIPT = rf"""
import sys, time
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
from connectors.sync import ats
t = time.perf_counter()
connector = ats.greenhouse("candidates", "token", base_url=sys.argv[1])
rows = sum(b.table.num_rows for b in connector.read_batches(None, 10_000))
print(rows, connector.requests, time.perf_counter() - t)
"""

DLT_SCRIPT = r"""
import sys, time
base, n = sys.argv[1], int(sys.argv[2])
from dlt.sources.helpers.rest_client import RESTClient
from dlt.sources.helpers.rest_client.auth import HttpBasicAuth
from dlt.sources.helpers.rest_client.paginators import HeaderLinkPaginator
t = time.perf_counter()
client = RESTClient(base_url=base, auth=HttpBasicAuth("token", ""), paginator=HeaderLinkPaginator())
rows = 0
for page in client.paginate("/candidates", params={"per_page": 500}):
    for r in page:
        row = {"id": r["id"], "first_name": r["first_name"], "last_name": r["last_name"],
               "email": (r.get("email_addresses") or [{}])[0].get("value"), "updated_at": r["updated_at"]}
        rows += 1
client_s = time.perf_counter() - t
from dlt.sources.rest_api import rest_api_source
t = time.perf_counter()
source = rest_api_source({
    "client": {"base_url": base, "auth": {"type": "http_basic", "username": "token", "password": ""},
               "paginator": {"type": "header_link"}},
    "resources": [{"name": "candidates", "endpoint": {"path": "candidates", "params": {"per_page": 500}}}],
})
rows2 = sum(1 for _ in source.resources["candidates"])
source_s = time.perf_counter() - t
print(f"{rows} {client_s} {rows2} {source_s}")
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--candidates", type=int, default=20_000)
    ap.add_argument("--dlt-python", default=None, help="a Python with dlt installed")
    args = ap.parse_args()
    server, base = serve(args.candidates)
    try:
        from connectors.sync import ats

        t = time.perf_counter()
        connector = ats.greenhouse("candidates", "token", base_url=base)
        rows = sum(b.table.num_rows for b in connector.read_batches(None, 10_000))
        ours = time.perf_counter() - t
        print(
            f"bulkops HttpConnector : {rows} rows, {connector.requests} requests in {ours:.2f}s = {rows / ours:,.0f} rows/s"
        )
        if args.dlt_python:
            out = subprocess.run(
                [args.dlt_python, "-c", DLT_SCRIPT, base, str(args.candidates)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            n1, s1, n2, s2 = int(out[0]), float(out[1]), int(out[2]), float(out[3])
            print(f"dlt RESTClient        : {n1} rows in {s1:.2f}s = {n1 / s1:,.0f} rows/s")
            print(f"dlt rest_api resource : {n2} rows in {s2:.2f}s = {n2 / s2:,.0f} rows/s")
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
