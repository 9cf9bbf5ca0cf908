"""The writer process reads its commands pipe into one buffer
(writer_process.read_bodies): frames come out whole whatever the reads'
boundaries, and a read allocates no READ_BYTES block of its own (such a
block, taken from glibc's heap at every read, left the writer's heap ever
more fragmented under load)."""

from __future__ import annotations

import os
import threading
import tracemalloc

from medsettle.ledger.storage.writer_process import READ_BYTES, read_bodies
from medsettle.server import wire


def test_frames_come_out_whole_across_reads_and_the_end_of_the_pipe_ends_them() -> None:
    bodies = [bytes([n % 251]) * (n * 37 % 3000 + 1) for n in range(200)]
    stream = b"".join(wire.frame(body) for body in bodies)
    read_fd, write_fd = os.pipe()

    def send() -> None:  # in uneven pieces: frames split across reads, several in one read
        at = 0
        for step in [1, 7, 4096, 3, 70_000] * 100:
            if at >= len(stream):
                break
            os.write(write_fd, stream[at:at + step])
            at += step
        if at < len(stream):
            os.write(write_fd, stream[at:])
        os.close(write_fd)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        received = [body for read in read_bodies(read_fd, wire.FrameReader()) for body in read]
    finally:
        sender.join()
        os.close(read_fd)
    assert received == bodies


def test_a_read_allocates_no_block_of_the_read_size() -> None:
    body = b"a settlement request" * 40
    read_fd, write_fd = os.pipe()
    reads = read_bodies(read_fd, wire.FrameReader())
    try:
        os.write(write_fd, wire.frame(body))
        assert next(reads) == [body]  # the buffer is made at the first read, before tracing
        tracemalloc.start()
        try:
            for _ in range(20):
                os.write(write_fd, wire.frame(body))
                assert next(reads) == [body]
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        os.close(write_fd)
        os.close(read_fd)
    # os.read(fd, READ_BYTES) would hold READ_BYTES at each read (peak >= 1 MiB)
    assert peak < READ_BYTES // 16, peak
