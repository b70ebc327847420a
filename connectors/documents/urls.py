"""Job postings from public URLs: fetched with httpx, read with trafilatura and schema.org JSON-LD.

`fetch(url)` refuses anything but http(s), follows at most `max_redirects` redirects, gives up
after `timeout` seconds (connect, read, and the whole body), and stops reading past `max_bytes`.
`parse_posting(html, url)` takes title, location and description from the page's `JobPosting`
JSON-LD where it has one, else from the page's main text (trafilatura).
"""

from __future__ import annotations

import html as html_lib
import json
import re
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from connectors.documents.errors import DocumentError

USER_AGENT = "bulkops-job-import/1.0 (+https://github.com/bulkops)"
JSONLD = re.compile(r"<script[^>]+type\s*=\s*[\"']application/ld\+json[\"'][^>]*>(.*?)</script>", re.I | re.S)
TAGS = re.compile(r"<[^>]+>")


@dataclass(frozen=True)
class Page:
    url: str
    final_url: str
    body: bytes
    content_type: str


@dataclass
class Posting:
    title: str | None
    location: str | None
    description: str
    from_jsonld: bool


def fetch(url: str, *, timeout: float = 15.0, max_bytes: int = 5 * 1024 * 1024, max_redirects: int = 5) -> Page:
    """The page at URL, or DocumentError("fetch_failed", why)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise DocumentError("fetch_failed", f"{url}: only http and https URLs are fetched, not {scheme or 'this'}")
    deadline = time.monotonic() + timeout
    current = url
    try:
        with httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT, "Accept": "text/html,application/xhtml+xml"},
        ) as client:
            for _ in range(max_redirects + 1):
                with client.stream("GET", current) as resp:
                    if resp.is_redirect:
                        nxt = resp.headers.get("location")
                        if not nxt:
                            raise DocumentError("fetch_failed", f"{url}: a redirect without a Location")
                        current = str(resp.url.join(nxt))
                        if urlsplit(current).scheme.lower() not in ("http", "https"):
                            raise DocumentError("fetch_failed", f"{url}: redirected to a non-http URL {current}")
                        continue
                    if resp.status_code >= 400:
                        raise DocumentError("fetch_failed", f"{url}: the server answered HTTP {resp.status_code}")
                    declared = resp.headers.get("content-length")
                    if declared and declared.isdigit() and int(declared) > max_bytes:
                        raise DocumentError(
                            "too_large",
                            f"{url}: the page has {int(declared):,} bytes, more than the {max_bytes:,} allowed",
                        )
                    chunks, size = [], 0
                    for chunk in resp.iter_bytes():
                        size += len(chunk)
                        if size > max_bytes:
                            raise DocumentError(
                                "too_large", f"{url}: the page is larger than the {max_bytes:,} bytes allowed"
                            )
                        if time.monotonic() > deadline:
                            raise DocumentError("timeout", f"{url}: the page took more than {timeout:.0f} s to arrive")
                        chunks.append(chunk)
                    return Page(url, current, b"".join(chunks), resp.headers.get("content-type", ""))
            raise DocumentError("fetch_failed", f"{url}: more than {max_redirects} redirects (a redirect loop?)")
    except httpx.TimeoutException:
        raise DocumentError("timeout", f"{url}: no answer within {timeout:.0f} s") from None
    except httpx.HTTPError as exc:
        raise DocumentError("fetch_failed", f"{url}: {type(exc).__name__}: {exc}"[:500]) from None


def _postings(data) -> list[dict]:
    if isinstance(data, list):
        return [p for item in data for p in _postings(item)]
    if not isinstance(data, dict):
        return []
    if "@graph" in data:
        return _postings(data["@graph"])
    kind = data.get("@type")
    kinds = kind if isinstance(kind, list) else [kind]
    return [data] if "JobPosting" in kinds else []


def _location(p: dict) -> str | None:
    loc = p.get("jobLocation")
    locs = loc if isinstance(loc, list) else [loc]
    out = []
    for item in locs:
        if not isinstance(item, dict):
            continue
        addr = item.get("address")
        if isinstance(addr, str):
            out.append(addr)
        elif isinstance(addr, dict):
            parts = [addr.get(k) for k in ("addressLocality", "addressRegion", "addressCountry")]
            parts = [x.get("name") if isinstance(x, dict) else x for x in parts]
            out.append(", ".join(str(x) for x in parts if x))
    if not out and str(p.get("jobLocationType", "")).upper() == "TELECOMMUTE":
        return "Remote"
    return "; ".join(x for x in out if x) or None


def _text(value) -> str:
    text = html_lib.unescape(TAGS.sub("\n", str(value or "")))
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def parse_posting(html: str, url: str) -> Posting:
    """Title, location and description of a posting page."""
    for block in JSONLD.findall(html):
        try:
            data = json.loads(block.strip())
        except ValueError:
            continue
        for p in _postings(data):
            title = _text(p.get("title")) or None
            return Posting(title, _location(p), _text(p.get("description")), True)
    import trafilatura

    text = trafilatura.extract(html, url=url, include_comments=False, include_tables=True) or ""
    meta = trafilatura.extract_metadata(html, default_url=url)
    title = meta.title if meta is not None and meta.title else None
    if not text.strip():
        raise DocumentError("no_text", f"{url}: the page has no main text")
    from connectors.documents import job_description

    parsed = job_description.parse(text)
    return Posting(title or parsed.title, parsed.location, text, False)
