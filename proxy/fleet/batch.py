"""Redis commands issued while the event loop goes once round its ready tasks are sent together:
one pipeline, one round trip (redis-py spends far more CPU per round trip than per command, so
jobs that start or end together share it)."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

Command = tuple[Any, ...]


class Script:
    """A Lua script run through a :class:`Batch`: by its SHA, and by its text once after the
    server forgot it (a restarted Redis)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()

    def command(self, keys: list[Any], args: list[Any]) -> Command:
        return ("EVALSHA", self.sha, len(keys), *keys, *args)

    def by_text(self, command: Command) -> Command:
        """``command`` (from :meth:`command`) sent with the script's text instead."""
        return ("EVAL", self.text, *command[2:])


class Batch:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._pending: list[tuple[Command, asyncio.Future[Any]]] = []

    async def run(self, *commands: Command) -> list[Any]:
        """The replies to ``commands`` (each one ``(name, *args)``), in order; the first error
        reply (or a connection error) is raised."""
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in commands]
        if not self._pending:
            loop.call_soon(self._flush)  # after the tasks ready now had their turn
        self._pending.extend(zip(commands, futures, strict=True))
        try:
            return [await future for future in futures]
        finally:
            for future in futures:  # after an error (or a cancel) the others are not waited for
                if not future.done():
                    future.cancel()
                elif not future.cancelled():
                    future.exception()  # read: asyncio does not report it as never retrieved

    async def script(self, script: Script, keys: list[Any], args: list[Any]) -> Any:
        """Run ``script`` (batched with whatever else is due)."""
        (reply,) = await self.run_with(script, script.command(keys, args))
        return reply

    async def run_with(self, script: Script, first: Command, *rest: Command) -> list[Any]:
        """:meth:`run` where ``first`` is ``script``'s command, sent again by its text if the
        server forgot the script (a restarted Redis)."""
        try:
            return await self.run(first, *rest)
        except NoScriptError:
            return await self.run(script.by_text(first), *rest)

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        asyncio.get_running_loop().create_task(self._send(batch))

    async def _send(self, batch: list[tuple[Command, asyncio.Future[Any]]]) -> None:
        try:
            if len(batch) == 1:
                replies = [await self.redis.execute_command(*batch[0][0])]
            else:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for command, _ in batch:
                        pipe.execute_command(*command)
                    replies = await pipe.execute(raise_on_error=False)
        except Exception as exc:
            replies = [exc] * len(batch)
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():  # its caller was cancelled
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)
