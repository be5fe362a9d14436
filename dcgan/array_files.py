"""Arrays from untrusted files: .npz archives and IDX files (MNIST's format), each checked against its header,
the file and a memory limit before anything is allocated."""
import gzip
import math
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from dcgan.errors import UserError
from dcgan.image_folders import IN_MEMORY_BYTES

IDX_UBYTE = 0x08


# What zipfile and numpy raise for a damaged archive: bad deflate data is a zlib.error, an encrypted member a
# RuntimeError, an unknown compression method NotImplementedError.
NPZ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError)


def read_npz(path, keys, memory_limit=IN_MEMORY_BYTES):
    """The arrays named in `keys` that the .npz at `path` holds (only those are read), and the names of all it holds.

    Each array's header is checked before the array is read: numbers, within the memory limit (read and
    converted to float32), and no bigger than what the file holds.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            for key in keys:
                if f"{key}.npy" in archive.namelist():
                    shape, dtype = npy_header(path, archive, key)
                    if dtype.kind not in "biuf":
                        raise UserError(f"{path}: {key} holds {dtype} values, not numbers; save the images as "
                                        "integers or floats")
                    check_memory(path, shape, memory_limit, dtype.itemsize)
        with np.load(path, allow_pickle=False) as arrays:
            return {key: arrays[key] for key in keys if key in arrays.files}, arrays.files
    except NPZ_ERRORS as error:
        raise UserError(
            f"cannot read {path} as a .npz file "
            f"({str(error).splitlines()[0] if str(error) else type(error).__name__}); "
            "check the file or save it again with numpy.savez"
        ) from None


def npy_header(path, archive, key):
    """The shape and dtype of the array `key` in the open .npz `archive`, read from its header without reading the
    array; refused if the header promises more than the member holds."""
    info = archive.getinfo(f"{key}.npy")
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(
            version
        )
        if read_header is None:
            raise UserError(
                f"{path}: {key} is saved in .npy format {version[0]}.{version[1]}, which dcgan does not read; "
                "save it again with numpy.savez"
            )
        shape, _, dtype = read_header(member)
    if math.prod(shape) * dtype.itemsize > info.file_size:
        raise UserError(
            f"{path} is damaged: {key}'s header promises shape {shape} of {dtype}, more than the file holds; "
            "save it again"
        )
    return shape, dtype


def check_memory(source, shape, memory_limit, stored_bytes=1):
    """Refuse data that would not fit in `memory_limit` bytes once read (`stored_bytes` a value) and converted to
    float32, before it is allocated."""
    size = (stored_bytes + 4) * math.prod(shape)
    if size > memory_limit:
        raise UserError(
            f"{source} holds shape {tuple(shape)}: {size / 2**30:.1f} GiB read and converted to float32, more than "
            f"the {memory_limit / 2**30:.1f} GiB dcgan holds in memory; use part of it, or save the images as PNG "
            "files in a folder, which is read from disk a batch at a time"
        )


def read_idx(path, memory_limit=IN_MEMORY_BYTES):
    """The array in an IDX file (raw or gzipped) of unsigned bytes, as used by MNIST.

    The header's shape is checked against the memory limit and the file before the pixels are read,
    so a small gzip that would inflate to gigabytes is refused unread.
    """
    path = Path(path)
    try:
        with (gzip.open(path) if path.suffix == ".gz" else open(path, "rb")) as file:
            magic = file.read(4)
            if len(magic) < 4 or magic[:2] != b"\0\0" or magic[2] != IDX_UBYTE:
                raise UserError(
                    f"{path} is not an IDX file of unsigned bytes; pass a .npz (x_train or x), an IDX file or a folder"
                )
            dimensions = file.read(4 * magic[3])
            if len(dimensions) < 4 * magic[3]:
                raise UserError(f"{path} is truncated within its header; download or copy it again")
            shape = struct.unpack(f">{magic[3]}I", dimensions)
            check_memory(path, shape, memory_limit)
            data = file.read(math.prod(shape) + 1)
    except (OSError, EOFError, zlib.error) as error:
        raise UserError(f"cannot read {path} ({error}); pass a readable .npz, IDX file or folder") from None
    if len(data) != math.prod(shape):
        raise UserError(
            f"{path} does not match its header, which promises shape {shape} "
            f"({'more' if len(data) < math.prod(shape) else 'fewer'} bytes than it holds); download or copy it again"
        )
    return np.frombuffer(data, np.uint8).reshape(shape)
