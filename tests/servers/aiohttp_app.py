import os

from aiohttp import web


async def hello(request: web.Request) -> web.Response:
    return web.Response(text=f"hello world, start with cluster {os.getpid()}\n")


app = web.Application()
app.router.add_get("/", hello)
web.run_app(app, host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ["PORT"]),
            print=None, handle_signals=True)
