"""corral: a process manager for Python in the spirit of PM2."""

from corral.model.version import __version__

__all__ = ["__version__", "API", "ready"]


def ready() -> None:
    """Tell corral this worker is ready to serve (PM2's process.send('ready')).

    With `wait_ready`, a cluster worker is online, and a reload moves on to the next
    worker, once it has called this rather than when it starts listening. Outside a
    corral cluster worker it does nothing.
    """
    import sys

    cluster = sys.modules.get("corral.cluster")
    if cluster is not None and getattr(cluster, "is_worker", False):
        cluster.worker.send({"corral": "ready"})


def __getattr__(name: str) -> object:
    # The programmatic API is imported on first use so that `import corral`
    # (done by every CLI call) stays cheap.
    if name == "API":
        from corral.client.api import API

        return API
    raise AttributeError(name)
