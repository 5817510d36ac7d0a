"""A TCP relay that can hold every reply for a while: the latency fault of netns_helper.py (the
kernel here has no netem). Runs inside the test's network namespace:

    delay_relay.py LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_FILE

SIGUSR1 sets the delay to the milliseconds written in DELAY_FILE (for bytes read from then on),
SIGUSR2 back to none. Order is kept: each
direction of each connection is a queue of (due time, bytes). Prints "ready" once listening.
"""

import asyncio
import signal
import sys

LISTEN_HOST, LISTEN_PORT, TARGET_HOST, TARGET_PORT, DELAY_FILE = sys.argv[1:6]
delay_s = 0.0


async def pump(reader, writer, delayed):
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def send():
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                break
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(send())
    try:
        while True:
            data = await reader.read(65536)
            queue.put_nowait((loop.time() + (delay_s if delayed else 0.0), data))
            if not data:
                break
        await sender
    except (ConnectionError, OSError):
        sender.cancel()
    finally:
        writer.close()


async def serve(client_reader, client_writer):
    try:
        redis_reader, redis_writer = await asyncio.open_connection(TARGET_HOST, int(TARGET_PORT))
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(pump(client_reader, redis_writer, False),
                         pump(redis_reader, client_writer, True), return_exceptions=True)


async def main():
    def set_delay(from_file):
        global delay_s
        if from_file:
            with open(DELAY_FILE) as f:
                delay_s = int(f.read()) / 1000.0
        else:
            delay_s = 0.0

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, set_delay, True)
    loop.add_signal_handler(signal.SIGUSR2, set_delay, False)
    server = await asyncio.start_server(serve, LISTEN_HOST, int(LISTEN_PORT))
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
