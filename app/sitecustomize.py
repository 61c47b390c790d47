"""Loaded by every Python process in the image (PYTHONPATH holds this directory): never send a request for the
container's own loopback address through a proxy.

Corporate VPCs often set HTTP_PROXY for the task without NO_PROXY; Python's urllib then sends even
http://127.0.0.1:8080/health to the proxy, and the container health check (a `python -c` urllib call) fails
against a healthy server. This adds the loopback names to NO_PROXY/no_proxy, keeping whatever is already there.
"""

import os

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _bypass_loopback() -> None:
    current = os.environ.get("no_proxy") or os.environ.get("NO_PROXY") or ""
    entries = [entry.strip() for entry in current.split(",") if entry.strip()]
    if "*" in entries:
        return
    merged = ",".join(entries + [host for host in LOOPBACK if host not in entries])
    # urllib reads both spellings and lets the lowercase one win; curl and requests read them too.
    os.environ["no_proxy"] = os.environ["NO_PROXY"] = merged


_bypass_loopback()
