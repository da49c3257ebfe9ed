"""The gateway: a multi-tenant router of Arrow streams (Flight for CLIs, WebSocket/HTTP for
browsers). It holds no data."""

from streamkit.gateway.app import Gateway, make_gateway

__all__ = ["Gateway", "make_gateway"]
