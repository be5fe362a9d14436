"""Files a crash cannot corrupt: atomic writes, and a lock that owns a run folder while a trainer writes to it."""
import errno
import os
import uuid
from pathlib import Path

from dcgan.errors import UserError


def write_atomically(path, write):
    """Call `write(temporary_path)`, flush it to disk, then rename it over `path`.

    The temporary name keeps `path`'s suffix because Keras insists on `.keras`
    and `.weights.h5`.
    """
    path = Path(path)
    temporary = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        write(temporary)
        with open(temporary, "rb") as file:
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def fsync_folder(folder):
    """Flush a folder's files, then its list of entries, to disk."""
    for path in Path(folder).iterdir():
        if path.is_file():
            with open(path, "rb") as file:
                os.fsync(file.fileno())
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def writable_folder(folder, option):
    """Create `folder` if needed and prove a file can be written there; else a UserError naming `option`."""
    folder = Path(folder)
    probe = folder / f".write-test-{uuid.uuid4().hex[:8]}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise UserError(
            f"cannot write to folder {folder} ({error.strerror}); choose a writable one with {option}"
        ) from None
    return folder


LOCK_FILE = "train.lock"


class FolderLock:
    """Owns a run folder while a trainer writes to it: an OS lock on FOLDER/train.lock, which the OS
    releases when the process ends however it ends, so a killed trainer never leaves the folder locked.

    A second trainer on the folder gets a UserError naming the process that holds it.
    """

    def __init__(self, folder):
        self.path = Path(folder) / LOCK_FILE
        self.file = None

    def __enter__(self):
        self.file = open(self.path, "a+")
        try:
            _lock(self.file)
        except OSError as error:
            if error.errno not in (
                errno.EAGAIN,
                errno.EACCES,
            ):  # not held elsewhere: the folder cannot be locked at all
                self.file.close()
                raise UserError(f"cannot lock {self.path} ({error.strerror}); train in a folder on a local disk "
                                "with --weights-dir") from None
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.file.close()
            raise UserError(
                f"{self.path.parent} is in use by dcgan train ({holder}); wait for it to end or stop it, "
                "or train in another --weights-dir"
            ) from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"process {os.getpid()}\n")
        self.file.flush()
        return self

    def __exit__(self, *exception):
        self.file.close()  # closing releases the lock


try:
    import fcntl

    def _lock(file):
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

except ImportError:  # Windows
    import msvcrt

    def _lock(file):
        file.seek(0)
        msvcrt.locking(file.fileno(), msvcrt.LK_NBLCK, 1)
