import numpy as np
import pytest
from PIL import Image

from dcgan.images import grid_shape, save_grid, tile, to_uint8


@pytest.mark.parametrize("count", range(1, 150))
def test_grid_is_the_most_nearly_square_that_fits(count):
    rows, columns = grid_shape(count)
    assert rows * columns >= count
    assert (rows - 1) * columns < count, "a whole row is empty"
    assert columns - rows in (0, 1)


def test_known_grids():
    assert [grid_shape(n) for n in (1, 2, 3, 5, 64, 65, 128)] == [
        (1, 1),
        (1, 2),
        (2, 2),
        (2, 3),
        (8, 8),
        (8, 9),
        (11, 12),
    ]


def test_to_uint8_maps_the_tanh_range_to_bytes():
    np.testing.assert_array_equal(to_uint8(np.array([-1.0, -2.0, 0.0, 1.0, 3.0])), [0, 0, 128, 255, 255])


def test_tile_places_images_row_by_row_and_leaves_spare_cells_black():
    images = np.stack([np.full((2, 3, 1), value) for value in (-0.5, 0.0, 0.5, 1.0, 0.25)])
    picture = tile(images)
    assert picture.shape == (2 * 2, 3 * 3, 1)  # 5 images: 2 rows of 3
    expected = [[-0.5, 0.0, 0.5], [1.0, 0.25, None]]
    for row, values in enumerate(expected):
        for column, value in enumerate(values):
            cell = picture[row * 2 : row * 2 + 2, column * 3 : column * 3 + 3]
            assert np.all(cell == (0 if value is None else to_uint8(value)))


def test_save_grid_writes_a_png_grayscale_or_colour(tmp_path):
    gray = np.random.default_rng(0).uniform(-1, 1, (7, 28, 28, 1))
    save_grid(gray, tmp_path / "gray.png")
    with Image.open(tmp_path / "gray.png") as png:
        assert png.format == "PNG" and png.mode == "L" and png.size == (3 * 28, 3 * 28)
        np.testing.assert_array_equal(np.array(png), tile(gray)[..., 0])
    save_grid(np.zeros((2, 4, 4, 3)), tmp_path / "colour.png")
    with Image.open(tmp_path / "colour.png") as png:
        assert png.mode == "RGB" and png.size == (8, 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["colour.png", "gray.png"], "temporary files left behind"
