"""Domain names used by conditions (``fd.sip.name = "kubernetes.default.svc.cluster.local"``).

Falco keeps a cache filled only by the domains that appear in conditions: each is resolved
(blocking on first use, refreshed later) and an fd's IP matches a domain when it is among that
domain's addresses. Lanner does the same without ever blocking the event path: the first
resolution runs in a background thread, and until it answers the domain has no addresses.
A hosts file (``LANNER_HOSTS_FILE``, default /etc/hosts) is read first, synchronously, so
stand-in addresses and air-gapped nodes work.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
import time
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
REFRESH_SECONDS = 300.0


class DomainTable:
    def __init__(self, hosts_file: str | None = None) -> None:
        self.hosts_file = hosts_file or os.environ.get("LANNER_HOSTS_FILE", "/etc/hosts")
        self._addrs: dict[str, frozenset[IPAddress]] = {}
        self._names: dict[IPAddress, str] = {}
        self._resolved_at: dict[str, float] = {}
        self._lock = threading.Lock()
        self._hosts: dict[str, frozenset[IPAddress]] = self._read_hosts()

    def _read_hosts(self) -> dict[str, frozenset[IPAddress]]:
        out: dict[str, set[IPAddress]] = {}
        try:
            with open(self.hosts_file, encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    parts = line.split("#", 1)[0].split()
                    if len(parts) < 2:
                        continue
                    try:
                        ip = ipaddress.ip_address(parts[0])
                    except ValueError:
                        continue
                    for name in parts[1:]:
                        out.setdefault(name.lower(), set()).add(ip)
        except OSError:
            pass
        return {k: frozenset(v) for k, v in out.items()}

    def watch(self, domain: str) -> None:
        """Start tracking a domain a condition uses; resolution happens in the background."""
        domain = domain.lower()
        with self._lock:
            if domain in self._addrs:
                return
            self._addrs[domain] = self._hosts.get(domain, frozenset())
            for ip in self._addrs[domain]:
                self._names.setdefault(ip, domain)
        if domain not in self._hosts:
            threading.Thread(target=self._resolve, args=(domain,), name=f"dns:{domain}", daemon=True).start()

    def _resolve(self, domain: str) -> None:
        try:
            infos = socket.getaddrinfo(domain, None, proto=socket.IPPROTO_TCP)
            addrs = frozenset(ipaddress.ip_address(str(i[4][0]).split("%")[0]) for i in infos)
        except (OSError, UnicodeError, ValueError):
            addrs = frozenset()
        with self._lock:
            self._addrs[domain] = addrs
            self._resolved_at[domain] = time.monotonic()
            for ip in addrs:
                self._names.setdefault(ip, domain)

    def addresses(self, domain: str) -> frozenset[IPAddress]:
        """The domain's addresses; ``domain`` is lower case (conditions are normalised at compile time)."""
        addrs = self._addrs.get(domain)
        if addrs is None:
            domain = domain.lower()
            self.watch(domain)
            return self._addrs.get(domain, frozenset())
        stamp = self._resolved_at.get(domain)
        if stamp is not None and time.monotonic() - stamp > REFRESH_SECONDS:
            self._resolved_at[domain] = time.monotonic()
            threading.Thread(target=self._resolve, args=(domain,), daemon=True).start()
        return addrs

    def name_of(self, ip: Any) -> str | None:
        """The watched domain an address belongs to, for outputs."""
        return self._names.get(ip)


_TABLE: DomainTable | None = None


def table() -> DomainTable:
    global _TABLE
    if _TABLE is None:
        _TABLE = DomainTable()
    return _TABLE


def reset(hosts_file: str | None = None) -> DomainTable:
    """Start over with a new hosts file (configuration reload, tests)."""
    global _TABLE
    _TABLE = DomainTable(hosts_file)
    return _TABLE
