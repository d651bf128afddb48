"""A small etcd v3 client over etcd's JSON gRPC-gateway (etcd >= 3.4 serves it on the client port).

Only what the node agent needs: range, txn, put, lease grant/keepalive/revoke and a prefix watch. Keys and
values are bytes on our side and base64 on the wire; int64 fields arrive as JSON strings and fields at their
proto3 default (0, false, PUT) are omitted, so every read goes through `_int`/`.get`.

Unary calls reuse one keep-alive HTTP connection per thread; a watch owns its own connection, and
`Watch.interrupt()` (from any thread or a signal handler) unblocks its reader. Failures raise:

    EtcdError                  any failure talking to etcd
     +-- EtcdUnavailable       no endpoint answered (connection refused, reset, timeout, TLS failure)
     +-- EtcdRequestError      etcd answered with an error (HTTP status >= 400 and its gRPC message)
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import socket
import ssl
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

__all__ = ["Etcd", "EtcdError", "EtcdRequestError", "EtcdUnavailable", "KeyValue", "TlsFiles", "Watch",
           "WatchEvent", "compare", "delete_op", "prefix_end", "put_op"]


class EtcdError(Exception):
    """Any failure talking to etcd."""


class EtcdUnavailable(EtcdError):
    """No endpoint answered."""


class EtcdRequestError(EtcdError):
    """etcd answered with an error."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca: str | None = None
    cert: str | None = None
    key: str | None = None


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int


@dataclass(frozen=True, slots=True)
class WatchEvent:
    deleted: bool
    kv: KeyValue


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _int(obj: dict[str, Any], name: str) -> int:
    return int(obj.get(name, 0))


def _kv(obj: dict[str, Any]) -> KeyValue:
    return KeyValue(base64.b64decode(obj.get("key", "")), base64.b64decode(obj.get("value", "")),
                    _int(obj, "create_revision"), _int(obj, "mod_revision"), _int(obj, "lease"))


def prefix_end(prefix: bytes) -> bytes:
    """The range_end that selects every key starting with prefix (etcd's GetPrefixRangeEnd)."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\0"


def put_op(key: bytes, value: bytes, lease: int = 0) -> dict[str, Any]:
    req: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
    if lease:
        req["lease"] = str(lease)
    return {"request_put": req}


def delete_op(key: bytes) -> dict[str, Any]:
    return {"request_delete_range": {"key": _b64(key)}}


def compare(key: bytes, target: str, value: int) -> dict[str, Any]:
    """A txn compare `target(key) == value`; target is CREATE, MOD or VERSION (revisions/versions)."""
    field = {"CREATE": "create_revision", "MOD": "mod_revision", "VERSION": "version"}[target]
    return {"key": _b64(key), "target": target, "result": "EQUAL", field: str(value)}


class Etcd:
    """Talks to the first endpoint that answers; endpoints are http(s)://host:port URLs."""

    def __init__(self, endpoints: Sequence[str], tls: TlsFiles | None = None, timeout: float = 5.0) -> None:
        if not endpoints:
            raise ValueError("no etcd endpoint given")
        self._endpoints = [urlsplit(e if "://" in e else f"http://{e}") for e in endpoints]
        for ep in self._endpoints:
            if ep.scheme not in ("http", "https") or not ep.hostname:
                raise ValueError(f"bad etcd endpoint {ep.geturl()!r}: want http(s)://host:port")
        self._timeout = timeout
        self._ssl = self._ssl_context(tls) if any(ep.scheme == "https" for ep in self._endpoints) else None
        self._local = threading.local()
        self._preferred = 0

    @staticmethod
    def _ssl_context(tls: TlsFiles | None) -> ssl.SSLContext:
        tls = tls or TlsFiles()
        ctx = ssl.create_default_context(cafile=tls.ca)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if tls.cert:
            ctx.load_cert_chain(tls.cert, tls.key)
        return ctx

    def _connect(self, index: int, timeout: float | None) -> http.client.HTTPConnection:
        ep = self._endpoints[index]
        port = ep.port or 2379
        assert ep.hostname is not None
        if ep.scheme == "https":
            return http.client.HTTPSConnection(ep.hostname, port, timeout=timeout, context=self._ssl)
        return http.client.HTTPConnection(ep.hostname, port, timeout=timeout)

    def _order(self) -> list[int]:
        n = len(self._endpoints)
        return [(self._preferred + i) % n for i in range(n)]

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST one unary request; on a connection failure try the next endpoint."""
        data = json.dumps(body).encode()
        errors: list[str] = []
        for index in self._order():
            conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
            if conn is None or getattr(self._local, "index", -1) != index:
                if conn is not None:
                    conn.close()
                conn = self._connect(index, self._timeout)
                self._local.conn, self._local.index = conn, index
            # One retry on the same endpoint: a kept-alive connection may have been closed by the server.
            for attempt in range(2):
                try:
                    conn.request("POST", path, data, {"Content-Type": "application/json"})
                    resp = conn.getresponse()
                    payload = resp.read()
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    if attempt == 0 and isinstance(exc, (http.client.RemoteDisconnected, BrokenPipeError,
                                                         ConnectionResetError)):
                        continue
                    errors.append(f"{self._endpoints[index].geturl()}: {exc or type(exc).__name__}")
                    self._local.conn = None
                    break
                self._preferred = index
                return self._decode(path, resp.status, payload)
        raise EtcdUnavailable(f"etcd {path}: " + "; ".join(errors))

    @staticmethod
    def _decode(path: str, status: int, payload: bytes) -> dict[str, Any]:
        try:
            obj = json.loads(payload) if payload else {}
        except ValueError as exc:
            raise EtcdRequestError(f"etcd {path}: HTTP {status}, not JSON: {payload[:200]!r}") from exc
        if status >= 400 or "error" in obj:
            raise EtcdRequestError(f"etcd {path}: HTTP {status}: {obj.get('message') or obj.get('error') or obj}")
        if not isinstance(obj, dict):
            raise EtcdRequestError(f"etcd {path}: unexpected answer {obj!r}")
        # Streaming endpoints (keepalive) wrap their single answer in {"result": ...}.
        result = obj.get("result", obj)
        assert isinstance(result, dict)
        return result

    # --- KV ---------------------------------------------------------------------------------------
    def get(self, key: bytes) -> tuple[KeyValue | None, int]:
        kvs, rev = self.range(key)
        return (kvs[0] if kvs else None), rev

    def range(self, key: bytes, *, prefix: bool = False) -> tuple[list[KeyValue], int]:
        body: dict[str, Any] = {"key": _b64(key)}
        if prefix:
            body["range_end"] = _b64(prefix_end(key))
        resp = self.call("/v3/kv/range", body)
        return [_kv(kv) for kv in resp.get("kvs", [])], _int(resp.get("header", {}), "revision")

    def txn(self, compares: list[dict[str, Any]], success: list[dict[str, Any]],
            failure: list[dict[str, Any]] | None = None) -> bool:
        resp = self.call("/v3/kv/txn", {"compare": compares, "success": success, "failure": failure or []})
        return bool(resp.get("succeeded", False))

    def delete(self, key: bytes) -> None:
        self.call("/v3/kv/deleterange", {"key": _b64(key)})

    # --- leases -----------------------------------------------------------------------------------
    def grant(self, ttl: int) -> int:
        resp = self.call("/v3/lease/grant", {"TTL": str(ttl)})
        return _int(resp, "ID")

    def keepalive(self, lease: int) -> int:
        """Refresh a lease; returns its TTL, 0 when etcd no longer knows it."""
        return _int(self.call("/v3/lease/keepalive", {"ID": str(lease)}), "TTL")

    def time_to_live(self, lease: int) -> int:
        """Seconds the lease has left; -1 when etcd no longer knows it."""
        return _int(self.call("/v3/lease/timetolive", {"ID": str(lease)}), "TTL")

    def revoke(self, lease: int) -> None:
        self.call("/v3/lease/revoke", {"ID": str(lease)})

    # --- watch ------------------------------------------------------------------------------------
    def watch_prefix(self, prefix: bytes, start_revision: int) -> Watch:
        body = {"create_request": {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix)),
                                   "start_revision": str(start_revision)}}
        errors: list[str] = []
        for index in self._order():
            conn = self._connect(index, self._timeout)
            try:
                conn.request("POST", "/v3/watch", json.dumps(body).encode(), {"Content-Type": "application/json"})
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                errors.append(f"{self._endpoints[index].geturl()}: {exc or type(exc).__name__}")
                continue
            if resp.status >= 400:
                payload = resp.read()
                conn.close()
                self._decode("/v3/watch", resp.status, payload)
            return Watch(conn, resp)
        raise EtcdUnavailable("etcd /v3/watch: " + "; ".join(errors))

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _keepalive_socket(sock: socket.socket) -> None:
    """A silent watch on a dead path must end: TCP keepalive probes after 10 s idle, 3 x 5 s."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)


class Watch:
    """One watch stream: iterate for batches of events; ends (raising EtcdError) when the stream does."""

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> None:
        self._conn = conn
        self._resp = resp
        self._closed = False
        sock = conn.sock
        if sock is not None:
            sock.settimeout(None)  # a quiet watch is normal; liveness comes from TCP keepalive and close()
            _keepalive_socket(sock)

    def batches(self) -> Iterator[tuple[int, list[WatchEvent]]]:
        """Yield (header revision, events) per message; raise EtcdError when the stream ends or is cancelled."""
        while True:
            try:
                line = self._resp.readline()
            except (OSError, http.client.HTTPException, ValueError) as exc:
                raise EtcdUnavailable(f"watch stream broken: {exc or type(exc).__name__}") from exc
            if not line:
                raise EtcdUnavailable("watch stream closed" + (" (by us)" if self._closed else " by etcd"))
            if not line.strip():
                continue
            try:
                msg = json.loads(line)
            except ValueError as exc:
                raise EtcdRequestError(f"watch: not JSON: {line[:200]!r}") from exc
            if "error" in msg:
                raise EtcdRequestError(f"watch: {msg['error']}")
            result = msg.get("result", {})
            if result.get("canceled") or _int(result, "compact_revision"):
                raise EtcdRequestError(f"watch cancelled (compact_revision={_int(result, 'compact_revision')}, "
                                       f"{result.get('cancel_reason', '')})")
            events = [WatchEvent(ev.get("type") == "DELETE", _kv(ev.get("kv", {}))) for ev in result.get("events", [])]
            yield _int(result.get("header", {}), "revision"), events

    def interrupt(self) -> None:
        """Unblock the reader (from another thread or a signal handler): its next read sees the end of stream.
        Only shuts the socket down; the reader's own close() releases the connection."""
        self._closed = True
        sock = self._conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Drop the connection; call from the thread that reads."""
        self._closed = True
        self._conn.close()
