"""corral's version: said by the CLI, compared by client and daemon, written into state."""

__version__ = "0.1.0"
