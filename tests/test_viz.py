"Tests of `aepsl.viz`: the VOC palette, colouring, overlays, grids and palette-PNG round trips."
import os
import stat

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image

from aepsl.viz import (colorize, load_label_png, overlay_heatmap, overlay_mask, save_label_png, show_grid,
                       show_label_maps, to_rgb, voc_palette)


def reference_palette(n=256):
    "The loop from the VOC development kit (VOClabelcolormap.m), written independently of `voc_palette`."
    def bit(v, i): return (v >> i) & 1
    cmap = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= bit(c, 0) << (7 - j)
            g |= bit(c, 1) << (7 - j)
            b |= bit(c, 2) << (7 - j)
            c >>= 3
        cmap.append([r, g, b])
    return np.array(cmap)


def label_map(seed=0, shape=(23, 31)):
    rng = np.random.default_rng(seed)
    lm = rng.integers(0, 21, shape).astype(np.uint8)
    lm[rng.random(shape) < 0.15] = 255
    return lm


def test_palette():
    pal = voc_palette()
    assert pal.dtype == np.uint8 and pal.shape == (256, 3)
    np.testing.assert_array_equal(pal, reference_palette())
    assert pal[0].tolist() == [0, 0, 0]
    assert pal[1].tolist() == [128, 0, 0]
    assert pal[2].tolist() == [0, 128, 0]
    assert pal[3].tolist() == [128, 128, 0]
    assert pal[15].tolist() == [192, 128, 128]   # person
    assert pal[255].tolist() == [224, 224, 192]  # ignore
    np.testing.assert_array_equal(voc_palette(21), pal[:21])


def test_colorize():
    lm = label_map()
    col = colorize(lm)
    assert col.shape == lm.shape + (3,) and col.dtype == np.uint8
    np.testing.assert_array_equal(col, reference_palette()[lm])
    np.testing.assert_array_equal(colorize(torch.from_numpy(lm).long()), col)
    assert colorize(np.array([[255]]))[0, 0].tolist() == [224, 224, 192]
    with pytest.raises(ValueError, match='300'):
        colorize(np.array([[0, 300]]))
    with pytest.raises(TypeError):
        colorize(np.zeros((2, 2), np.float32))


def test_to_rgb_layouts():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (5, 7, 3)).astype(np.uint8)
    chw = torch.from_numpy(img).permute(2, 0, 1)
    np.testing.assert_array_equal(to_rgb(img), img)
    np.testing.assert_array_equal(to_rgb(chw), img)
    np.testing.assert_array_equal(to_rgb(chw.float() / 255), img)
    grey = to_rgb(torch.full((1, 2, 2), 1.0))
    assert grey.shape == (2, 2, 3) and (grey == 255).all()
    with pytest.raises(ValueError, match=r'\(2, 2, 5\)'):
        to_rgb(np.zeros((2, 2, 5)))


def test_overlays():
    img = np.full((4, 6, 3), 100, np.uint8)
    lm = np.zeros((4, 6), np.uint8)
    lm[1, 2], lm[2, 3] = 1, 255
    ov = overlay_mask(img, lm, alpha=0.5)
    assert ov.dtype == np.uint8 and ov.shape == (4, 6, 3)
    assert ov[0, 0].tolist() == [100, 100, 100]              # background untouched
    assert ov[1, 2].tolist() == [114, 50, 50]                # (100 + 128)/2, 100/2, 100/2
    assert ov[2, 3].tolist() == [162, 162, 146]              # ignore colour blended
    with pytest.raises(ValueError, match='4×5'):
        overlay_mask(img, lm[:, :5])
    heat = np.zeros((4, 6))
    heat[0, 0] = 1.0
    hov = overlay_heatmap(img, heat, alpha=1.0)
    jet = matplotlib.colormaps['jet']
    assert hov[0, 0].tolist() == np.rint(np.array(jet(1.0)[:3]) * 255).astype(int).tolist()
    assert hov[3, 5].tolist() == np.rint(np.array(jet(0.0)[:3]) * 255).astype(int).tolist()
    np.testing.assert_array_equal(overlay_heatmap(img, heat, alpha=0.0), img)
    with pytest.raises(ValueError, match='shape'):
        overlay_heatmap(img, np.zeros((1, 4, 6)))


def test_show_grid_and_label_maps():
    img = np.zeros((8, 8, 3), np.uint8)
    fig = show_grid([img, torch.rand(3, 8, 8), np.random.rand(8, 8), label_map(shape=(8, 8))],
                    titles=list('abcd'), ncols=3)
    try:
        assert len(fig.axes) == 6
        assert [ax.get_title() for ax in fig.axes[:4]] == list('abcd')
        assert len(fig.axes[5].images) == 0 and len(fig.axes[0].images) == 1
        # a 2-D integer map is drawn in VOC colours, a 2-D float map on a 0-1 colour scale
        np.testing.assert_array_equal(fig.axes[3].images[0].get_array(), colorize(label_map(shape=(8, 8))))
        assert fig.axes[2].images[0].get_clim() == (0, 1)
    finally:
        plt.close(fig)
    fig = show_label_maps([label_map(1, (8, 8))], images=[img])
    plt.close(fig)
    with pytest.raises(ValueError, match='1 titles for 2'):
        show_grid([img, img], titles=['x'])
    with pytest.raises(ValueError):
        show_label_maps([label_map()], images=[img, img])


@pytest.mark.parametrize('as_tensor', [False, True])
def test_png_round_trip(tmp_path, as_tensor):
    lm = label_map(3)
    assert (lm == 255).any() and (lm == 0).any() and (lm == 20).any()
    path = tmp_path / 'nested' / '2007_000123.png'
    out = save_label_png(torch.from_numpy(lm) if as_tensor else lm, path)
    assert out == path
    assert os.listdir(path.parent) == ['2007_000123.png']   # no temporary file left
    back = load_label_png(path)
    assert back.dtype == np.uint8 and back.shape == lm.shape
    np.testing.assert_array_equal(back, lm)
    with Image.open(path) as im:
        assert im.mode == 'P'
        assert im.size == (lm.shape[1], lm.shape[0])
        np.testing.assert_array_equal(np.array(im.getpalette()[:768]).reshape(256, 3), reference_palette())
        np.testing.assert_array_equal(np.array(im.convert('RGB')), reference_palette()[lm])
    load_label_png(str(path))  # str paths too


def test_png_overwrite_and_failed_write(tmp_path, monkeypatch):
    path = tmp_path / 'a.png'
    save_label_png(np.zeros((3, 4), np.uint8), path)
    save_label_png(np.full((3, 4), 7, np.uint8), path)    # overwrite in place
    assert (load_label_png(path) == 7).all()
    assert os.listdir(tmp_path) == ['a.png']

    def broken_save(self, fp, *args, **kwargs):
        if hasattr(fp, 'write'): fp.write(b'\x89PNG half')
        else: open(fp, 'wb').write(b'\x89PNG half')
        raise OSError('disk full')
    monkeypatch.setattr(Image.Image, 'save', broken_save)
    with pytest.raises(OSError, match='disk full'):
        save_label_png(np.full((3, 4), 9, np.uint8), path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ['a.png']              # the temporary file was removed
    assert (load_label_png(path) == 7).all()              # and the old file is intact


def test_png_errors(tmp_path):
    missing = tmp_path / 'nope' / 'missing.png'
    with pytest.raises(FileNotFoundError, match='missing.png'):
        load_label_png(missing)
    with pytest.raises(ValueError, match=r'\(4, 5, 3\)'):
        save_label_png(np.zeros((4, 5, 3), np.uint8), tmp_path / 'x.png')
    with pytest.raises(ValueError, match=r'\(1, 4, 5\)'):
        save_label_png(torch.zeros(1, 4, 5, dtype=torch.uint8), tmp_path / 'x.png')
    with pytest.raises(ValueError, match='256'):
        save_label_png(np.array([[0, 256]]), tmp_path / 'x.png')
    with pytest.raises(TypeError):
        save_label_png(np.zeros((2, 2), np.float32), tmp_path / 'x.png')
    assert os.listdir(tmp_path) == []                      # nothing written by failed saves
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / 'rgb.png')
    with pytest.raises(ValueError, match='RGB'):
        load_label_png(tmp_path / 'rgb.png')


@pytest.mark.parametrize('umask,mode', [(0o022, 0o644), (0o077, 0o600)])
def test_png_mode_honours_umask(tmp_path, umask, mode):
    "mkstemp makes 0o600 files: the writer must give the file the mode the umask asks for."
    old = os.umask(umask)
    try: p = save_label_png(label_map(), tmp_path / 'm.png')
    finally: os.umask(old)
    assert oct(stat.S_IMODE(p.stat().st_mode)) == oct(mode)


def test_png_root_refuses_outside(tmp_path):
    root = tmp_path / 'run'
    save_label_png(label_map(), root / 'pseudo' / 'a.png', root=root)           # inside: fine
    with pytest.raises(ValueError, match='outside'):
        save_label_png(label_map(), root / '..' / 'escaped.png', root=root)
    assert not (tmp_path / 'escaped.png').exists()
    assert sorted(p.name for p in tmp_path.rglob('*') if p.is_file()) == ['a.png']


def test_truncated_label_png_names_the_file(tmp_path):
    "A label PNG cut short (a full disk, a killed copy) is refused naming its path, not with PIL's pathless error."
    p = save_label_png(np.zeros((20, 30), np.uint8), tmp_path / 'a.png')
    p.write_bytes(p.read_bytes()[:50])
    with pytest.raises(ValueError, match=r'a\.png.*truncated'): load_label_png(p)
