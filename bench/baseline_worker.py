"""The baseline's worker in its own process, as the real worker runs in its own process.

`python -m bench.baseline_worker --address 127.0.0.1:7233 --task-queue bench-xyz`
(run from the project root). `ivr loadtest --baseline` spawns it on a unique task queue and
stops it afterwards; SIGTERM or SIGINT stop it cleanly. Prints one `ready` line once the
worker is running (polling starts right after).
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from temporalio.client import Client
from temporalio.worker import Worker

from bench.baseline import BaselineCall


async def serve(address: str, namespace: str, task_queue: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    client = await Client.connect(address, namespace=namespace)
    # SDK defaults for pollers and slots, like worker.py: the same worker shape as the real one.
    async with Worker(client, task_queue=task_queue, workflows=[BaselineCall]):
        print("ready", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True, help="Temporal frontend host:port")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--task-queue", required=True)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.address, args.namespace, args.task_queue))


if __name__ == "__main__":
    main()
