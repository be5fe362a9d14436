"""Writing files so that a crash at any moment leaves the old file or the new one, never a part."""
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
        raise UserError(f"cannot write to folder {folder} ({error.strerror}); choose a writable one with {option}") from None
    return folder
