"""The slot writer: the decompressed image hashed and written into one slot's byte range on a thread.

Never a byte outside the slot: every write is checked against [start, end) before it is queued, which
is what protects the other slot and the GPT whatever the payload holds."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path

from locksmith.disk.slots import Slot
from locksmith.updateengine.errors import ImageTooLarge, PayloadError, TargetWriteError


def write_error(exc: OSError, disk: Path | str, slot: Slot) -> TargetWriteError:
    reasons = {
        errno.ENOSPC: "disk full",
        errno.EROFS: "read-only file system",
        errno.EFBIG: "file size limit reached",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.ENOENT: "no such disk",
        errno.EIO: "I/O error",
    }
    reason = reasons.get(exc.errno or 0, exc.strerror or str(exc))
    return TargetWriteError(f"cannot write slot {slot.name} of {disk}: {reason}")


class SlotWriter:
    """Hashes and writes the decompressed image on a second thread, so inflate+hash of the payload (main
    thread) overlaps with hash+pwrite of the image (zlib, hashlib and pwrite all release the GIL).
    The queue is bounded: at most QUEUE_DEPTH batches are in memory."""

    QUEUE_DEPTH = 4

    def __init__(self, fd: int, start: int, end: int, on_error: Callable[[OSError], PayloadError]) -> None:
        self._fd, self._start, self._end = fd, start, end
        self._on_error = on_error
        self._queue: queue.Queue[tuple[int, bytes] | None] = queue.Queue(self.QUEUE_DEPTH)
        self._error: PayloadError | None = None
        self._stop = False
        self.image_hash = hashlib.sha256()
        self._thread = threading.Thread(target=self._run, name="slot-writer", daemon=True)
        self._thread.start()

    def submit(self, position: int, data: bytes) -> None:
        # The invariant that protects the other slot and the GPT: never a byte outside [start, end).
        if position < self._start or position + len(data) > self._end:
            raise ImageTooLarge("refusing to write outside the target slot")
        self.raise_error()
        self._queue.put((position, data))

    def raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Wait until everything submitted is hashed and written; raise the first write error."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self.raise_error()

    def cancel(self) -> None:
        """Stop without writing what is still queued; returns once the thread no longer touches the fd."""
        self._stop = True
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get_nowait()
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(None)
            self._thread.join(0.05)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._stop or self._error is not None:
                continue  # drain, so a producer blocked on put() wakes up and sees the error
            position, data = item
            self.image_hash.update(data)
            view = memoryview(data)
            try:
                while view:
                    written = os.pwrite(self._fd, view, position)
                    view, position = view[written:], position + written
            except OSError as exc:
                self._error = self._on_error(exc)
