"Bad-input, round-trip and CLI checks for aepsl.data and aepsl.voc that do not belong in the notebook's prose."
import os, re, shlex, shutil, stat, subprocess, sys
from pathlib import Path
import numpy as np, pytest, torch
from PIL import Image
from aepsl.data import SyntheticWSSS, synthetic_sample, ArrayDataset, seg_transforms, mean_pixel, SYNTH_CLASSES
from aepsl.runs import atomic_write
from aepsl.voc import VOCWSSS, synthetic_voc, write_voc, labels_from_mask, VOC_CLASSES, main_synthetic, convert_cls_labels, read_cls_labels, pil_to_rgb
from aepsl.viz import save_label_png

@pytest.fixture
def voc(tmp_path):
    synthetic_voc(tmp_path / 'voc', n_train=6, n_val=3, size=48, seed=5)
    return tmp_path / 'voc'

def small_voc(root, ids=('2007_000032', '2007_000039'), classes=VOC_CLASSES, **kw):
    "A tiny VOC folder: 8×8 black images, empty masks."
    n = len(ids)
    return write_voc(root, np.zeros((n, 8, 8, 3), np.uint8), np.zeros((n, 8, 8), np.uint8), list(ids), {'train': list(ids)}, classes, **kw)

def files_under(p): return sorted(str(q.relative_to(p)) for q in Path(p).rglob('*') if q.is_file())

# ---- one interface, synthetic and VOC ----

def test_round_trip_labels_identical(voc):
    ref = SyntheticWSSS(9, size=48, seed=5)
    trn, val = VOCWSSS(voc, 'train'), VOCWSSS(voc, 'val')
    np.testing.assert_array_equal(np.concatenate([trn.labels, val.labels]), ref.labels)
    for i in range(6): np.testing.assert_array_equal(trn.mask(i), ref.mask(i))
    assert trn.ids == ref.ids[:6] and trn.has_masks and ref.has_masks

def test_synthetic_per_image_equals_stacked():
    ds = SyntheticWSSS(12, size=40, seed=3, start=5)
    imgs, masks = [ds.image(i) for i in range(12)], [ds.mask(i) for i in range(12)]
    parts, labels = [ds.part(i) for i in range(12)], ds.labels
    assert ds._arrays is None                        # per-image access and labels build no stacked arrays
    assert labels.shape == (12, 5) and labels.dtype == np.float32
    ref = [synthetic_sample(5 + i, size=40, seed=3) for i in range(12)]
    for i in range(12):
        np.testing.assert_array_equal(imgs[i], ref[i][0]); np.testing.assert_array_equal(masks[i], ref[i][1])
        np.testing.assert_array_equal(labels[i], ref[i][2]); np.testing.assert_array_equal(parts[i], ref[i][3])
    np.testing.assert_array_equal(ds.images, np.stack(imgs)); np.testing.assert_array_equal(ds.masks, np.stack(masks))
    np.testing.assert_array_equal(ds.parts, np.stack(parts))
    np.testing.assert_array_equal(SyntheticWSSS(12, size=40, seed=3, start=5).images, ds.images)   # stacked first, same
    assert ds.ids[0] == 'syn3_000005' and ds.classes == SYNTH_CLASSES and len(ds) == 12
    with pytest.raises(IndexError, match='out of range'): ds.image(12)

def test_synthetic_mixed_sizes():
    sizes = [(64, 96), (96, 96), (120, 80)]
    ds = SyntheticWSSS(6, seed=1, sizes=sizes)
    for i in range(6):
        im, m, p = ds.image(i), ds.mask(i), ds.part(i)
        assert im.shape == sizes[i % 3] + (3,) and m.shape == sizes[i % 3] == p.shape
        np.testing.assert_array_equal(ds.labels[i], labels_from_mask(m, 5))   # labels of the cropped mask
    np.testing.assert_array_equal(ds.image(1), synthetic_sample(1, seed=1)[0])  # a 96×96 crop of a 96 scene is the scene
    with pytest.raises(ValueError, match='different sizes'): ds.images
    with pytest.raises(ValueError, match='pair'): SyntheticWSSS(2, sizes=[64])

def test_mixed_size_format_voc_round_trip(tmp_path):
    sizes = [(64, 96), (96, 96), (120, 80)]
    root = synthetic_voc(tmp_path / 'mix', n_train=5, n_val=3, seed=7, sizes=sizes, formats=('jpg', 'png'))
    ref = SyntheticWSSS(8, seed=7, sizes=sizes)
    trn, val = VOCWSSS(root, 'train'), VOCWSSS(root, 'val')
    got = [(d, k) for d in (trn, val) for k in range(len(d))]
    for n, (d, k) in enumerate(got):
        p = d.image_path(k)
        assert p.suffix == ('.jpg', '.png')[n % 2]
        with Image.open(p) as im: assert im.format == ('JPEG', 'PNG')[n % 2]
        img = d.image(k)
        assert img.shape == sizes[n % 3] + (3,)
        if p.suffix == '.png': np.testing.assert_array_equal(img, ref.image(n))
        else: assert np.abs(img.astype(int) - ref.image(n)).mean() < 8
        np.testing.assert_array_equal(d.mask(k), ref.mask(n))
        x, y, m = d[k]
        assert x.shape == (3,) + sizes[n % 3] and m.shape == sizes[n % 3]
    np.testing.assert_array_equal(np.concatenate([trn.labels, val.labels]), ref.labels)

def test_image_path_names_id_and_tried_paths(voc):
    ds = VOCWSSS(voc, 'train'); os.remove(ds.image_path(3))
    with pytest.raises(FileNotFoundError) as e: ds.image(3)
    for suf in ('.jpg', '.jpeg', '.png'): assert f'{ds.ids[3]}{suf}' in str(e.value)
    assert 'train.txt' in str(e.value)
    Image.fromarray(np.zeros((48, 48, 3), np.uint8)).save(voc / 'JPEGImages' / f'{ds.ids[3]}.jpeg')
    assert ds.image_path(3).suffix == '.jpeg' and ds.image(3).shape == (48, 48, 3)

# ---- folder and split errors ----

def test_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match='nowhere'): VOCWSSS(tmp_path / 'nowhere')

def test_missing_jpegimages(tmp_path):
    (tmp_path / 'x').mkdir()
    with pytest.raises(FileNotFoundError, match='JPEGImages'): VOCWSSS(tmp_path / 'x')

def test_missing_split(voc):
    with pytest.raises(FileNotFoundError, match='trainval.txt'): VOCWSSS(voc, 'trainval')

def test_empty_split(voc):
    (voc / 'ImageSets' / 'Segmentation' / 'empty.txt').write_text('\n')
    with pytest.raises(ValueError, match='empty.txt'): VOCWSSS(voc, 'empty')

@pytest.mark.parametrize('bad', ['../../x', '/abs/dir/img', 'a/b', 'a\\b', '..'])
def test_split_id_that_is_a_path_refused(voc, bad):
    f = voc / 'ImageSets' / 'Segmentation' / 'train.txt'
    lines = f.read_text().splitlines(); lines.insert(2, bad)   # line 3
    f.write_text('\n'.join(lines) + '\n')
    with pytest.raises(ValueError) as e: VOCWSSS(voc, 'train')
    assert f'{f} line 3' in str(e.value) and repr(bad) in str(e.value)

def test_id_without_image(voc):
    f = voc / 'ImageSets' / 'Segmentation' / 'train.txt'; f.write_text(f.read_text() + 'ghost_01\n')
    ds = VOCWSSS(voc, 'train')
    with pytest.raises(FileNotFoundError, match='ghost_01'): ds[len(ds) - 1]

def test_id_without_mask(voc):
    ds = VOCWSSS(voc, 'train'); os.remove(ds.mask_path(2))
    with pytest.raises(FileNotFoundError, match=ds.ids[2]): ds[2]
    with pytest.raises(FileNotFoundError, match=ds.ids[2]): ds.labels

def test_corrupt_image(voc):
    ds = VOCWSSS(voc, 'train'); ds.image_path(1).write_bytes(b'\xff\xd8\xff garbage')
    with pytest.raises(ValueError, match=ds.ids[1]): ds[1]

def test_corrupt_mask(voc):
    ds = VOCWSSS(voc, 'train'); ds.mask_path(1).write_bytes(b'\x89PNG nope')
    with pytest.raises(ValueError, match=ds.ids[1]): ds[1]

def test_mask_size_mismatch(voc):
    ds = VOCWSSS(voc, 'train'); save_label_png(np.zeros((20, 30), np.uint8), ds.mask_path(0))
    with pytest.raises(ValueError, match=r'30×20'): ds[0]

def test_rgb_mask_rejected(voc):
    ds = VOCWSSS(voc, 'train'); Image.new('RGB', (48, 48)).save(ds.mask_path(0))
    with pytest.raises(ValueError, match='mode RGB'): ds[0]

# ---- images of any PIL mode ----

G8 = np.arange(0, 256, 4, dtype=np.uint8).reshape(8, 8)
GREY = np.repeat(G8[..., None], 3, 2)

def test_16bit_grey_image_scaled_not_white(voc):
    ds = VOCWSSS(voc, 'train'); p = ds.image_path(0); os.remove(p)
    Image.fromarray(G8.astype(np.uint16) * 257).save(p.with_suffix('.png'))   # a 16-bit grey PNG
    with Image.open(p.with_suffix('.png')) as im: assert im.mode.startswith('I')
    np.testing.assert_array_equal(ds.image(0), GREY)
    assert ds.image(0).max() == 252 and ds.image(0).min() == 0

@pytest.mark.parametrize('mode', ['I;16', 'I;16B', 'I;16L'])
def test_16bit_modes(mode):
    v = (G8.astype(np.uint16) * 257)
    raw = v.astype('>u2' if mode == 'I;16B' else '<u2').tobytes()
    im = Image.frombytes(mode, (8, 8), raw)
    assert im.mode == mode
    np.testing.assert_array_equal(pil_to_rgb(im), GREY)

def test_int32_image_with_16bit_values():
    np.testing.assert_array_equal(pil_to_rgb(Image.fromarray(G8.astype(np.int32) * 257, 'I')), GREY)
    with pytest.raises(ValueError, match='70000'): pil_to_rgb(Image.fromarray(np.full((2, 2), 70000, np.int32), 'I'), 'big.tif')

def test_other_modes_to_rgb():
    rgb = np.random.default_rng(0).integers(0, 256, (8, 8, 3)).astype(np.uint8)
    np.testing.assert_array_equal(pil_to_rgb(Image.fromarray(G8, 'L')), GREY)
    np.testing.assert_array_equal(pil_to_rgb(Image.fromarray(G8, 'L').convert('LA')), GREY)
    np.testing.assert_array_equal(pil_to_rgb(Image.fromarray(rgb).convert('RGBA')), rgb)
    pal = Image.fromarray(G8 // 64, 'L').convert('P'); pal.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9])
    want = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [9, 9, 9]], np.uint8)[G8 // 64]
    np.testing.assert_array_equal(pil_to_rgb(pal), want)
    np.testing.assert_array_equal(pil_to_rgb(pal.convert('PA')), want)
    bw = Image.fromarray(G8 >= 128)
    assert bw.mode == '1'
    np.testing.assert_array_equal(pil_to_rgb(bw), np.where(GREY >= 128, 255, 0))
    cmyk = Image.fromarray(rgb).convert('CMYK')
    np.testing.assert_array_equal(pil_to_rgb(cmyk), np.array(cmyk.convert('RGB')))
    assert np.abs(pil_to_rgb(cmyk).astype(int) - rgb).max() <= 1

def test_float_image_refused_naming_file_and_mode(voc):
    ds = VOCWSSS(voc, 'train'); p = ds.image_path(0); os.remove(p)
    Image.fromarray(np.zeros((8, 8), np.float32)).save(p.with_suffix('.tif'))
    os.rename(p.with_suffix('.tif'), p.with_suffix('.png'))   # a TIFF behind a .png name: PIL reads by content
    with pytest.raises(ValueError) as e: ds.image(0)
    assert str(p.with_suffix('.png')) in str(e.value) and "'F'" in str(e.value)

# ---- masks ----

def test_16bit_mask_value_257_refused(voc):
    ds = VOCWSSS(voc, 'train'); m = ds.mask(0).astype(np.uint16); m[3, 4] = 257
    Image.fromarray(m).save(ds.mask_path(0))
    with Image.open(ds.mask_path(0)) as im: assert im.mode.startswith('I')
    with pytest.raises(ValueError) as e: ds.mask(0)
    assert str(ds.mask_path(0)) in str(e.value) and 'value 257' in str(e.value)

def test_16bit_mask_valid_values_read(voc):
    ds = VOCWSSS(voc, 'train'); m = ds.mask(0)
    Image.fromarray(m.astype(np.uint16)).save(ds.mask_path(0))
    np.testing.assert_array_equal(ds.mask(0), m)

def test_mask_class_beyond_class_names(tmp_path):
    root = small_voc(tmp_path / 'v', ids=['a', 'b'])   # VOC's 20 classes
    m = np.zeros((8, 8), np.uint8); m[2, 2] = 37; save_label_png(m, root / 'SegmentationClass' / 'b.png')
    ds = VOCWSSS(root, 'train')
    with pytest.raises(ValueError) as e: ds.mask(1)
    assert str(root / 'SegmentationClass' / 'b.png') in str(e.value) and 'value 37' in str(e.value)
    with pytest.raises(ValueError, match='value 37'): ds.labels
    m[2, 2] = 20; save_label_png(m, root / 'SegmentationClass' / 'b.png')   # the last class is fine
    assert ds.labels[1, 19] == 1

def test_mask_class_out_of_range(voc):
    ds = VOCWSSS(voc, 'train'); m = ds.mask(0); m[0, 0] = 9; save_label_png(m, ds.mask_path(0))
    with pytest.raises(ValueError, match=f'{ds.ids[0]}.png holds value 9'): ds.labels

# ---- image-level labels ----

def test_unknown_class_name(voc):
    ds = VOCWSSS(voc, 'train')
    f = voc / 'ImageSets' / 'Segmentation' / 'train_labels.txt'
    f.write_text(''.join(f'{i} checker\n' for i in ds.ids[:-1]) + f'{ds.ids[-1]} unicorn\n')
    with pytest.raises(ValueError) as e: VOCWSSS(voc, 'train', with_masks=False)
    assert 'unicorn' in str(e.value) and f'{f} line 6' in str(e.value) and ds.ids[-1] in str(e.value)

def test_names_labels(voc):
    ds = VOCWSSS(voc, 'train')
    (voc / 'ImageSets' / 'Segmentation' / 'train_labels.txt').write_text(''.join(f'{i} checker dots\n' for i in ds.ids))
    ds = VOCWSSS(voc, 'train', with_masks=False)
    assert ds.label_source == 'names' and not ds.has_masks
    np.testing.assert_array_equal(ds.labels, np.tile([0, 0, 1, 0, 1], (6, 1)))
    x, y, m = ds[0]; assert (m == 255).all()

def test_missing_names_line(voc):
    ds = VOCWSSS(voc, 'train')
    (voc / 'ImageSets' / 'Segmentation' / 'train_labels.txt').write_text(''.join(f'{i} checker\n' for i in ds.ids[1:]))
    with pytest.raises(KeyError, match=ds.ids[0]): VOCWSSS(voc, 'train')

def pickled_cls_labels(root, ids, key='str'):
    lab = {(i if key == 'str' else int(i.replace('_', ''))): np.eye(20, dtype=np.float32)[k] for k, i in enumerate(ids)}
    np.save(root / 'cls_labels.npy', lab, allow_pickle=True)   # what IRN/PSA ship

@pytest.mark.parametrize('key', ['str', 'int'])
def test_pickled_cls_labels_refused_unless_opted_in(tmp_path, key):
    "IRN stores int keys (2007000032), PSA string keys ('2007_000032')."
    ids = ['2007_000032', '2007_000039']
    root = small_voc(tmp_path, ids)
    pickled_cls_labels(root, ids, key)
    with pytest.raises(ValueError) as e: VOCWSSS(root, 'train')
    msg = str(e.value)
    assert 'cls_labels.npy' in msg and 'pickle' in msg and 'run' in msg and 'allow_pickle=True' in msg and 'convert_cls_labels' in msg
    with pytest.raises(ValueError, match='allow_pickle'): read_cls_labels(root / 'cls_labels.npy')
    ds = VOCWSSS(root, 'train', allow_pickle=True)
    assert ds.label_source == 'cls_labels'
    np.testing.assert_array_equal(ds.labels, np.eye(20)[:2])

def test_plain_cls_labels_with_ids(tmp_path):
    ids = ['b', 'a', 'c']
    root = small_voc(tmp_path, ids[:2])
    np.save(root / 'cls_labels.npy', np.eye(20, dtype=np.float32)[[4, 7, 9]])
    (root / 'cls_labels_ids.txt').write_text('\n'.join(ids) + '\n')
    ds = VOCWSSS(root, 'train')   # rows are matched by id, not by position: the split is b, a; the file b, a, c
    assert ds.label_source == 'cls_labels' and ds.ids == ['b', 'a']
    np.testing.assert_array_equal(ds.labels, np.eye(20)[[4, 7]])
    os.remove(root / 'cls_labels_ids.txt')
    with pytest.raises(FileNotFoundError, match='cls_labels_ids.txt'): VOCWSSS(root, 'train')

def test_write_voc_labels_pickle_free(tmp_path):
    ids = ['x1', 'x2']; y = np.eye(20, dtype=np.float32)[[3, 11]]
    root = small_voc(tmp_path, ids, labels=y)
    np.testing.assert_array_equal(np.load(root / 'cls_labels.npy', allow_pickle=False), y)   # no pickle inside
    assert (root / 'cls_labels_ids.txt').read_text().split() == ids
    np.testing.assert_array_equal(VOCWSSS(root, 'train').labels, y)

@pytest.mark.parametrize('source', ['cls_labels', 'write_voc'])
def test_labels_not_0_1_refused(tmp_path, source):
    ids = ['a', 'b']; y = np.eye(20, dtype=np.float32)[[1, 2]]; y[1, 5] = 2
    if source == 'write_voc':
        with pytest.raises(ValueError, match=r"'b' the label 2"): small_voc(tmp_path, ids, labels=y)
        assert not (tmp_path / 'cls_labels.npy').exists()
        return
    root = small_voc(tmp_path, ids)
    np.save(root / 'cls_labels.npy', y); (root / 'cls_labels_ids.txt').write_text('a\nb\n')
    with pytest.raises(ValueError) as e: VOCWSSS(root, 'train')
    assert str(root / 'cls_labels.npy') in str(e.value) and "'b' the label 2" in str(e.value)

def test_conversion_one_liner(tmp_path):
    ids = ['2007_000032', '2007_000039']
    root = small_voc(tmp_path / 'some dir', ids)   # a space in the path: the one-liner must still work
    pickled_cls_labels(root, ids, 'int')
    with pytest.raises(ValueError, match='allow_pickle=True'): convert_cls_labels(root)   # unpickling only when asked
    with pytest.raises(ValueError) as e: VOCWSSS(root, 'train')
    line = next(l.strip() for l in str(e.value).splitlines() if l.strip().startswith('python -c'))
    cmd = shlex.split(line); cmd[0] = sys.executable
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(root / 'cls_labels.npy', allow_pickle=False), np.eye(20)[:2])
    assert (root / 'cls_labels_ids.txt').read_text().split() == ids          # IRN's int keys get their underscore back
    assert (root / 'cls_labels_pickled.npy').is_file()                       # the original is kept
    np.testing.assert_array_equal(VOCWSSS(root, 'train').labels, np.eye(20)[:2])
    assert convert_cls_labels(root) == root / 'cls_labels.npy'               # a second run changes nothing
    np.testing.assert_array_equal(VOCWSSS(root, 'train').labels, np.eye(20)[:2])

def test_voc_devkit_root_and_aug(tmp_path):
    "torchvision's root convention (VOCdevkit/VOC2012) and SBD's train_aug list with SegmentationClassAug."
    root = tmp_path / 'VOCdevkit' / 'VOC2012'
    small_voc(root, ['a', 'b'])
    (root / 'ImageSets' / 'SegmentationAug').mkdir(); (root / 'ImageSets' / 'SegmentationAug' / 'train_aug.txt').write_text('a\nb\n')
    (root / 'SegmentationClassAug').mkdir()
    for i, c in zip('ab', (3, 15)):
        m = np.zeros((8, 8), np.uint8); m[2:5, 2:5] = c; Image.fromarray(m, 'L').save(root / 'SegmentationClassAug' / f'{i}.png')
    ds = VOCWSSS(tmp_path, 'train_aug')
    assert ds.mask_dir == 'SegmentationClassAug' and ds.classes == VOC_CLASSES
    assert ds.labels[0].nonzero()[0].tolist() == [2] and ds.labels[1].nonzero()[0].tolist() == [14]

# ---- writing ----

def test_write_voc_rejects_mismatch(tmp_path):
    with pytest.raises(ValueError, match='mask of b'):
        write_voc(tmp_path, np.zeros((2, 8, 8, 3), np.uint8), [np.zeros((8, 8), np.uint8), np.zeros((4, 8), np.uint8)], ['a', 'b'], {'train': ['a', 'b']}, ['x'])
    with pytest.raises(ValueError, match='unknown ids'):
        write_voc(tmp_path, np.zeros((1, 8, 8, 3), np.uint8), np.zeros((1, 8, 8), np.uint8), ['a'], {'train': ['zz']}, ['x'])
    with pytest.raises(ValueError, match='mask of a holds value 2'):
        write_voc(tmp_path, np.zeros((1, 8, 8, 3), np.uint8), np.full((1, 8, 8), 2, np.uint8), ['a'], {}, ['x'])

@pytest.mark.parametrize('bad', ['../../x', '/abs/dir/img', 'a/b', '..', ''])
def test_write_voc_refuses_path_ids(tmp_path, bad):
    root = tmp_path / 'deep' / 'root'
    with pytest.raises(ValueError, match=r'ids\[1\]'):
        write_voc(root, np.zeros((2, 8, 8, 3), np.uint8), np.zeros((2, 8, 8), np.uint8), ['ok', bad], {'train': ['ok']}, ['x'])
    assert files_under(tmp_path) == []                 # nothing written, inside root or out
    with pytest.raises(ValueError, match='split name'):
        write_voc(root, np.zeros((1, 8, 8, 3), np.uint8), np.zeros((1, 8, 8), np.uint8), ['ok'], {'../../evil': ['ok']}, ['x'])
    assert not (tmp_path / 'evil.txt').exists() and not (tmp_path / 'deep' / 'evil.txt').exists()

@pytest.mark.parametrize('umask,mode', [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_honour_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        small_voc(tmp_path / 'v', ['a', 'b'], labels=np.zeros((2, 20)), formats=('jpg', 'png'))
        save_label_png(np.zeros((3, 3), np.uint8), tmp_path / 'one.png')
    finally: os.umask(old)
    files = [q for q in tmp_path.rglob('*') if q.is_file()]
    assert len(files) == 9   # 2 images, 2 masks, train.txt, class_names.txt, cls_labels.npy + ids, one.png
    assert {q.name: oct(stat.S_IMODE(q.stat().st_mode)) for q in files} == {q.name: oct(mode) for q in files}

def test_write_voc_replaces_other_format(tmp_path):
    small_voc(tmp_path, ['a'], formats='png')
    small_voc(tmp_path, ['a'], formats='jpg')
    assert sorted(p.name for p in (tmp_path / 'JPEGImages').iterdir()) == ['a.jpg']

def test_write_voc_streams_and_counts(tmp_path):
    gen = (np.zeros((8, 8, 3), np.uint8) for _ in range(2))
    with pytest.raises(ValueError, match='3 ids but 2 images'):
        write_voc(tmp_path, gen, (np.zeros((8, 8), np.uint8) for _ in range(2)), ['a', 'b', 'c'], {}, ['x'])

def test_atomic_write_is_runs_writer(tmp_path):
    import aepsl.runs
    assert atomic_write is aepsl.runs.atomic_write
    def boom(p): Path(p).write_text('half'); raise RuntimeError('disk full')
    with pytest.raises((RuntimeError, OSError), match='disk full'): atomic_write(tmp_path / 'out.txt', boom)   # runs may wrap it
    assert list(tmp_path.iterdir()) == []

# ---- transforms, stats ----

def test_array_dataset_errors():
    with pytest.raises(ValueError, match='do not match'): ArrayDataset(np.zeros((2, 8, 8, 3), np.uint8), np.zeros((2, 1)), np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(ValueError, match='no images'): ArrayDataset(np.zeros((0, 8, 8, 3), np.uint8), np.zeros((0, 1)))

def test_train_transforms_keep_mask_aligned():
    "Random scale/crop/flip must move image and mask together: an image whose colour encodes the class."
    torch.manual_seed(0)
    m = np.zeros((40, 40), np.uint8); m[5:20, 8:30] = 1; m[25:35, 10:20] = 2
    img = np.zeros((40, 40, 3), np.uint8); img[m == 1] = (255, 0, 0); img[m == 2] = (0, 255, 0)
    t = seg_transforms((0, 0, 0), (255, 255, 255), crop_size=32, scale=(0.7, 1.4), flip=True)
    from torchvision import tv_tensors
    for _ in range(10):
        x, mm = t(tv_tensors.Image(torch.tensor(img).permute(2, 0, 1)), tv_tensors.Mask(torch.tensor(m)))
        inside = (mm == 1) & (x[0] > 0.9)
        assert inside.sum() >= 0.8 * (mm == 1).sum()  # red pixels are where the mask says class 1

def test_mean_pixel_streams_datasets(voc):
    ds = VOCWSSS(voc, 'val')
    ref = np.stack([ds.image(i) for i in range(len(ds))]).reshape(-1, 3).mean(0)
    np.testing.assert_allclose(mean_pixel(ds), ref, rtol=1e-5)
    syn = SyntheticWSSS(5, size=32, seed=2)
    np.testing.assert_allclose(mean_pixel(syn), syn.images.reshape(-1, 3).mean(0), rtol=1e-5)

def test_synthetic_bad_args():
    with pytest.raises(ValueError, match='n=0'): SyntheticWSSS(0)
    with pytest.raises(ValueError, match='n_classes'): SyntheticWSSS(2, n_classes=21)   # 5 patterns × 4 inks
    with pytest.raises(ValueError, match='n_classes'): SyntheticWSSS(2, n_classes=0)

# ---- command line ----

def test_cli_function(tmp_path):
    assert main_synthetic(out=str(tmp_path / 'cli'), n_train=4, n_val=2, size=48) is None
    root = tmp_path / 'cli'
    assert (root / 'preview.png').stat().st_size > 1000 and (root / 'info.json').is_file()
    assert len(VOCWSSS(root, 'val')) == 2

def test_console_script_exit_status(tmp_path):
    exe = shutil.which('aepsl_data', path=str(Path(sys.executable).parent)) or shutil.which('aepsl_data')
    assert exe, 'the aepsl_data console script is not installed (pip install -e .)'
    out = tmp_path / 'synth'
    r = subprocess.run([exe, '--out', str(out), '--n_train', '4', '--n_val', '2', '--size', '48',
                        '--sizes', '48x64,64x48', '--formats', 'jpg,png'],
                       capture_output=True, text=True, timeout=300, env={**os.environ, 'MPLBACKEND': 'Agg'})
    assert r.returncode == 0, r.stderr
    assert (out / 'preview.png').is_file() and '"n_train": 4' in r.stdout
    ds = VOCWSSS(out, 'train')
    assert [ds.image(i).shape[:2] for i in range(2)] == [(48, 64), (64, 48)]
    assert [ds.image_path(i).suffix for i in range(2)] == ['.jpg', '.png']
    r = subprocess.run([exe, '--out', str(tmp_path / 'bad'), '--sizes', '64by96'], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and '64by96' in r.stderr

# ---- issue 17: trustworthy runs, data side ----

import warnings, json
from aepsl.voc import scan_dataset, check_class_coverage, read_class_names
from aepsl.data import data_fingerprint, check_wsss_data

@pytest.fixture
def v32(tmp_path):
    return synthetic_voc(tmp_path / 'v32', n_train=4, n_val=2, size=32, seed=1)

def split_file(root, name='train'): return Path(root) / 'ImageSets' / 'Segmentation' / f'{name}.txt'

def test_cli_refuses_folder_it_did_not_write(tmp_path):
    root = small_voc(tmp_path / 'voc', ids=['a', 'b'])
    before = {f: (root / f).read_bytes() for f in files_under(root)}
    with pytest.raises(ValueError, match='not written by aepsl_data') as e: main_synthetic(out=str(root), n_train=2, n_val=1, size=32)
    assert str(root) in str(e.value)
    assert {f: (root / f).read_bytes() for f in files_under(root)} == before   # nothing replaced, nothing added

def test_cli_rerun_same_args_ok_other_args_refused(tmp_path):
    out = tmp_path / 'synth'
    main_synthetic(out=str(out), n_train=2, n_val=1, size=32)
    assert json.loads((out / 'aepsl_data.json').read_text())['n_train'] == 2
    main_synthetic(out=str(out), n_train=2, n_val=1, size=32)          # the same set again: allowed
    with pytest.raises(ValueError, match=r'n_train=2 \(now 3\)'): main_synthetic(out=str(out), n_train=3, n_val=1, size=32)
    assert len(VOCWSSS(out, 'train')) == 2

@pytest.mark.parametrize('kw,msg', [(dict(size=0), '--size 0'), (dict(size=-4), '--size -4'), (dict(seed=-1), '--seed -1'),
                                    (dict(n_train=0), '--n_train 0'), (dict(n_val=0), '--n_val 0'),
                                    (dict(sizes='0x5'), '--sizes'), (dict(sizes='64x96x3'), '--sizes'),
                                    (dict(formats='gif'), "--formats: unknown image format 'gif'"), (dict(formats=','), '--formats')])
def test_cli_bad_args_refused_before_any_write(tmp_path, kw, msg):
    out = tmp_path / 'synth'
    with pytest.raises(ValueError) as e: main_synthetic(out=str(out), **{**dict(n_train=2, n_val=1, size=32), **kw})
    assert msg in str(e.value)
    assert not out.exists()

def test_console_script_bad_size_message(tmp_path):
    exe = shutil.which('aepsl_data', path=str(Path(sys.executable).parent)) or shutil.which('aepsl_data')
    r = subprocess.run([exe, '--out', str(tmp_path / 'o'), '--size', '0'], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and '--size 0 must be an integer ≥ 1' in r.stderr
    assert not (tmp_path / 'o').exists()

@pytest.mark.parametrize('kw,msg', [(dict(n_train=0), 'n_train'), (dict(n_val=0), 'n_val'), (dict(seed=-1), 'seed'), (dict(size=0), 'size')])
def test_synthetic_voc_bad_args_write_nothing(tmp_path, kw, msg):
    with pytest.raises(ValueError, match=msg): synthetic_voc(tmp_path / 'o', **{**dict(n_train=2, n_val=1, size=32), **kw})
    assert not (tmp_path / 'o').exists()

def test_split_duplicate_id_with_windows_line_ends(v32):
    f = split_file(v32, 'crlf'); f.write_bytes(b'a\r\nb\r\n')
    from aepsl.voc import read_split
    assert read_split(f) == ['a', 'b']                    # no stray \r
    f.write_bytes(b'a\r\nb\r\na\n')                       # 'a\r' and 'a' are the same id
    with pytest.raises(ValueError) as e: VOCWSSS(v32, 'crlf')
    assert str(f) in str(e.value) and "'a' twice, on lines 1 and 3" in str(e.value)

def test_names_labels_duplicate_id_refused(v32):
    ids = VOCWSSS(v32, 'train').ids
    f = v32 / 'ImageSets' / 'Segmentation' / 'train_labels.txt'
    f.write_text(''.join(f'{i} checker\n' for i in ids) + f'{ids[1]} dots\n')   # today the last line would win
    with pytest.raises(ValueError) as e: VOCWSSS(v32, 'train', with_masks=False)
    assert str(f) in str(e.value) and f"'{ids[1]}' twice, on lines 2 and 5" in str(e.value)

def test_cls_labels_ids_duplicate_refused(tmp_path):
    root = small_voc(tmp_path, ['a', 'b'])
    np.save(root / 'cls_labels.npy', np.eye(20, dtype=np.float32)[[1, 2, 3]]); (root / 'cls_labels_ids.txt').write_text('a\nb\na\n')
    with pytest.raises(ValueError, match="cls_labels_ids.txt lists 'a' twice, on lines 1 and 3"): VOCWSSS(root, 'train')

def test_class_names_empty_or_duplicate_refused(v32):
    f = v32 / 'class_names.txt'
    f.write_text('\n  \n')
    with pytest.raises(ValueError) as e: VOCWSSS(v32, 'train')
    assert str(f) in str(e.value) and 'names no class' in str(e.value)
    f.write_text('hstripes\nvstripes\nchecker\nvstripes\ndots\n')
    with pytest.raises(ValueError, match="'vstripes' twice, on lines 2 and 4"): VOCWSSS(v32, 'train')
    with pytest.raises(ValueError, match="'cat'"): VOCWSSS(v32, 'train', classes=['cat', 'dog', 'cat'])
    (v32 / 'ok.txt').write_text('background\nx\ny\n'); assert read_class_names(v32 / 'ok.txt') == ('x', 'y')

def test_class_only_in_val_warns(v32):
    trn, val = VOCWSSS(v32, 'train'), VOCWSSS(v32, 'val')
    with warnings.catch_warnings(): warnings.simplefilter('error'); check_class_coverage(trn, trn)   # no warning
    c = int(np.argmax(val.labels.sum(0)))
    for k in range(len(trn)):   # remove class c from every training mask
        m = trn.mask(k); m[m == c + 1] = 0; save_label_png(m, trn.mask_path(k))
    with pytest.warns(UserWarning, match=repr(trn.classes[c])): miss = check_class_coverage(VOCWSSS(v32, 'train'), val)
    assert trn.classes[c] in miss

def test_exif_rotated_jpeg_warned_once_not_rotated(v32):
    ds = VOCWSSS(v32, 'train'); p = ds.image_path(1); img = ds.image(1)
    e = Image.Exif(); e[0x0112] = 6
    Image.fromarray(img).save(p, quality=100, exif=e)
    stored = ds.image(1)
    with pytest.warns(UserWarning) as w: r = scan_dataset(ds, 'training')
    assert len([x for x in w if 'EXIF' in str(x.message)]) == 1 and str(p) in str(w[0].message)
    assert r['rotated'] == [str(p)] and stored.shape == img.shape          # read as stored: matches the mask
    np.testing.assert_array_equal(ds.mask(1).shape, stored.shape[:2])
    with warnings.catch_warnings(): warnings.simplefilter('error'); scan_dataset(ds, 'training')   # once per data set

def test_scan_ok_and_synthetic_noop(v32):
    r = scan_dataset(VOCWSSS(v32, 'train'), 'training')
    assert r['n'] == 4 and r['rotated'] == []
    assert scan_dataset(SyntheticWSSS(3, size=32), 'training')['n'] == 0

def test_scan_truncated_jpeg(v32):
    ds = VOCWSSS(v32, 'train'); p = ds.image_path(2); b = p.read_bytes(); p.write_bytes(b[:len(b) // 2])
    with pytest.raises(ValueError) as e: scan_dataset(ds, 'training')
    assert str(p) in str(e.value) and ds.ids[2] in str(e.value)

def test_scan_truncated_png_mask(v32):
    ds = VOCWSSS(v32, 'train'); q = ds.mask_path(3); b = q.read_bytes(); q.write_bytes(b[:len(b) - 30])
    with pytest.raises(ValueError, match=re.escape(str(q))): scan_dataset(ds, 'training')

def test_scan_size_mismatch_names_both_files(v32):
    ds = VOCWSSS(v32, 'val'); save_label_png(np.zeros((30, 32), np.uint8), ds.mask_path(1))
    with pytest.raises(ValueError) as e: scan_dataset(ds, 'held-out')
    msg = str(e.value)
    assert ds.ids[1] in msg and str(ds.mask_path(1)) in msg and str(ds.image_path(1)) in msg and '32×30' in msg and '32×32' in msg

def test_scan_missing_files(v32):
    ds = VOCWSSS(v32, 'train'); os.remove(ds.mask_path(0))
    with pytest.raises(FileNotFoundError, match=re.escape(str(ds.mask_path(0)))): scan_dataset(ds, 'training')
    assert scan_dataset(VOCWSSS(v32, 'train', with_masks=False))['n'] == 4    # no masks: none checked
    os.remove(ds.image_path(3))
    with pytest.raises(FileNotFoundError, match=ds.ids[3]): scan_dataset(VOCWSSS(v32, 'train', with_masks=False))

def test_fingerprint_covers_file_content(v32, tmp_path):
    fp = data_fingerprint(VOCWSSS(v32, 'train'))
    assert {'n', 'classes', 'ids_labels', 'images', 'masks'} <= set(fp)
    assert data_fingerprint(VOCWSSS(v32, 'train')) == fp                       # untouched: equal
    shutil.copytree(v32, tmp_path / 'copy')                                   # new mtimes, same bytes
    cp = data_fingerprint(VOCWSSS(tmp_path / 'copy', 'train'))
    assert (cp['images'], cp['masks'], cp['ids_labels']) == (fp['images'], fp['masks'], fp['ids_labels'])
    ds = VOCWSSS(v32, 'train'); p = ds.image_path(0)
    Image.fromarray(ds.image(0)[:, ::-1].copy()).save(p, quality=95)         # mirrored: same size, same labels
    fp2 = data_fingerprint(VOCWSSS(v32, 'train'))
    assert fp2['ids_labels'] == fp['ids_labels'] and fp2['images'] != fp['images'] and fp2['masks'] == fp['masks']
    m = ds.mask(1); save_label_png(np.where(m == 255, 0, m)[:, ::-1].copy(), ds.mask_path(1))
    fp3 = data_fingerprint(VOCWSSS(v32, 'train'))
    assert fp3['masks'] != fp2['masks'] and fp3['images'] == fp2['images']

def test_fingerprint_cached_on_dataset(v32):
    ds = VOCWSSS(v32, 'train'); fp = data_fingerprint(ds)
    os.remove(ds.image_path(0))                                               # a second call reads nothing
    assert data_fingerprint(ds) == fp
    with pytest.raises(FileNotFoundError): data_fingerprint(ds, refresh=True)

def test_fingerprint_keeps_old_keys_and_synthetic_params():
    import hashlib
    ds = SyntheticWSSS(3, size=32, seed=1)
    fp = data_fingerprint(ds)
    h = hashlib.sha256('\n'.join(ds.ids).encode()); h.update(np.ascontiguousarray(ds.labels, np.float32).tobytes())
    assert fp['ids_labels'] == h.hexdigest()[:16] and fp['n'] == 3 and fp['classes'] == list(SYNTH_CLASSES)
    assert data_fingerprint(SyntheticWSSS(3, size=32, seed=2))['images'] != fp['images']
    assert data_fingerprint(SyntheticWSSS(3, size=32, seed=1, noise_sd=2.))['images'] != fp['images']
    assert data_fingerprint(SyntheticWSSS(3, size=32, seed=1)) == fp

def test_check_wsss_data_in_data():
    ds = SyntheticWSSS(3, size=32); check_wsss_data(ds, 'training')
    ds._labels = ds.labels * 2
    with pytest.raises(ValueError, match='training'): check_wsss_data(ds, 'training')

def test_scoring_needs_no_pickle_and_message_is_honest(tmp_path):
    ids = ['2007_000032', '2007_000039']
    root = small_voc(tmp_path, ids); pickled_cls_labels(root, ids)
    ds = VOCWSSS(root, 'train', label_source='mask')                         # the pickle is never opened
    assert ds.label_source == 'mask' and ds.labels.shape == (2, 20)
    with pytest.raises(ValueError) as e: VOCWSSS(root, 'train')
    msg = str(e.value)
    assert "label_source='mask'" in msg and 'unpickles' in msg and 'trust' in msg and 'convert_cls_labels' in msg

# ---- issue 15: the harder development benchmark (variant='hard') ----

import hashlib
from aepsl.data import synth_classes, synth_variant, SYNTH_VARIANTS

def _hash(*arrays):
    h = hashlib.sha256()
    for a in arrays: h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]

def test_builtin_set_byte_identical():
    "Hashes computed with the code before the variant existed (HEAD e980d80): the built-in set is what the defaults were tuned on."
    assert _hash(*synthetic_sample(7)) == '3170902508b6e6c1'
    ds = SyntheticWSSS(20, seed=0)
    assert _hash(*[ds.image(i) for i in range(20)], *[ds.mask(i) for i in range(20)], ds.labels,
                 *[ds.part(i) for i in range(20)]) == '3093bc08ea3e8260'
    mx = SyntheticWSSS(6, sizes=[(64, 96), (96, 96), (120, 80)], seed=2)
    assert _hash(*[mx.image(i) for i in range(6)], *[mx.mask(i) for i in range(6)], mx.labels) == '2bcbcd0d0ee5c561'
    assert _hash(*synthetic_sample(5, size=64, seed=1, n_classes=3)) == '4dd82201609595df'
    assert ds.classes == SYNTH_CLASSES and ds.kwargs == {} and ds.sizes is None

def test_hard_variant_deterministic_per_image():
    a, b = SyntheticWSSS(30, variant='hard', seed=4), SyntheticWSSS(6, variant='hard', seed=4, start=24)   # sizes cycle by 4
    for i in range(6):
        np.testing.assert_array_equal(a.image(24 + i), b.image(i)); np.testing.assert_array_equal(a.mask(24 + i), b.mask(i))
    c = SyntheticWSSS(30, variant='hard', seed=5)
    assert any(a.image(i).shape != c.image(i).shape or (a.image(i) != c.image(i)).any() for i in range(4))
    assert a._arrays is None   # generated per image, never stacked

def test_hard_variant_masks_labels_scales_sizes():
    ds = SyntheticWSSS(240, variant='hard', seed=0)
    assert len(ds.classes) == 20 == len(set(ds.classes)) and ds.classes[:5] == SYNTH_CLASSES
    n, area, shapes = ds.labels.sum(1), [], set()
    assert n.min() >= 1 and n.max() == 4 and set(n.tolist()) == {1, 2, 3, 4}
    assert (ds.labels.sum(0) > 0).all()                                             # every class appears
    for i in range(len(ds)):
        m, p = ds.mask(i), ds.part(i); shapes.add(m.shape)
        present = {int(c) + 1 for c in np.flatnonzero(ds.labels[i])}
        assert set(np.unique(m).tolist()) - {0, 255} == present                      # labels are the mask's classes
        assert (m[p] != 0).all()                                                      # parts lie on objects
        for c in present:
            assert ((m == c) & p).any()                                               # every object shows its part
            area.append((m == c).mean())
    assert shapes == {(64, 96), (96, 96), (120, 80), (80, 128)}
    area = np.array(area)
    assert (area < 0.01).mean() > 0.1 and (area > 0.1).mean() > 0.1 and area.max() > 0.3   # small and large objects

def test_hard_variant_square_scenes_valid():
    "The generator called directly (square scenes, overlap on): valid label values, labels equal to the mask's classes."
    for i in range(20):
        img, m, y, p = synthetic_sample(i, size=128, seed=3, **{k: v for k, v in synth_variant('hard').items() if k != 'sizes'})
        assert m.dtype == np.uint8 and set(np.unique(m).tolist()) <= set(range(21)) | {255}
        assert (m[p] != 0).all() and p.any()
        np.testing.assert_array_equal(y, labels_from_mask(m, 20))

def test_hard_variant_arguments():
    assert SyntheticWSSS(2, variant='hard', n_classes=8).classes == synth_classes(8)    # kwargs override the variant
    assert SyntheticWSSS(2, variant='hard', sizes=[(40, 50)]).image(1).shape == (40, 50, 3)
    v = synth_variant('hard'); v['n_classes'] = 3
    assert SYNTH_VARIANTS['hard']['n_classes'] == 20                                    # a copy
    assert synth_variant(None) == {} == synth_variant('')
    with pytest.raises(ValueError, match='known: hard'): SyntheticWSSS(2, variant='nope')
    with pytest.raises(ValueError, match='scale_range'): synthetic_sample(0, scale_range=(0.5, 0.1))
    with pytest.raises(ValueError, match='window'): synthetic_sample(0, size=32, scale_range=(.1, .5), window=(40, 20))
    with pytest.raises(ValueError, match='1..20'): synth_classes(21)

def test_hard_voc_round_trip_and_cli(tmp_path):
    root = synthetic_voc(tmp_path / 'h', n_train=5, n_val=3, seed=2, variant='hard')
    ref = SyntheticWSSS(8, seed=2, variant='hard')
    trn, val = VOCWSSS(root, 'train'), VOCWSSS(root, 'val')
    assert trn.classes == ref.classes and read_class_names(root / 'class_names.txt') == synth_classes(20)
    np.testing.assert_array_equal(np.concatenate([trn.labels, val.labels]), ref.labels)
    for i in range(5): np.testing.assert_array_equal(trn.mask(i), ref.mask(i))
    out = tmp_path / 'cli'
    main_synthetic(out=str(out), n_train=3, n_val=2, variant='hard')
    info = json.loads((out / 'info.json').read_text())
    assert info['variant'] == 'hard' and info['variant_params']['n_classes'] == 20 and info['variant_params']['clutter'] == 3
    assert info['variant_params']['sizes'] == [[64, 96], [96, 96], [120, 80], [80, 128]] and len(info['classes']) == 20
    main_synthetic(out=str(out), n_train=3, n_val=2, variant='hard')                   # same arguments: allowed
    with pytest.raises(ValueError, match="variant='hard' \\(now None\\)"): main_synthetic(out=str(out), n_train=3, n_val=2)
    with pytest.raises(ValueError, match='--variant'): main_synthetic(out=str(tmp_path / 'new'), variant='nope')
    assert not (tmp_path / 'new').exists()

def test_cli_output_of_earlier_version_still_accepted(tmp_path):
    "An aepsl_data.json written before --variant existed has no 'variant': it is the built-in set."
    out = tmp_path / 'old'
    main_synthetic(out=str(out), n_train=2, n_val=1, size=32)
    j = out / 'aepsl_data.json'; a = json.loads(j.read_text()); del a['variant']; j.write_text(json.dumps(a))
    main_synthetic(out=str(out), n_train=2, n_val=1, size=32)
    with pytest.raises(ValueError, match="variant=None"): main_synthetic(out=str(out), n_train=2, n_val=1, size=32, variant='hard')

def test_console_script_variant(tmp_path):
    exe = shutil.which('aepsl_data', path=str(Path(sys.executable).parent)) or shutil.which('aepsl_data')
    out = tmp_path / 'hard'
    r = subprocess.run([exe, '--out', str(out), '--n_train', '3', '--n_val', '1', '--variant', 'hard'],
                       capture_output=True, text=True, timeout=300, env={**os.environ, 'MPLBACKEND': 'Agg'})
    assert r.returncode == 0, r.stderr
    assert len((out / 'class_names.txt').read_text().split()) == 20 and '"variant": "hard"' in r.stdout

def test_hard_variant_front_most_parts_match_mask():
    "Where a part is visible, the image shows that class's inks: mask and image agree on which object is in front."
    from aepsl.data import SYNTH_INKS
    inks = 255 * np.array(list(SYNTH_INKS.values()))                    # (4 inks, light/dark, RGB)
    ds = SyntheticWSSS(60, variant='hard', seed=6)
    for i in range(len(ds)):
        img, m, y, p = ds.sample(i)
        for c in np.flatnonzero(y):
            px = img[p & (m == c + 1)].astype(float)                     # noise sd 6: within 40 grey levels of an ink
            d = np.abs(px[:, None] - inks[c // 5][None]).max(-1).min(-1)
            assert (d < 40).mean() > 0.99, (i, c)
