"""streamkit: stream columnar data files as Apache Arrow, from connectors through a gateway."""

__version__ = "0.1.0"
