"""corral: a process manager for Python in the spirit of PM2."""

__version__ = "0.1.0"

__all__ = ["__version__", "API"]


def __getattr__(name: str) -> object:
    # The programmatic API is imported on first use so that `import corral`
    # (done by every CLI call) stays cheap.
    if name == "API":
        from corral.api import API

        return API
    raise AttributeError(name)
