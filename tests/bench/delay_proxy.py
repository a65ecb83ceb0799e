#!/usr/bin/env python3
"""A TCP proxy that adds network latency, for the benchmark's --rtt option.

    delay_proxy.py TARGET_PORT RTT_MS

Listens on an ephemeral port of 127.0.0.1 (printed on the first line of
stdout), forwards every connection to 127.0.0.1:TARGET_PORT, and delivers
each chunk half the round-trip time after it arrived, in each direction and
in order. Bandwidth is not limited: only the delay of a far server is
imitated (a kernel netem qdisc would do the same, but needs a module
containers seldom have).

One thread, one event loop, so it takes little CPU from the tools it times.
"""

import asyncio
import collections
import socket
import sys


async def pump(reader, writer, delay):
    """Copy reader to writer, each chunk delay seconds after it arrived."""
    loop = asyncio.get_running_loop()
    queue = collections.deque()
    ready = asyncio.Event()
    done = False

    async def deliver():
        while True:
            while not queue:
                if done:
                    return
                ready.clear()
                await ready.wait()
            due, data = queue[0]
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            queue.popleft()
            writer.write(data)
            await writer.drain()

    sender = asyncio.ensure_future(deliver())
    try:
        while True:
            data = await reader.read(1 << 18)
            if not data:
                break
            queue.append((loop.time() + delay, data))
            ready.set()
    except (ConnectionError, OSError):
        pass
    done = True
    ready.set()
    try:
        await sender
        writer.close()
    except (ConnectionError, OSError):
        pass


def main():
    target, rtt_ms = int(sys.argv[1]), float(sys.argv[2])
    delay = rtt_ms / 2000.0

    async def handle(c_reader, c_writer):
        try:
            s_reader, s_writer = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            c_writer.close()
            return
        for w in (c_writer, s_writer):
            w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(pump(c_reader, s_writer, delay), pump(s_reader, c_writer, delay))

    async def serve():
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=64)
        print(server.sockets[0].getsockname()[1], flush=True)
        async with server:
            await server.serve_forever()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
