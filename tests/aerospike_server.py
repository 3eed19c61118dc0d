"""A single-node Aerospike server speaking enough of the wire protocol for the real ``aerospike`` client.

No Aerospike server can be installed on the test machines, and a cache tested against a fake client
proves nothing about the real one: this is a real TCP server the official client discovers, tends and
sends single-record commands to (get, put, exists, remove, touch). Records live in memory with their
TTL; a record above the namespace's size limit is refused with RECORD_TOO_BIG, as the real server does.

In-process (a thread)::

    with AerospikeTestServer() as server:
        client = aerospike.client({"hosts": [("127.0.0.1", server.port)]})

As a process a test can kill -9 and restart on the same port::

    python tests/aerospike_server.py --port 3000    # prints "ready PORT" once it listens
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import struct
import sys
import threading
import time
import zlib
from dataclasses import dataclass, field

log = logging.getLogger("aerospike_server")

CITRUSLEAF_EPOCH = 1262304000  # 2010-01-01 UTC: void times count from here
N_PARTITIONS = 4096

PROTO = struct.Struct(">Q")  # version (8) | type (8) | size (48)
MSG = struct.Struct(">BBBBBBIIIHH")  # header_sz info1 info2 info3 info4 result gen record_ttl txn_ttl n_fields n_ops
FIELD = struct.Struct(">IB")  # size (type + data), type
OP = struct.Struct(">IBBBB")  # size (4 + name + value), op, particle type, version, name length
TYPE_INFO, TYPE_MSG, TYPE_COMPRESSED = 1, 3, 4

INFO1_READ, INFO1_GET_ALL, INFO1_NOBINDATA, INFO1_COMPRESS_RESPONSE = 0x01, 0x02, 0x20, 0x80
INFO2_WRITE, INFO2_DELETE, INFO2_CREATE_ONLY = 0x01, 0x02, 0x20
INFO3_UPDATE_ONLY, INFO3_CREATE_OR_REPLACE, INFO3_REPLACE_ONLY = 0x08, 0x10, 0x20
FIELD_NAMESPACE, FIELD_SET, FIELD_DIGEST = 0, 1, 4
OP_READ, OP_WRITE, OP_TOUCH, OP_DELETE = 1, 2, 11, 14
PARTICLE_NULL = 0
TTL_NEVER, TTL_DONT_UPDATE = 0xFFFFFFFF, 0xFFFFFFFE

OK, NOT_FOUND, PARAMETER_ERROR, RECORD_EXISTS, RECORD_TOO_BIG, NAMESPACE_NOT_FOUND = 0, 2, 4, 5, 13, 20


@dataclass
class Record:
    bins: dict[bytes, tuple[int, bytes]]  # name -> (particle type, value)
    generation: int = 1
    void_time: float = 0.0  # unix seconds; 0 = never expires

    def expired(self, now: float) -> bool:
        return self.void_time != 0 and now >= self.void_time


@dataclass
class Request:
    info1: int
    info2: int
    info3: int
    record_ttl: int
    fields: dict[int, bytes] = field(default_factory=dict)
    ops: list[tuple[int, int, bytes, bytes]] = field(default_factory=list)  # op, particle, name, value


def record_size(bins: dict[bytes, tuple[int, bytes]]) -> int:
    """The record's size as the limit sees it: its bins as they travel (op header, name, value)."""
    return sum(8 + len(name) + len(value) for name, (_particle, value) in bins.items())


def parse_request(body: bytes) -> Request:
    (_hsz, info1, info2, info3, _info4, _rc, _gen, record_ttl, _txn, n_fields, n_ops) = MSG.unpack_from(body)
    req = Request(info1, info2, info3, record_ttl)
    pos = MSG.size
    for _ in range(n_fields):
        size, ftype = FIELD.unpack_from(body, pos)
        req.fields[ftype] = body[pos + FIELD.size : pos + 4 + size]
        pos += 4 + size
    for _ in range(n_ops):
        size, op, particle, _version, name_len = OP.unpack_from(body, pos)
        name = body[pos + OP.size : pos + OP.size + name_len]
        value = body[pos + OP.size + name_len : pos + 4 + size]
        req.ops.append((op, particle, name, value))
        pos += 4 + size
    return req


def message(result: int, record: Record | None = None, bins: dict[bytes, tuple[int, bytes]] | None = None) -> bytes:
    """A reply: the 22-byte header (generation and void time of ``record``) and ``bins`` as read ops."""
    ops = b"".join(
        OP.pack(4 + len(name) + len(value), OP_READ, particle, 0, len(name)) + name + value
        for name, (particle, value) in (bins or {}).items()
    )
    generation = record.generation if record else 0
    void = int(record.void_time) - CITRUSLEAF_EPOCH if record and record.void_time else 0
    head = MSG.pack(22, 0, 0, 0, 0, result, generation, void, 0, 0, len(bins or {}))
    return frame(TYPE_MSG, head + ops)


def frame(msg_type: int, body: bytes) -> bytes:
    return PROTO.pack(2 << 56 | msg_type << 48 | len(body)) + body


class AerospikeTestServer:
    """One node owning all 4096 partitions of its namespaces, records in memory.

    ``largest_record`` and ``too_big`` say what writes it saw; setting ``stall`` (seconds) makes it
    hold every record command that long before answering (a slow server)."""

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        namespace: str = "dada",
        max_record_bytes: int = 1 << 20,
    ) -> None:
        self.host = host
        self.port = port
        self.namespaces = {namespace}
        self.max_record_bytes = max_record_bytes
        self.node_name = ""  # named after the port once it listens
        self.largest_record = 0
        self.too_big = 0
        self.stall = 0.0
        self.unknown_info: set[str] = set()
        self._records: dict[tuple[str, bytes], Record] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task, asyncio.StreamWriter] = {}
        self._thread: threading.Thread | None = None

    # -- running ---------------------------------------------------------------------------------

    def start(self) -> AerospikeTestServer:
        """Listen on a thread of its own; returns once the port is bound."""
        ready = threading.Event()
        failed: list[OSError] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(self._listen())
            except OSError as e:  # e.g. the port is taken
                failed.append(e)
                loop.close()
                ready.set()
                return
            self._loop = loop
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._close())
            loop.close()

        self._thread = threading.Thread(target=run, name="aerospike-test-server", daemon=True)
        self._thread.start()
        ready.wait()
        if failed:
            raise failed[0]
        return self

    def stop(self) -> None:
        """Close the listener and every client connection, then end the thread."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop = self._thread = None

    def __enter__(self) -> AerospikeTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Run in the calling thread (the process mode) until killed."""

        async def main() -> None:
            await self._listen()
            print(f"ready {self.port}", flush=True)
            await asyncio.Event().wait()

        asyncio.run(main())

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._connection, self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        self.node_name = "BB9" + format(self.port, "012X")

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._connections.values():
            writer.close()  # the connection's reader sees the end and its task returns
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._connections[task] = writer
        try:
            while True:
                (word,) = PROTO.unpack(await reader.readexactly(PROTO.size))
                msg_type, size = word >> 48 & 0xFF, word & (1 << 48) - 1
                body = await reader.readexactly(size)
                if msg_type == TYPE_COMPRESSED:
                    inner = zlib.decompress(body[8:])
                    (word,) = PROTO.unpack_from(inner)
                    msg_type, body = word >> 48 & 0xFF, inner[PROTO.size :]
                if msg_type == TYPE_INFO:
                    writer.write(frame(TYPE_INFO, self._info(body.decode())))
                elif msg_type == TYPE_MSG:
                    if self.stall:
                        await asyncio.sleep(self.stall)
                    request = parse_request(body)
                    reply = self._command(request)
                    if request.info1 & INFO1_COMPRESS_RESPONSE:
                        reply = frame(TYPE_COMPRESSED, struct.pack(">Q", len(reply)) + zlib.compress(reply))
                    writer.write(reply)
                else:
                    log.warning("unknown message type %d", msg_type)
                    return
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._connections.pop(task, None)
            writer.close()

    # -- info --------------------------------------------------------------------------------------

    def _info(self, request: str) -> bytes:
        names = [n for n in request.split("\n") if n]
        return "".join(f"{name}\t{self._info_value(name)}\n" for name in names).encode()

    def _info_value(self, name: str) -> str:
        all_partitions = base64.b64encode(b"\xff" * (N_PARTITIONS // 8)).decode()
        values = {  # what the client asks when it connects (first three), discovers and tends
            "node": self.node_name,
            "partition-generation": "1",
            "build": "7.0.0.0",
            "peers-clear-std": f"1,{self.port},[]",  # generation, default port, no other nodes
            "replicas": "".join(f"{ns}:0,1,{all_partitions};" for ns in sorted(self.namespaces)),
            "peers-generation": "1",
            "cluster-name": "null",  # asked when the client is configured with a cluster_name
            "features": "peers;replicas;pipelining;float;blob-bits",
        }
        if name in values:
            return values[name]
        if name not in self.unknown_info:
            self.unknown_info.add(name)
            log.warning("unknown info request %r", name)
        return ""

    # -- records -----------------------------------------------------------------------------------

    def _command(self, req: Request) -> bytes:
        namespace = req.fields.get(FIELD_NAMESPACE, b"").decode()
        digest = req.fields.get(FIELD_DIGEST)
        if namespace not in self.namespaces:
            return message(NAMESPACE_NOT_FOUND)
        if digest is None:
            return message(PARAMETER_ERROR)
        key = (namespace, digest)
        now = time.time()
        record = self._records.get(key)
        if record is not None and record.expired(now):
            del self._records[key]
            record = None
        if req.info2 & INFO2_WRITE:
            return self._write(key, record, req, now)
        if req.info1 & INFO1_READ:
            if record is None:
                return message(NOT_FOUND)
            if req.info1 & INFO1_NOBINDATA:
                return message(OK, record)
            if req.info1 & INFO1_GET_ALL:
                return message(OK, record, record.bins)
            wanted = [name for op, _p, name, _v in req.ops if op == OP_READ]
            return message(OK, record, {n: record.bins[n] for n in wanted if n in record.bins})
        return message(PARAMETER_ERROR)

    def _write(self, key: tuple[str, bytes], record: Record | None, req: Request, now: float) -> bytes:
        if req.info2 & INFO2_DELETE:
            if record is None:
                return message(NOT_FOUND)
            del self._records[key]
            return message(OK)
        if record is not None and req.info2 & INFO2_CREATE_ONLY:
            return message(RECORD_EXISTS)
        touch = any(op == OP_TOUCH for op, _p, _n, _v in req.ops)
        if record is None and (touch or req.info3 & (INFO3_UPDATE_ONLY | INFO3_REPLACE_ONLY)):
            return message(NOT_FOUND)
        replace = req.info3 & (INFO3_CREATE_OR_REPLACE | INFO3_REPLACE_ONLY)
        bins = {} if record is None or replace else dict(record.bins)
        for op, particle, name, value in req.ops:
            if op == OP_WRITE and particle == PARTICLE_NULL:
                bins.pop(name, None)
            elif op == OP_WRITE:
                bins[name] = (particle, value)
            elif op == OP_DELETE:
                bins.clear()
            elif op != OP_TOUCH:
                return message(PARAMETER_ERROR)
        size = record_size(bins)
        self.largest_record = max(self.largest_record, size)
        if size > self.max_record_bytes:
            self.too_big += 1
            return message(RECORD_TOO_BIG)
        if not bins:
            self._records.pop(key, None)
            return message(OK)
        new = Record(bins, generation=(record.generation + 1) if record else 1)
        if req.record_ttl == TTL_DONT_UPDATE and record is not None:
            new.void_time = record.void_time
        elif req.record_ttl not in (0, TTL_NEVER, TTL_DONT_UPDATE):
            new.void_time = now + req.record_ttl
        self._records[key] = new
        return message(OK, new)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--namespace", default="dada")
    parser.add_argument("--max-record-bytes", type=int, default=1 << 20)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    AerospikeTestServer(args.port, args.host, args.namespace, args.max_record_bytes).serve_forever()


if __name__ == "__main__":
    main()
