"""Files a crash cannot corrupt: atomic writes, and a lock that owns a run folder while a trainer writes to it."""
import errno
import glob
import os
import shutil
import uuid
from pathlib import Path

from dcgan.errors import UserError


PARTIAL = ".partial-"  # outputs being written are hidden as .partial-PID-RANDOM-NAME beside where they go
NAME_TAIL = 200  # of an output's name kept in its partial's (with its suffix, which Keras checks), within 255


def partial_path(path):
    """A hidden name beside `path` to write it under until it is whole: it holds the writer's process id, so that a
    later command can tell what a killed one left (`remove_partials`) from what a running one is writing."""
    path = Path(path)
    return path.with_name(f"{PARTIAL}{os.getpid()}-{uuid.uuid4().hex[:8]}-{path.name[-NAME_TAIL:]}")


def new_partial(path):
    """A hidden name to write `path` under (`partial_path`), after removing what killed writers left of it."""
    remove_partials(Path(path).parent, Path(path).name)
    return partial_path(path)


def remove_partials(folder, name=None):
    """Remove the partial outputs in `folder` (of the output `name` only, if given) whose writer is gone: a killed
    command's leftovers. Those of running commands stay."""
    pattern = f"{PARTIAL}*-{glob.escape(name[-NAME_TAIL:])}" if name else f"{PARTIAL}*"
    for leftover in Path(folder).glob(pattern):
        writer = leftover.name[len(PARTIAL):].split("-")[0]
        if writer.isdigit() and not _running(int(writer)):
            remove(leftover)


def _running(process):
    if os.name == "nt":  # os.kill would end the process there: keep its files
        return True
    try:
        os.kill(process, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: running
        return True
    return True


def write_atomically(path, write, replace=True):
    """Call `write(temporary_path)`, flush it to disk, then move it to `path`: a crash leaves the old file or the
    new one, never half of one. With `replace` False, `path` must not exist, even if another process creates it
    meanwhile: a UserError then, and nothing is replaced."""
    path = Path(path)
    temporary = new_partial(path)
    try:
        write(temporary)
        with open(temporary, "rb") as file:
            os.fsync(file.fileno())
        if replace:
            os.replace(temporary, path)
        else:
            place_new(temporary, path)
    finally:
        remove(temporary)


def place_new(partial, path):
    """Move the whole file or folder `partial` to `path`, which must not exist: of two commands racing for one
    name, one wins and the other gets a UserError."""
    try:
        if Path(partial).is_dir():
            os.rename(partial, path)  # fails on a file or a folder with anything in it
        else:
            _link_or_rename(partial, path)
    except OSError as error:
        if error.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
            raise
        raise UserError(f"{path} appeared while this command was writing it (another command wrote there); "
                        "choose another --output, or remove it first") from None


def _link_or_rename(partial, path):
    try:
        os.link(partial, path)  # unlike a rename, never replaces
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        if os.path.lexists(path):  # a file system without hard links: checked, then renamed
            raise FileExistsError(errno.EEXIST, "exists") from None
        os.rename(partial, path)


def remove(path):
    """Delete a file, a folder with its contents, or a symbolic link itself (never what it points to); nothing if
    `path` is not there."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def read_small_file(path, limit):
    """The text of the file `path`, refused unread if it is not a regular file (a FIFO would block, a device never
    end) or if it holds more than `limit` bytes."""
    with open_bounded(path, limit, "rb") as file:
        return file.read().decode("utf-8")


def open_bounded(path, limit, mode="r", **options):
    """`path` opened, refused unopened if it is not a regular file (a FIFO would block, a device never end) or if
    it holds more than `limit` bytes."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    if path.exists() and path.stat().st_size > limit:
        raise ValueError(f"it holds more than {limit:,} bytes")
    return open(path, mode, **options)


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
