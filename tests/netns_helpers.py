"""Hosts on this machine: network namespaces joined to it by veth pairs (needs root)."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from dataclasses import dataclass

import pytest


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class Host:
    """A namespace at ``address``; this machine is ``peer`` on the /30 between them."""

    name: str
    link: str  # this machine's end of the veth pair
    peer: str
    address: str

    @property
    def prefix(self) -> tuple[str, ...]:
        """Runs a command on the host: ``[*host.prefix, "python", ...]``."""
        return ("ip", "netns", "exec", self.name)

    def unplug(self) -> None:
        """The host vanishes from the network: no reset, no answer, packets lost."""
        ip("link", "set", self.link, "down")

    def plug(self) -> None:
        ip("link", "set", self.link, "up")


_OCTETS = random.sample(range(16, 250), 234)  # each host of this process its own /30


def make_host(label: str) -> Host:
    """A new host; remove it with :func:`remove_host`."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.fail("network namespace tests need root and iproute2 (ip netns, veth)")
    tag = f"{os.getpid() % 10_000}{label}"
    octet = _OCTETS.pop()
    host = Host(f"sk-{tag}", f"skh{tag}", f"10.204.{octet}.1", f"10.204.{octet}.2")
    inside = f"skn{tag}"
    ip("netns", "add", host.name)
    try:
        ip("link", "add", host.link, "type", "veth", "peer", "name", inside)
        ip("link", "set", inside, "netns", host.name)
        ip("addr", "add", f"{host.peer}/30", "dev", host.link)
        ip("link", "set", host.link, "up")
        for command in (
            ("ip", "addr", "add", f"{host.address}/30", "dev", inside),
            ("ip", "link", "set", inside, "up"),
            ("ip", "link", "set", "lo", "up"),
        ):
            ip("netns", "exec", host.name, *command)
    except BaseException:
        remove_host(host)
        raise
    return host


def remove_host(host: Host) -> None:
    subprocess.run(["ip", "link", "del", host.link], capture_output=True)
    subprocess.run(["ip", "netns", "del", host.name], capture_output=True)
