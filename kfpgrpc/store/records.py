"""Maps a frozen dataclass of the domain to a table whose columns bear its field names."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from typing import Any, Generic, TypeVar

import aiosqlite

from kfpgrpc.errors import AlreadyExists, NotFound
from kfpgrpc.domain import Page
from kfpgrpc.store.database import Database
from kfpgrpc.store.listing import Query, fetch_page

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Codec:
    """How a field that SQLite cannot hold as is becomes a column value and back."""

    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]


def _dump_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


JSON = Codec(_dump_json, json.loads)


@dataclasses.dataclass(frozen=True)
class RecordTable(Generic[T]):
    table: str
    record: type[T]
    kind: str  # how errors name a record, e.g. "pipeline version"
    codecs: Mapping[str, Codec] = dataclasses.field(default_factory=dict)  # by field name

    @cached_property
    def fields(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self.record)]  # type: ignore[arg-type]

    @cached_property
    def select(self) -> str:
        return ", ".join(self.fields)

    def from_row(self, row: sqlite3.Row) -> T:
        values = {name: row[name] for name in self.fields}
        for name, codec in self.codecs.items():
            values[name] = codec.decode(values[name])
        return self.record(**values)

    def encode(self, name: str, value: Any) -> Any:
        codec = self.codecs.get(name)
        return codec.encode(value) if codec else value

    async def insert(self, db: Database, record: T, conflict: str) -> None:
        """Insert in a write of its own; a uniqueness clash raises AlreadyExists(conflict)."""

        async def job(conn: aiosqlite.Connection) -> None:
            await self.insert_within(conn, record, conflict)

        await db.write(job)

    async def insert_within(self, conn: aiosqlite.Connection, record: T, conflict: str) -> None:
        """Insert inside a write job; a uniqueness clash raises AlreadyExists(conflict)."""
        values = [self.encode(name, getattr(record, name)) for name in self.fields]
        placeholders = ", ".join("?" * len(values))
        try:
            await conn.execute(f"INSERT INTO {self.table} ({self.select}) VALUES ({placeholders})", values)
        except sqlite3.IntegrityError:
            raise AlreadyExists(conflict) from None

    async def insert_many_within(self, conn: aiosqlite.Connection, records: Sequence[T]) -> None:
        """Insert many records inside a write job, in one statement execution (a thread hop
        for all of them); a uniqueness clash raises sqlite3.IntegrityError."""
        placeholders = ", ".join("?" * len(self.fields))
        await conn.executemany(
            f"INSERT INTO {self.table} ({self.select}) VALUES ({placeholders})",
            [[self.encode(name, getattr(record, name)) for name in self.fields] for record in records],
        )

    async def update_many_within(self, conn: aiosqlite.Connection, column: str, records: Sequence[T], names: Sequence[str]) -> None:
        """Set the fields `names` of many records (each found by its `column`) inside a write
        job, in one statement execution; NotFound if any is missing."""
        assignments = ", ".join(f"{name} = ?" for name in names)
        cursor = await conn.executemany(
            f"UPDATE {self.table} SET {assignments} WHERE {column} = ?",
            [[*(self.encode(name, getattr(record, name)) for name in names), getattr(record, column)] for record in records],
        )
        if cursor.rowcount != len(records):  # executemany sums the rows each execution changed
            raise NotFound(self.kind, column, "one of a batch")

    async def find(self, db: Database, column: str, value: Any) -> T | None:
        row = await db.fetch_one(f"SELECT {self.select} FROM {self.table} WHERE {column} = ?", (value,))
        return self.from_row(row) if row else None

    async def get(self, db: Database, column: str, value: Any) -> T:
        found = await self.find(db, column, value)
        if found is None:
            raise NotFound(self.kind, column, str(value))
        return found

    async def list_page(self, db: Database, query: Query) -> Page[T]:
        return await fetch_page(db, query, self.select, self.from_row)

    async def update(self, db: Database, column: str, value: Any, changes: dict[str, Any]) -> None:
        """Set `changes` on the record where column = value; NotFound if there is none."""

        async def job(conn: aiosqlite.Connection) -> None:
            await self.update_within(conn, column, value, changes)

        await db.write(job)

    async def update_within(self, conn: aiosqlite.Connection, column: str, value: Any, changes: dict[str, Any]) -> None:
        """Update inside a write job; NotFound if nothing matched."""
        assignments = ", ".join(f"{name} = ?" for name in changes)
        encoded = [self.encode(name, change) for name, change in changes.items()]
        cursor = await conn.execute(f"UPDATE {self.table} SET {assignments} WHERE {column} = ?", [*encoded, value])
        if cursor.rowcount == 0:
            raise NotFound(self.kind, column, str(value))

    async def delete(self, db: Database, column: str, value: Any) -> None:
        """Delete in a write of its own; NotFound if nothing matched."""

        async def job(conn: aiosqlite.Connection) -> None:
            await self.delete_within(conn, column, value)

        await db.write(job)

    async def delete_within(self, conn: aiosqlite.Connection, column: str, value: Any) -> None:
        """Delete inside a write job; NotFound if nothing matched."""
        cursor = await conn.execute(f"DELETE FROM {self.table} WHERE {column} = ?", (value,))
        if cursor.rowcount == 0:
            raise NotFound(self.kind, column, str(value))
