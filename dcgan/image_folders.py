"""Training on a folder of your own PNG and JPEG images, decoded and resized with Pillow.

A folder whose images fit in IN_MEMORY_BYTES (as float32, after resizing) is decoded once and
held in memory; a bigger one is read from disk a batch at a time (see ImageFolder).
"""
import concurrent.futures
import sys
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from dcgan.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# The only formats Pillow may decode, whatever a file's name says: others run code of their own (EPS calls
# Ghostscript) or hold values that are not pixels (a TIFF of 32-bit integers).
IMAGE_FORMATS = ("PNG", "JPEG")
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")  # Pillow modes without colour
WIDE_GRAY_MODES = ("I", "I;16", "I;16B", "I;16L")  # 16-bit grayscale, read without losing its precision
# What Pillow raises for a file it cannot decode: a damaged PNG chunk is a SyntaxError, a bomb its own error.
DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)
MAX_PIXELS = 50_000_000  # larger images are skipped: decoding one takes gigabytes (a decompression bomb)
IN_MEMORY_BYTES = 2 * 2**30  # folders up to 2 GiB of float32 pixels are held in memory
DEFAULT_SIZE = 28
DECODING_THREADS = 4  # Pillow releases the GIL while it decodes and resizes


def image_files(folder):
    """The PNG and JPEG files under `folder`, subfolders included, in a fixed order."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def open_image(path):
    """`path` opened by Pillow as a PNG or JPEG, by its content; any other file is an UnidentifiedImageError."""
    return Image.open(path, formats=IMAGE_FORMATS)


def load_image_folder(folder, image_size=None, channels=None, center_crop=False, memory_limit=IN_MEMORY_BYTES,
                      labelled=False):
    """The images under `folder` as float32 (N, size, size, channels) in [-1, 1]: an array, or an ImageFolder if
    too big.

    Unreadable files are skipped, with a count on stderr. `channels` defaults to 1 when every image
    is grayscale, else 3. Images must be square unless `center_crop`, and at least `image_size`.
    `labelled`: (images, labels, class names), each image's class the first-level subfolder it lies in.
    """
    folder = Path(folder)
    files = image_files(folder)
    if not files:
        raise UserError(f"no PNG or JPEG images nor IDX files in folder {folder} (subfolders included); "
                        "put your images there, or pass a .npz, an IDX file or a dataset name")
    class_names = _class_folders(folder, files) if labelled else None
    sizes, modes, readable, skipped = [], set(), [], []
    for path in files:
        try:
            with open_image(path) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise UnidentifiedImageError(f"larger than {MAX_PIXELS:,} pixels: {image.width}x{image.height}")
                sizes.append(image.size)
                modes.add(image.mode)
            readable.append(path)
        except DECODE_ERRORS as error:
            skipped.append((path, error))
    _skip_or_refuse(skipped, len(readable), len(files), folder, "read")
    image_size = image_size or DEFAULT_SIZE
    channels = channels or (1 if modes <= set(GRAY_MODES) else 3)
    _check_sizes(readable, sizes, image_size, center_crop)
    images = ImageFolder(readable, image_size, channels, center_crop)
    if images.nbytes > memory_limit:
        print(f"{folder}: {len(images)} images of {image_size}x{image_size}x{channels} take "
              f"{images.nbytes / 2**30:.1f} GiB, more than the {memory_limit / 2**30:.1f} GiB held in memory; "
              "reading them from disk a batch at a time", file=sys.stderr)
        kept = images.files
    else:
        images, kept = _decode_all(images, folder, len(files))
    if not labelled:
        return images
    labels = np.array([class_names.index(path.relative_to(folder).parts[0]) for path in kept])
    empty = sorted(set(range(len(class_names))) - set(labels.tolist()))
    if empty:
        raise UserError(f"none of the images in class folder {folder / class_names[empty[0]]} could be read; "
                        "put readable PNG or JPEG images there, or remove the folder")
    return images, labels, class_names


def read_images_of_shape(path, image_shape):
    """The PNG and JPEG images at `path` (one file, or a folder and its subfolders) as float32 in [-1, 1], and
    the files read: each must already be of `image_shape` (H, W, C), grayscale for 1 channel, colour for 3.
    Unreadable files are skipped, with a count on stderr."""
    path = Path(path)
    files = image_files(path) if path.is_dir() else [path]
    if not files:
        raise UserError(
            f"no PNG or JPEG images in folder {path} (subfolders included); put the images to classify there"
        )
    height, width, channels = image_shape
    readable, skipped = [], []
    for file in files:
        try:
            with open_image(file) as image:
                size, gray = image.size, image.mode in GRAY_MODES
        except DECODE_ERRORS as error:
            skipped.append((file, error))
            continue
        if size != (width, height) or gray != (channels == 1):
            kind = {True: "grayscale", False: "colour"}
            raise UserError(
                f"{file} is a {size[0]}x{size[1]} {kind[gray]} image; the classifier takes {width}x{height} "
                f"{kind[channels == 1]} images (shape {height}x{width}x{channels}): convert them to that first"
            )
        readable.append(file)
    _skip_or_refuse(skipped, len(readable), len(files), path, "read")
    return _decode_all(ImageFolder(readable, height, channels, center_crop=False), path, len(files))


def _class_folders(folder, files):
    """The class names of a labelled folder: its subfolders, sorted; refused if an image lies outside them,
    a subfolder holds none, or there are fewer than two."""
    loose = [path for path in files if len(path.relative_to(folder).parts) == 1]
    if loose:
        raise UserError(f"{len(loose)} images lie in {folder} itself (e.g. {loose[0].name}), outside any class folder; "
                        "a labelled folder holds each image in the subfolder of its class: move them into one")
    names = sorted(path.name for path in folder.iterdir() if path.is_dir())
    holding = {path.relative_to(folder).parts[0] for path in files}
    empty = [name for name in names if name not in holding]
    if empty:
        raise UserError(f"class folder {folder / empty[0]} holds no PNG or JPEG images; put some there, or remove it")
    if len(names) < 2:
        raise UserError(f"{folder} holds one class folder only ({names[0]}); labels need two classes or more: "
                        "add another class folder")
    return names


def _decode_all(images, folder, file_count):
    """Every image of the ImageFolder `images` as one array, skipping those that fail to decode (a truncated file),
    and the files it holds."""
    decoded, failed = [], []
    for path, pixels in zip(images.files, images._threads.map(images.try_read, range(len(images)))):
        (failed if isinstance(pixels, Exception) else decoded).append((path, pixels))
    _skip_or_refuse(failed, len(decoded), file_count, folder, "decoded")
    return np.stack([pixels for _, pixels in decoded]).astype(np.float32) / 127.5 - 1, [path for path, _ in decoded]


def _skip_or_refuse(failed, usable, file_count, folder, verb):
    """Say on stderr which (path, error) `failed` are skipped; refuse the folder when none is `usable`."""
    if not usable:
        raise UserError(f"none of the {file_count} image files in {folder} could be {verb} (e.g. {failed[0][0]}: "
                        f"{_reason(failed[0][1])}); check that they are whole PNG or JPEG images")
    if failed:
        print(f"Skipping {len(failed)} of {file_count} image files in {folder} that could not be {verb}, "
              f"e.g. {failed[0][0]} ({_reason(failed[0][1])})", file=sys.stderr)


def _reason(error):
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(error).split(":")[0] if isinstance(error, UnidentifiedImageError) else str(error)
    return text or type(error).__name__


def _check_sizes(files, sizes, image_size, center_crop):
    widths, heights = np.array(sizes).T
    if not center_crop:
        oblong = np.flatnonzero(widths != heights)
        if len(oblong):
            first = oblong[0]
            raise UserError(
                f"{len(oblong)} of {len(files)} images are not square (e.g. {files[first]} is "
                f"{widths[first]}x{heights[first]}); "
                "pass --center-crop to train on their square centres, or crop them yourself"
            )
    small = np.flatnonzero(np.minimum(widths, heights) < image_size)
    if len(small):
        first = small[0]
        raise UserError(
            f"{len(small)} of {len(files)} images are smaller than --image-size {image_size} "
            f"(e.g. {files[first]} is {widths[first]}x{heights[first]}); pass a smaller --image-size or remove them"
        )


class ImageFolder:
    """Image files read as an array: `folder[indices]` decodes, crops and resizes just those images.

    It has the array's `shape`, `len` and `nbytes` (as float32), so training can index it
    like the in-memory images.
    """

    def __init__(self, files, image_size, channels, center_crop):
        self.files = list(files)
        self.image_size = image_size
        self.channels = channels
        self.center_crop = center_crop
        self.shape = (len(self.files), image_size, image_size, channels)
        self.nbytes = 4 * int(np.prod(self.shape))
        self._threads = concurrent.futures.ThreadPoolExecutor(DECODING_THREADS)

    def __len__(self):
        return len(self.files)

    def __getitem__(self, indices):
        pixels = list(self._threads.map(self._read, np.asarray(indices)))
        return np.stack(pixels).astype(np.float32) / 127.5 - 1

    def _read(self, index):
        pixels = self.try_read(index)
        if isinstance(pixels, Exception):
            raise UserError(f"cannot read {self.files[index]} any more ({_reason(pixels)}); remove it or put it back, "
                            "then continue with --resume") from None
        return pixels

    def try_read(self, index):
        """The pixels of image `index` (H, W, C) from 0 to 255, or the error that stopped its decoding."""
        try:
            with open_image(self.files[index]) as image:
                if image.mode in WIDE_GRAY_MODES:
                    image = Image.fromarray(
                        np.asarray(image, np.float32) / 257, "F"
                    )  # 0-65535 -> 0-255, kept fractional
                else:
                    image = image.convert("L" if self.channels == 1 else "RGB")
                if self.center_crop:
                    side = min(image.size)
                    left, top = (image.width - side) // 2, (image.height - side) // 2
                    image = image.crop((left, top, left + side, top + side))
                if image.size != (self.image_size, self.image_size):
                    image = image.resize((self.image_size, self.image_size), Image.Resampling.LANCZOS)
                pixels = np.asarray(image)
        except DECODE_ERRORS as error:
            return error
        if pixels.ndim == 2:
            pixels = pixels[..., np.newaxis]
        return np.repeat(pixels, self.channels, axis=2) if pixels.shape[2] != self.channels else pixels
