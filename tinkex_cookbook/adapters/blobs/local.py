"""Local-filesystem blob store: one file per key under a root directory.

Writes go to a temp file beside the target and are ``os.replace``d into place,
so a reader (or a resumed run) never sees a half-written checkpoint. ``create``
``os.link``s its temp file into place instead: a hard link fails if the target
exists, so checking and writing are one step even across processes. After
either, the directory is fsynced so the new name survives a power cut.
``append`` is a real append (``O_APPEND``, one ``write`` call, fsynced): it costs
the appended bytes, not the file's. It first drops a torn tail (bytes after the
last newline, left by a crash mid-append), reading at most that tail, and cuts
back what a failed write left.

A temp file's name is ``.tinkex-tmp-<pid>@<host tag>-<16 random hex digits>``
(``TEMP_NAME``): its writer's pid and ``host_tag()``, and a random part. The first
write under a top-level folder removes the temp files killed writers left anywhere
in it: those whose writer was on this host and is gone, and any older than
``ABANDONED_AFTER``. Only names that match that scheme exactly are touched: a
user's ``.tmp-draft.md`` or ``.tinkex-tmp-notes`` beside a run is not the store's
and stays. The sweep covers the whole top-level folder, not only the folder being
written, because a killed run's temp files can sit in a folder no later write
goes to (a checkpoint of a session that never resumes).
"""

from __future__ import annotations

import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tinkex_cookbook.adapters.blobs.keys import TEMP_PREFIX, as_bytes, as_lines, normalize_key
from tinkex_cookbook.errors import BlobNotFoundError, BlobStoreError, ConfigError, InvalidKeyError
from tinkex_cookbook.ports.blobs import CHUNK
from tinkex_cookbook.processes import host_tag, pid_alive

_MISSING = (FileNotFoundError, NotADirectoryError, IsADirectoryError)
ABANDONED_AFTER = 3600.0
"""Seconds after which any temp file is a killed write's, whoever wrote it: no single write takes an hour."""
TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r"([1-9][0-9]{0,9})@([0-9a-f]{8})-[0-9a-f]{16}")
"""A temp file this store names (``open_temp``), matched whole: ``.tinkex-tmp-<pid>@<host tag>-<random>``."""


class LocalBlobStore:
    """Files under ``root``; the root is created on first write, not on construction."""

    def __init__(self, root: str | Path) -> None:
        self._root = Path(root).expanduser().absolute()
        self._swept: set[Path] = set()
        self._sweep_lock = threading.Lock()
        self._append_lock = threading.Lock()

    @property
    def root(self) -> Path:
        return self._root

    def __repr__(self) -> str:
        return f"LocalBlobStore(root={str(self._root)!r})"

    def read(self, key: str) -> bytes:
        with self._translate("read", key, missing_ok=False):
            return self._path(key).read_bytes()

    def read_chunks(self, key: str, size: int = CHUNK) -> Iterator[bytes]:
        """The file's bytes ``size`` at a time (``ReadsChunks``): hashing a large checkpoint holds one piece."""
        with self._translate("read", key, missing_ok=False):
            file = self._path(key).open("rb")
        with file, self._translate("read", key, missing_ok=False):
            while piece := file.read(size):
                yield piece

    def write(self, key: str, data: bytes) -> None:
        payload = as_bytes(key, data)
        with self._translate("write", key):
            path = self._path(key)
            self._prepare(path)
            _atomic_write(path, payload)

    def create(self, key: str, data: bytes) -> bool:
        payload = as_bytes(key, data)
        with self._translate("create", key):
            path = self._path(key)
            self._prepare(path)
            try:
                _atomic_write(path, payload, exclusive=True)
            except FileExistsError:
                if path.is_file():
                    return False
                raise  # a directory of other keys: as ``write`` does, a failure
            return True

    def append(self, key: str, data: bytes) -> None:
        payload = as_lines(key, data)
        with self._translate("append", key), self._append_lock:
            path = self._path(key)
            self._prepare(path)
            created = not path.exists()
            _append(path, payload)
            if created:
                _fsync_directory(path.parent)

    def exists(self, key: str) -> bool:
        with self._translate("check", key):
            return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        with self._translate("list", prefix):
            return sorted(k for k in _walk_keys(self._root) if k.startswith(prefix))

    def delete(self, key: str) -> None:
        with self._translate("delete", key, missing_ok=True):
            self._path(key).unlink()

    def uri(self, key: str) -> str:
        with self._translate("locate", key):
            return str(self._path(key))

    def key_for(self, location: str) -> str | None:
        """The key a printed location names: a path inside the root as ``uri`` prints it, absolute, relative
        to the working directory, or a ``file://`` URI (``""``: the root itself). ``None`` for a plain key:
        a relative path that does not lead into the root, or any relative path when the working directory
        is inside the root (there a key and a path would name different folders; the key wins). An
        absolute path outside the root is a ``ConfigError`` naming the root: joined onto it, it would
        silently name a new folder."""
        text = location.removeprefix("file://")
        if "://" in text:
            return None
        path = Path(text).expanduser()
        if not path.is_absolute() and _inside(Path.cwd(), self._root):
            return None
        key = _inside(path, self._root)
        if key is not None:
            return key
        if not path.is_absolute():
            return None
        raise ConfigError(
            f"log_path {location!r} is outside the blob store's root {self._root}: a run folder is a path inside "
            f"the root (e.g. {self._root / 'sl_basic' / 'my-run'}) or a folder relative to it (e.g. "
            "'sl_basic/my-run'); to keep runs elsewhere, point the root there (the manifest's "
            "blob_store: {adapter: local, root: DIR}, or $TINKEX_LOG_DIR)"
        )

    def _prepare(self, path: Path) -> None:
        """Create ``path``'s folder. The first time this store writes under a top-level folder, clear
        abandoned temp files from all of it: a killed run's checkpoint folder is one no resume writes to."""
        path.parent.mkdir(parents=True, exist_ok=True)
        parts = path.relative_to(self._root).parts
        top = self._root / parts[0] if len(parts) > 1 else self._root
        with self._sweep_lock:
            if top in self._swept:
                return
            self._swept.add(top)
        folders = [str(top)] if top == self._root else [folder for folder, _dirs, _files in os.walk(top)]
        now = time.time()
        for folder in folders:
            _remove_abandoned_temps(Path(folder), now)

    def _path(self, key: str) -> Path:
        """The file for ``key``, refusing keys that reach outside the root through symlinks."""
        path = self._root / normalize_key(key)
        root = self._root.resolve()
        if not path.resolve().is_relative_to(root):
            raise InvalidKeyError(f"invalid blob key {key!r}: it resolves outside the root {root}")
        return path

    @contextmanager
    def _translate(self, action: str, key: str, missing_ok: bool | None = None) -> Iterator[None]:
        """Turn ``OSError`` into the store's errors, chained to the cause.

        A missing file is ignored when ``missing_ok``, is ``BlobNotFoundError``
        when ``missing_ok is False``, and a plain failure when ``None``.
        """
        try:
            yield
        except BlobStoreError:
            raise
        except _MISSING as exc:
            if missing_ok:
                return
            if missing_ok is False:
                raise BlobNotFoundError(f"no blob under key {key!r} in {self!r}") from exc
            raise BlobStoreError(f"cannot {action} blob {key!r} in {self!r}: {exc}") from exc
        except OSError as exc:
            raise BlobStoreError(f"cannot {action} blob {key!r} in {self!r}: {exc}") from exc


def _inside(path: Path, root: Path) -> str | None:
    """``path`` (relative to the working directory, or absolute) as a key under ``root`` (``""``: the root
    itself), compared as written and with symlinks resolved; ``None`` if it is outside."""
    for candidate, base in ((Path(os.path.normpath(path.absolute())), root), (path.resolve(), root.resolve())):
        if candidate.is_relative_to(base):
            relative = candidate.relative_to(base).as_posix()
            return "" if relative == "." else relative
    return None


def _atomic_write(path: Path, data: bytes, exclusive: bool = False) -> None:
    """Write to a sibling temp file, fsync it, then rename it over ``path``; or, if ``exclusive``,
    hard-link it to ``path`` (``FileExistsError`` if ``path`` exists) and drop the temp name."""
    fd, tmp = open_temp(path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            os.link(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if exclusive:
        Path(tmp).unlink()
    _fsync_directory(path.parent)


def _append(path: Path, data: bytes) -> None:
    """Drop a torn tail, write ``data`` at the end in one call and fsync; on failure cut back to where it was."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        size = _drop_torn_tail(fd)
        try:
            written = os.write(fd, data)
            while written < len(data):  # a short write (a signal, a nearly full disk): finish it
                written += os.write(fd, data[written:])
            os.fsync(fd)
        except BaseException:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


TAIL_CHUNK = 4096


def _drop_torn_tail(fd: int) -> int:
    """Cut the file after its last newline (reading back only as far as that newline); return its size."""
    size = end = os.fstat(fd).st_size
    while end > 0:
        start = max(0, end - TAIL_CHUNK)
        chunk = os.pread(fd, end - start, start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            end = start + newline + 1
            break
        end = start
    if end != size:
        os.ftruncate(fd, end)
    return end


def temp_prefix() -> str:
    """How this process's temp files start: ``.tinkex-tmp-<pid>@<host tag>-``."""
    return f"{TEMP_PREFIX}{os.getpid()}@{host_tag()}-"


def open_temp(folder: Path) -> tuple[int, Path]:
    """A new temp file in ``folder``, named by ``TEMP_NAME``'s scheme, created exclusively (mode 0600, as
    ``tempfile.mkstemp`` makes them); its descriptor open for writing, and its path."""
    for _ in range(100):
        path = folder / f"{temp_prefix()}{secrets.token_hex(8)}"
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), path
        except FileExistsError:  # 64 random bits: in practice never
            continue
    raise FileExistsError(f"no free temp file name in {folder}")


def _remove_abandoned_temps(folder: Path, now: float) -> None:
    """Best effort: a temp file that cannot be judged or removed is left for a later write."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if TEMP_NAME.fullmatch(entry.name) is None:  # not a name this store gives: someone else's file
            continue
        try:
            if _abandoned(entry.name, entry.stat(follow_symlinks=False).st_mtime, now):
                os.unlink(entry.path)
        except OSError:
            continue


def _abandoned(name: str, mtime: float, now: float) -> bool:
    """A temp file of this store's scheme (``TEMP_NAME``) whose write is over: an hour old, or its writer gone."""
    writer = TEMP_NAME.fullmatch(name)
    if writer is None:
        return False
    if now - mtime > ABANDONED_AFTER:
        return True
    return writer[2] == host_tag() and not pid_alive(int(writer[1]))


def _fsync_directory(folder: Path) -> None:
    """Make a rename or link durable; directories cannot be opened for this outside POSIX."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _walk_keys(root: Path) -> Iterator[str]:
    """Keys of files under ``root`` that stay inside it, skipping in-flight temp files."""
    real_root = root.resolve()
    for dirpath, _dirnames, filenames in os.walk(root, onerror=_raise_unless_gone):
        for name in filenames:
            path = Path(dirpath, name)
            if name.startswith(TEMP_PREFIX) or not path.is_file():
                continue
            if path.resolve().is_relative_to(real_root):
                yield path.relative_to(root).as_posix()


def _raise_unless_gone(exc: OSError) -> None:
    """``os.walk`` error hook: a missing root or a directory deleted mid-walk lists as empty."""
    if not isinstance(exc, FileNotFoundError):
        raise exc
