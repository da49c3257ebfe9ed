"""What the HTTP and WebSocket side of the gateway needs of it, in one object."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from streamkit.config import GatewayConfig
from streamkit.gateway.forward import Forwarder
from streamkit.gateway.tunnels import Tunnels


@dataclass
class WebContext:
    config: GatewayConfig
    forwarder: Forwarder
    pool: ThreadPoolExecutor  # blocking calls (opening streams, listings) run here
    tunnels: Tunnels  # of connectors that dial in
    open_sockets: int = 0
