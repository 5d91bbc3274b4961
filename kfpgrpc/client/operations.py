"""The client API, declared once for both flavours.

Each attribute of `ClientOperations` wraps a plan of plans.py. Read on a `Client` it is a
blocking method; read on an `AsyncClient`, a coroutine method (or an async iterator for
streams). The overloads tell type checkers which.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from os import PathLike
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Self, TypeVar, overload

from kfpgrpc.client import plans
from kfpgrpc.client.connection import call_metadata, channel_credentials, server_address
from kfpgrpc.client.steps import Plan, ReconnectPolicy, Stream

if TYPE_CHECKING:
    from kfpgrpc.client.aio import AsyncClient
    from kfpgrpc.client.sync import Client

P = ParamSpec("P")
T = TypeVar("T")


class _Operation:
    """A plan function that each client flavour binds to its driver method `_call` or `_iterate`."""

    driver = ""

    def __init__(self, plan: Callable[..., Any]) -> None:
        self.plan = plan
        self.__doc__ = plan.__doc__

    def bind(self, client: ClientOperations | None) -> Any:
        if client is None:
            return self
        plan, drive = self.plan, getattr(client, self.driver)
        return functools.wraps(plan)(lambda *args, **kwargs: drive(plan(*args, **kwargs)))


class _Unary(_Operation, Generic[P, T]):
    """An operation with one result."""

    driver = "_call"

    def __init__(self, plan: Callable[P, Plan[T]]) -> None:
        super().__init__(plan)

    @overload
    def __get__(self, client: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, client: Client, owner: type[Any]) -> Callable[P, T]: ...
    @overload
    def __get__(self, client: AsyncClient, owner: type[Any]) -> Callable[P, Coroutine[Any, Any, T]]: ...
    def __get__(self, client: ClientOperations | None, owner: type[Any]) -> Any:
        return self.bind(client)


class _Iterating(_Operation, Generic[P, T]):
    """An operation that yields items: pages of a list, or a watch stream."""

    driver = "_iterate"

    def __init__(self, plan: Callable[P, Stream[T]]) -> None:
        super().__init__(plan)

    @overload
    def __get__(self, client: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, client: Client, owner: type[Any]) -> Callable[P, Iterator[T]]: ...
    @overload
    def __get__(self, client: AsyncClient, owner: type[Any]) -> Callable[P, AsyncIterator[T]]: ...
    def __get__(self, client: ClientOperations | None, owner: type[Any]) -> Any:
        return self.bind(client)


class ClientOperations:
    """What both clients can do; see Client (blocking) and AsyncClient (asyncio)."""

    def __init__(
        self,
        server: str | None = None,
        *,
        token: str | None = None,
        tls: bool = False,
        tls_ca: str | PathLike[str] | None = None,
        tls_cert: str | PathLike[str] | None = None,
        tls_key: str | PathLike[str] | None = None,
        timeout: float | None = 60.0,
        reconnect: ReconnectPolicy = ReconnectPolicy(),
    ) -> None:
        """Connect to `server` (default: $KFPGRPC_SERVER, else 127.0.0.1:8887): `HOST:PORT`,
        `HOST` (port 8887), `http://HOST[:PORT]` or `https://HOST[:PORT]` (TLS), with the
        bearer `token` of `kfpgrpc serve --auth-token` (default: $KFPGRPC_TOKEN). TLS is on
        with https://, `tls` or any tls_* file: `tls_ca` is the CA bundle that signed the
        server's certificate (default: the system's), `tls_cert`/`tls_key` a client
        certificate for mTLS. `timeout` bounds each unary call, in seconds; `reconnect` says
        how watch streams reconnect. Raises KfpGrpcError (INVALID_ARGUMENT) for a malformed
        `server`, or TLS files with an http:// address. Nothing is sent before the first call."""
        self.server, scheme_tls = server_address(server)
        self.credentials = channel_credentials(tls, tls_ca, tls_cert, tls_key, scheme_tls)
        self.metadata = call_metadata(token)
        self.timeout = timeout
        self.reconnect = reconnect

    def _call(self, plan: Plan[Any]) -> Any:
        raise NotImplementedError

    def _iterate(self, plan: Stream[Any]) -> Any:
        raise NotImplementedError

    create_experiment = _Unary(plans.create_experiment)
    get_experiment = _Unary(plans.get_experiment)
    find_experiment = _Unary(plans.find_experiment)
    list_experiments = _Iterating(plans.list_experiments)
    archive_experiment = _Unary(plans.archive_experiment)
    unarchive_experiment = _Unary(plans.unarchive_experiment)
    delete_experiment = _Unary(plans.delete_experiment)

    create_pipeline = _Unary(plans.create_pipeline)
    upload_pipeline = _Unary(plans.upload_pipeline)
    get_pipeline = _Unary(plans.get_pipeline)
    get_pipeline_by_name = _Unary(plans.get_pipeline_by_name)
    find_pipeline = _Unary(plans.find_pipeline)
    list_pipelines = _Iterating(plans.list_pipelines)
    delete_pipeline = _Unary(plans.delete_pipeline)
    get_pipeline_version = _Unary(plans.get_pipeline_version)
    find_pipeline_version = _Unary(plans.find_pipeline_version)
    resolve_pipeline_version = _Unary(plans.resolve_pipeline_version)
    list_pipeline_versions = _Iterating(plans.list_pipeline_versions)
    delete_pipeline_version = _Unary(plans.delete_pipeline_version)

    create_run = _Unary(plans.create_run)
    get_run = _Unary(plans.get_run)
    list_runs = _Iterating(plans.list_runs)
    archive_run = _Unary(plans.archive_run)
    unarchive_run = _Unary(plans.unarchive_run)
    delete_run = _Unary(plans.delete_run)
    terminate_run = _Unary(plans.terminate_run)
    retry_run = _Unary(plans.retry_run)
    watch_run = _Iterating(plans.watch_run)
    wait_for_run = _Unary(plans.wait_for_run)
    run_logs = _Iterating(plans.run_logs)

    create_recurring_run = _Unary(plans.create_recurring_run)
    get_recurring_run = _Unary(plans.get_recurring_run)
    find_recurring_run = _Unary(plans.find_recurring_run)
    list_recurring_runs = _Iterating(plans.list_recurring_runs)
    update_recurring_run = _Unary(plans.update_recurring_run)
    enable_recurring_run = _Unary(plans.enable_recurring_run)
    disable_recurring_run = _Unary(plans.disable_recurring_run)
    delete_recurring_run = _Unary(plans.delete_recurring_run)
    trigger_recurring_run = _Unary(plans.trigger_recurring_run)
    backfill_recurring_run = _Unary(plans.backfill_recurring_run)
    preview_schedule = _Unary(plans.preview_schedule)
    watch_recurring_run = _Iterating(plans.watch_recurring_run)

    watch_events = _Iterating(plans.watch_events)
