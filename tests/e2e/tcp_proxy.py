"""A TCP forwarder for tests, run as its own process: ``python -m tests.e2e.tcp_proxy PORT HOST TARGET_PORT``.

It listens on 127.0.0.1:PORT and copies bytes both ways to HOST:TARGET_PORT.  Killing the process closes
every forwarded connection at once and refuses new ones: a database that went away, as a server behind it
sees it (``tests/e2e/test_deploy_docs.py`` cuts PostgreSQL under a running gateway this way).
"""

from __future__ import annotations

import asyncio
import sys

__all__ = ["main"]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def _serve(port: int, host: str, target_port: int) -> None:
    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(host, target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(_pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer))

    server = await asyncio.start_server(handle, "127.0.0.1", port, reuse_address=True)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> None:
    port, host, target_port = int(argv[0]), argv[1], int(argv[2])
    asyncio.run(_serve(port, host, target_port))


if __name__ == "__main__":
    main(sys.argv[1:])
