"""A small file-backed S3 server: durable storage for the embedded Tansu broker in tests.

Tansu keeps data across restarts only on S3 (its build has no file, SQLite or Postgres engine), and
the tests need a broker that restarts with its topics, offsets and changelogs intact. This serves
just what Tansu's object store client uses, path-style and without checking signatures: PUT (with
`If-None-Match: *` and `If-Match: <etag>` for its compare-and-swap writes), GET (and ranges), HEAD,
DELETE and ListObjectsV2. Objects are files under `root/<bucket>/`, so the data outlives both the
broker and this server.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import os
import threading
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape


@dataclass(frozen=True)
class Meta:
    etag: str
    size: int
    modified: float


class Store:
    """Objects as files, with an in-memory sorted index (this server is the only writer)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = threading.Lock()
        self.meta: dict[tuple[str, str], Meta] = {}
        self.keys: dict[str, list[str]] = {}
        for bucket_dir in (p for p in root.iterdir() if p.is_dir()) if root.exists() else []:
            self.keys[bucket_dir.name] = []
            for path in bucket_dir.rglob("*"):
                if path.is_file() and not path.name.endswith(".tmp"):
                    key = urllib.parse.unquote(path.relative_to(bucket_dir).as_posix())
                    data = path.read_bytes()
                    self._index(bucket_dir.name, key, data, path.stat().st_mtime)

    def _path(self, bucket: str, key: str) -> Path:
        # each segment quoted: no `..`, no absolute paths, any byte of a key allowed
        parts = [urllib.parse.quote(part, safe="") or "%" for part in key.split("/")]
        return self.root.joinpath(urllib.parse.quote(bucket, safe=""), *parts)

    def _index(self, bucket: str, key: str, data: bytes, modified: float) -> Meta:
        meta = Meta(f'"{hashlib.md5(data).hexdigest()}"', len(data), modified)
        if (bucket, key) not in self.meta:
            bisect.insort(self.keys.setdefault(bucket, []), key)
        self.meta[bucket, key] = meta
        return meta

    def put(
        self, bucket: str, key: str, data: bytes, if_match: str | None, if_none_match: str | None
    ) -> Meta | None:
        """Store the object; None if a condition failed (HTTP 412)."""
        with self.lock:
            current = self.meta.get((bucket, key))
            if if_none_match == "*" and current is not None:
                return None
            if if_match is not None and (current is None or current.etag != if_match):
                return None
            path = self._path(bucket, key)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            return self._index(bucket, key, data, path.stat().st_mtime)

    def get(self, bucket: str, key: str) -> tuple[Meta, bytes] | None:
        with self.lock:
            meta = self.meta.get((bucket, key))
            return None if meta is None else (meta, self._path(bucket, key).read_bytes())

    def delete(self, bucket: str, key: str) -> None:
        with self.lock:
            if self.meta.pop((bucket, key), None) is not None:
                self.keys[bucket].remove(key)
                self._path(bucket, key).unlink(missing_ok=True)

    def listing(self, bucket: str, prefix: str, after: str) -> list[tuple[str, Meta]]:
        with self.lock:
            keys = self.keys.get(bucket, [])
            start = bisect.bisect_right(keys, after) if after else bisect.bisect_left(keys, prefix)
            out: list[tuple[str, Meta]] = []
            for key in keys[start:]:
                if not key.startswith(prefix):
                    if key > prefix:
                        break
                    continue
                out.append((key, self.meta[bucket, key]))
            return out


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class Handler(BaseHTTPRequestHandler):
    # One request per connection, as moto's server does: with keep-alive, Tansu's client stopped
    # fetching some partitions' batches (listed, never read) until the connection changed.
    protocol_version = "HTTP/1.0"
    server: S3Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _target(self) -> tuple[str, str, dict[str, str]]:
        url = urllib.parse.urlsplit(self.path)
        bucket, _, key = urllib.parse.unquote(url.path.lstrip("/")).partition("/")
        return bucket, key, dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                data += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return data
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str) -> None:
        body = f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message/></Error>'
        self._send(status, body.encode(), {"Content-Type": "application/xml"})

    def do_PUT(self) -> None:
        bucket, key, _ = self._target()
        data = self._body()
        if self.server.stall_held(key):
            with contextlib.suppress(OSError):  # the client that sent it is usually gone by now
                self._error(503, "SlowDown")
            return
        if not key:  # create bucket
            (self.server.store.root / bucket).mkdir(parents=True, exist_ok=True)
            self.server.store.keys.setdefault(bucket, [])
            return self._send(200)
        meta = self.server.store.put(
            bucket, key, data, self.headers.get("If-Match"), self.headers.get("If-None-Match")
        )
        if meta is None:
            return self._error(412, "PreconditionFailed")
        self._send(200, headers={"ETag": meta.etag})

    def do_GET(self) -> None:
        bucket, key, query = self._target()
        if not key:
            return self._list(bucket, query)
        found = self.server.store.get(bucket, key)
        if found is None:
            return self._error(404, "NoSuchKey")
        meta, data = found
        if (match := self.headers.get("If-Match")) is not None and match != meta.etag:
            return self._error(412, "PreconditionFailed")
        if self.headers.get("If-None-Match") == meta.etag:
            return self._send(304, headers={"ETag": meta.etag})
        headers = {
            "ETag": meta.etag,
            "Last-Modified": formatdate(meta.modified, usegmt=True),
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
        }
        status = 200
        if (ranged := self.headers.get("Range", "")).startswith("bytes="):
            first, _, last = ranged.removeprefix("bytes=").partition("-")
            if first:
                start, end = int(first), min(int(last) if last else len(data) - 1, len(data) - 1)
            else:
                start, end = max(len(data) - int(last), 0), len(data) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start : end + 1], 206
        self._send(status, data, headers)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_DELETE(self) -> None:
        bucket, key, _ = self._target()
        self.server.store.delete(bucket, key)
        self._send(204)

    def _list(self, bucket: str, query: dict[str, str]) -> None:
        if bucket not in self.server.store.keys:
            return self._error(404, "NoSuchBucket")
        prefix, delimiter = query.get("prefix", ""), query.get("delimiter", "")
        after = query.get("continuation-token") or query.get("start-after", "")
        limit = int(query.get("max-keys") or 1000)
        contents: list[str] = []
        prefixes: list[str] = []
        last = ""
        truncated = False
        for key, meta in self.server.store.listing(bucket, prefix, after):
            if len(contents) + len(prefixes) >= limit:
                truncated = True
                break
            if delimiter and delimiter in key[len(prefix) :]:
                common = key[: len(prefix) + key[len(prefix) :].index(delimiter) + len(delimiter)]
                if not prefixes or prefixes[-1] != common:
                    prefixes.append(common)
                last = key
                continue
            contents.append(
                f"<Contents><Key>{escape(key)}</Key><LastModified>{_iso(meta.modified)}</LastModified>"
                f"<ETag>{escape(meta.etag)}</ETag><Size>{meta.size}</Size>"
                "<StorageClass>STANDARD</StorageClass></Contents>"
            )
            last = key
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Name>{escape(bucket)}</Name><Prefix>{escape(prefix)}</Prefix>"
            f"<KeyCount>{len(contents) + len(prefixes)}</KeyCount><MaxKeys>{limit}</MaxKeys>"
            f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>"
            + (f"<NextContinuationToken>{escape(last)}</NextContinuationToken>" if truncated else "")
            + "".join(contents)
            + "".join(f"<CommonPrefixes><Prefix>{escape(p)}</Prefix></CommonPrefixes>" for p in prefixes)
            + "</ListBucketResult>"
        )
        self._send(200, body.encode(), {"Content-Type": "application/xml"})


class S3Server(ThreadingHTTPServer):
    """Serves `root` on 127.0.0.1 (port 0: the OS picks one) from a daemon thread."""

    daemon_threads = True

    def __init__(self, root: Path, port: int = 0) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.store = Store(root)
        self.stall_suffix: str | None = None
        self.stalled = threading.Event()
        """Set once a PUT has been held by `stall_puts`."""
        self.released = threading.Event()
        super().__init__(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.serve_forever, name="s3", daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def create_bucket(self, bucket: str) -> None:
        (self.store.root / bucket).mkdir(parents=True, exist_ok=True)
        self.store.keys.setdefault(bucket, [])

    def stall_puts(self, suffix: str) -> None:
        """Hold every PUT of a key ending in `suffix` until `release`, then fail it unstored.

        A broker stopped while such a write is held has done the writes before it and not this
        one: the state a crash in the middle of a multi-object update leaves behind.
        """
        self.stall_suffix = suffix
        self.stalled.clear()
        self.released.clear()

    def release(self) -> None:
        """Let the held PUTs fail (503) and the later ones through."""
        self.stall_suffix = None
        self.released.set()

    def stall_held(self, key: str) -> bool:
        """Whether this PUT was held (and so must fail); waits while the stall lasts."""
        if self.stall_suffix is None or not key.endswith(self.stall_suffix):
            return False
        self.stalled.set()
        self.released.wait(60)
        return True

    def __enter__(self) -> S3Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        with contextlib.suppress(RuntimeError):
            self.thread.join(5)
