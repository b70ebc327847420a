"""The API's curl example (README, docs/api.md), run as written with the URL and token pointed at a local server."""

from __future__ import annotations

import json
import shutil
import subprocess

import httpx

from tests.api.helpers import wait_for
from tests.faults import skip_unless

# the create call exactly as the API's clients write it, against the hosted API
CURL_EXAMPLE = """\
curl -X POST https://api.driftwoodapp.com/api/bulk-jobs-create \\
  -H "Authorization: Bearer YOUR_TOKEN" \\
  -H "Content-Type: application/json" \\
  -d '{
    "entity_type": "contacts",
    "operation": "delete",
    "entity_ids": [
      "550e8400-e29b-41d4-a716-446655440000",
      "550e8400-e29b-41d4-a716-446655440001",
      "550e8400-e29b-41d4-a716-446655440002"
    ]
  }'"""


def test_the_curl_example_works_against_a_local_server(base_url: str, token: str, client: httpx.Client) -> None:
    skip_unless(shutil.which("curl") is not None, "curl is not installed")
    command = CURL_EXAMPLE.replace("https://api.driftwoodapp.com", base_url).replace("YOUR_TOKEN", token)
    out = subprocess.run(
        ["bash", "-c", command + " --silent --show-error"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["ok"] is True, body
    job = body["result"]
    assert (job["entity_type"], job["operation"], job["total_count"]) == ("candidates", "delete", 3)

    # the example's ids exist in no account: each is recorded as not found, so every record failed
    done = wait_for(client, job["id"])
    assert (done["status"], done["processed_count"], done["failed_count"]) == ("failed", 3, 3)
    assert done["error_message"] == "all 3 records failed: not found (3)"

    got = subprocess.run(
        ["curl", "--silent", "--show-error", f"{base_url}/api/bulk-jobs-get?id={job['id']}", "-H", f"Authorization: Bearer {token}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert json.loads(got.stdout) == {"ok": True, "result": done}
