"""Fan-out of changes to watchers, keyed by resource id, that never blocks the publisher.

Each subscription has its own bounded buffer. A watcher too slow to keep up loses the oldest
buffered items, never the newest: publishers only ever append, so a stalled stream costs its
buffer and nothing else. Items published here are cumulative snapshots (a Run carries its
whole state history), so a skipped intermediate snapshot loses no information.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")

DEFAULT_CAPACITY = 256


class Subscription(Generic[T]):
    def __init__(self, hub: Broadcast[T], key: str, capacity: int) -> None:
        self._hub = hub
        self.key = key
        self._items: deque[T] = deque(maxlen=capacity)
        self._ready = asyncio.Event()
        self.closed = False

    def _offer(self, item: T) -> None:
        self._items.append(item)
        self._ready.set()

    def _close(self) -> None:
        self.closed = True
        self._ready.set()

    async def next(self) -> T | None:
        """The next item, waiting for one; None once the hub closed (server shutdown)."""
        while not self._items:
            if self.closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def __enter__(self) -> Subscription[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._hub._unsubscribe(self)


class Broadcast(Generic[T]):
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._capacity = capacity
        self._subscriptions: dict[str, set[Subscription[T]]] = {}
        self.closed = False

    def subscribe(self, key: str) -> Subscription[T]:
        """Use as a context manager so the subscription is dropped when the watcher leaves."""
        subscription = Subscription(self, key, self._capacity)
        if self.closed:
            subscription._close()
        else:
            self._subscriptions.setdefault(key, set()).add(subscription)
        return subscription

    def watched(self, key: str) -> bool:
        """Whether anyone subscribes to `key`: snapshots nobody watches need not be built."""
        return key in self._subscriptions

    def publish(self, key: str, item: T) -> None:
        for subscription in self._subscriptions.get(key, ()):
            subscription._offer(item)

    def close(self) -> None:
        """End every subscription, present and future."""
        self.closed = True
        for subscriptions in self._subscriptions.values():
            for subscription in subscriptions:
                subscription._close()
        self._subscriptions.clear()

    def close_key(self, key: str) -> None:
        """End the subscriptions of one key (its resource is gone)."""
        for subscription in self._subscriptions.pop(key, set()):
            subscription._close()

    def _unsubscribe(self, subscription: Subscription[T]) -> None:
        subscriptions = self._subscriptions.get(subscription.key)
        if subscriptions is not None:
            subscriptions.discard(subscription)
            if not subscriptions:
                del self._subscriptions[subscription.key]
