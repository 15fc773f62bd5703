import numpy as np
import torch
from PIL import Image

from datasets.folder import ImageFolder


def test_modes_exif_recursion_and_unreadable_files(tmp_path):
    (tmp_path / "sub").mkdir()
    Image.fromarray(np.full((10, 20), 128, np.uint8)).save(tmp_path / "gray.png")
    Image.fromarray(np.full((10, 20, 4), 200, np.uint8), "RGBA").save(tmp_path / "sub" / "rgba.png")
    Image.fromarray(np.full((10, 20), 3, np.uint8), "P").save(tmp_path / "pal.png")
    Image.fromarray(np.full((10, 20), 65535, np.uint16)).save(tmp_path / "deep.png")
    rotated = Image.fromarray(np.zeros((10, 20, 3), np.uint8))
    exif = rotated.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    rotated.save(tmp_path / "exif.jpg", exif=exif)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8garbage")
    (tmp_path / "notes.txt").write_text("not an image")

    folder = ImageFolder(tmp_path)
    records = {r.path.split("/")[-1]: r for r in (folder[i] for i in range(len(folder)))}
    assert sorted(records) == ["broken.jpg", "deep.png", "exif.jpg", "gray.png", "pal.png", "rgba.png"]
    for name, record in records.items():
        if name == "broken.jpg":
            assert record.image is None and "corrupt" in record.error
            continue
        assert record.error is None and record.image.shape[0] == 3 and record.image.dtype == torch.float32
    assert records["exif.jpg"].orig_size == (20, 10)  # EXIF rotation applied
    assert records["gray.png"].orig_size == (10, 20)
    torch.testing.assert_close(records["deep.png"].image, torch.ones(3, 10, 20))  # 16-bit scaled, not clipped
