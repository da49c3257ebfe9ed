"""The connector: an Arrow Flight server over the data files under one root."""

from streamkit.connector.server import ConnectorServer

__all__ = ["ConnectorServer"]
