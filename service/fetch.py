"""Fetching a query picture from an ``image_url``: only from allowed hosts, never into the service's own network.

A URL a caller sends makes the server connect somewhere: without care, to the cloud's metadata address,
to a database on the private network, or to itself. So a URL is fetched only when

- its scheme is http or https and its host is on the allow-list (``QUALIA_IMAGE_HOSTS``; with none set,
  the hosts the profile's corpus was collected from), compared exactly, and
- every address its host resolves to is public: loopback, private, link-local (the metadata address
  169.254.169.254 among them), multicast, reserved and unspecified addresses are refused unless the
  operator listed that exact host in ``QUALIA_IMAGE_HOSTS`` (a test server on 127.0.0.1, an intranet);

and both checks run again on every redirect (at most ``MAX_REDIRECTS``). The body is read up to
``max_bytes`` (more is a 413) within ``timeout`` seconds for the whole fetch. Each refusal is a
``FetchRefused`` with the HTTP status to answer and a reason a caller can act on.

The check resolves the host, and the HTTP client resolves it again to connect: a DNS answer that
changes in between (rebinding) is not caught. Listing hosts by name keeps that window to the hosts
the operator trusts.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterable
from urllib.parse import urljoin, urlsplit

import httpx

MAX_REDIRECTS = 3


class FetchRefused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved
                or ip.is_unspecified)  # fmt: skip


def check_url(url: str, corpus_hosts: Iterable[str], listed_hosts: Iterable[str]) -> None:
    """FetchRefused unless ``url`` may be fetched: its host is in ``listed_hosts`` (the operator's
    ``QUALIA_IMAGE_HOSTS``) or, with no list, in ``corpus_hosts``; a non-public address only for a
    host the operator listed."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as e:
        raise FetchRefused(400, f"image_url is not a URL: {e}") from e
    if parts.scheme not in ("http", "https") or not host:
        raise FetchRefused(400, "image_url must be an http or https URL with a host")
    listed = {h.strip().lower() for h in listed_hosts if h.strip()}
    allowed = listed or {h.strip().lower() for h in corpus_hosts if h.strip()}
    if host not in allowed:
        raise FetchRefused(403, f"image_url host {host!r} is not on this profile's allow-list "
                                "(QUALIA_IMAGE_HOSTS; by default the hosts its corpus came from)")  # fmt: skip
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
    except (socket.gaierror, UnicodeError) as e:
        raise FetchRefused(400, f"image_url host {host!r} does not resolve") from e
    inner = sorted(a for a in addresses if not _public(a))
    if inner and host not in listed:
        raise FetchRefused(403, f"image_url host {host!r} resolves to a non-public address ({inner[0]}); "
                                "list it in QUALIA_IMAGE_HOSTS to allow it")  # fmt: skip


def fetch_picture(url: str, corpus_hosts: Iterable[str], listed_hosts: Iterable[str], max_bytes: int,
                  timeout: float = 10.0) -> bytes:  # fmt: skip
    """The bytes at ``url``, following at most ``MAX_REDIRECTS`` redirects, each checked (``check_url``)."""
    corpus_hosts, listed_hosts = list(corpus_hosts), list(listed_hosts)
    deadline = time.monotonic() + timeout
    with httpx.Client(follow_redirects=False, trust_env=False,
                      headers={"User-Agent": "qualia (query picture fetch)"}) as client:  # fmt: skip
        for _ in range(MAX_REDIRECTS + 1):
            check_url(url, corpus_hosts, listed_hosts)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FetchRefused(408, "image_url took too long to answer")
            try:
                with client.stream("GET", url, timeout=remaining) as response:
                    if response.is_redirect:
                        url = urljoin(url, response.headers.get("location", ""))
                        continue
                    if response.status_code != 200:
                        raise FetchRefused(400, f"image_url answered HTTP {response.status_code}")
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > max_bytes:
                        raise FetchRefused(413, f"image_url's picture is over the {max_bytes}-byte limit")
                    body = bytearray()
                    for chunk in response.iter_bytes():
                        body += chunk
                        if len(body) > max_bytes:
                            raise FetchRefused(413, f"image_url's picture is over the {max_bytes}-byte limit")
                        if time.monotonic() > deadline:
                            raise FetchRefused(408, "image_url took too long to send its picture")
                    return bytes(body)
            except httpx.TimeoutException as e:
                raise FetchRefused(408, "image_url took too long to answer") from e
            except httpx.HTTPError as e:
                raise FetchRefused(400, f"image_url could not be fetched: {type(e).__name__}") from e
    raise FetchRefused(400, f"image_url redirected more than {MAX_REDIRECTS} times")
