"Bad-input and round-trip checks for aepsl.data that do not belong in the notebook's prose."
import os, numpy as np, pytest, torch
from pathlib import Path
from PIL import Image
from aepsl.data import (SyntheticWSSS, VOCWSSS, synthetic_voc, write_voc, ArrayDataset, seg_transforms, mean_pixel,
                        labels_from_names, atomic_write, VOC_CLASSES, main_synthetic)
from aepsl.viz import save_label_png

@pytest.fixture
def voc(tmp_path):
    synthetic_voc(tmp_path / 'voc', n_train=6, n_val=3, size=48, seed=5)
    return tmp_path / 'voc'

def test_round_trip_labels_identical(voc):
    ref = SyntheticWSSS(9, size=48, seed=5)
    trn, val = VOCWSSS(voc, 'train'), VOCWSSS(voc, 'val')
    np.testing.assert_array_equal(np.concatenate([trn.labels, val.labels]), ref.labels)
    for i in range(6): np.testing.assert_array_equal(trn.mask(i), ref.masks[i])
    assert trn.ids == ref.ids[:6]

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

def test_unknown_class_name(voc):
    ds = VOCWSSS(voc, 'train')
    (voc / 'ImageSets' / 'Segmentation' / 'train_labels.txt').write_text(''.join(f'{i} checker\n' for i in ds.ids[:-1]) + f'{ds.ids[-1]} unicorn\n')
    ds = VOCWSSS(voc, 'train', with_masks=False)
    assert ds.label_source == 'names'
    with pytest.raises(ValueError, match='unicorn'): ds.labels

def test_names_labels(voc):
    ds = VOCWSSS(voc, 'train')
    (voc / 'ImageSets' / 'Segmentation' / 'train_labels.txt').write_text(''.join(f'{i} checker dots\n' for i in ds.ids))
    ds = VOCWSSS(voc, 'train', with_masks=False)
    np.testing.assert_array_equal(ds.labels, np.tile([0, 0, 1, 0, 1], (6, 1)))
    x, y, m = ds[0]; assert (m == 255).all()

def test_mask_class_out_of_range(voc):
    ds = VOCWSSS(voc, 'train'); m = ds.mask(0); m[0, 0] = 9; save_label_png(m, ds.mask_path(0))
    with pytest.raises(ValueError, match='class 9'): ds.labels

@pytest.mark.parametrize('key', ['str', 'int'])
def test_cls_labels_npy(tmp_path, key):
    "IRN stores int keys (2007000032), PSA string keys ('2007_000032')."
    ids = ['2007_000032', '2007_000039']
    imgs = np.zeros((2, 8, 8, 3), np.uint8); masks = np.zeros((2, 8, 8), np.uint8)
    write_voc(tmp_path, imgs, masks, ids, {'train': ids}, VOC_CLASSES)
    lab = {(i if key == 'str' else int(i.replace('_', ''))): np.eye(20, dtype=np.float32)[k] for k, i in enumerate(ids)}
    np.save(tmp_path / 'cls_labels.npy', lab)
    ds = VOCWSSS(tmp_path, 'train')
    assert ds.label_source == 'cls_labels'
    np.testing.assert_array_equal(ds.labels, np.eye(20)[:2])

def test_voc_devkit_root_and_aug(tmp_path):
    "torchvision's root convention (VOCdevkit/VOC2012) and SBD's train_aug list with SegmentationClassAug."
    root = tmp_path / 'VOCdevkit' / 'VOC2012'
    ids = ['a', 'b']; imgs = np.zeros((2, 8, 8, 3), np.uint8); masks = np.zeros((2, 8, 8), np.uint8)
    write_voc(root, imgs, masks, ids, {'train': ids}, VOC_CLASSES)
    (root / 'ImageSets' / 'SegmentationAug').mkdir(); (root / 'ImageSets' / 'SegmentationAug' / 'train_aug.txt').write_text('a\nb\n')
    (root / 'SegmentationClassAug').mkdir()
    for i, c in zip(ids, (3, 15)):
        m = np.zeros((8, 8), np.uint8); m[2:5, 2:5] = c; Image.fromarray(m, 'L').save(root / 'SegmentationClassAug' / f'{i}.png')
    ds = VOCWSSS(tmp_path, 'train_aug')
    assert ds.mask_dir == 'SegmentationClassAug' and ds.classes == VOC_CLASSES
    assert ds.labels[0].nonzero()[0].tolist() == [2] and ds.labels[1].nonzero()[0].tolist() == [14]

def test_write_voc_rejects_mismatch(tmp_path):
    with pytest.raises(ValueError, match='mask of b'):
        write_voc(tmp_path, np.zeros((2, 8, 8, 3), np.uint8), [np.zeros((8, 8), np.uint8), np.zeros((4, 8), np.uint8)], ['a', 'b'], {'train': ['a', 'b']}, ['x'])
    with pytest.raises(ValueError, match='unknown ids'):
        write_voc(tmp_path, np.zeros((1, 8, 8, 3), np.uint8), np.zeros((1, 8, 8), np.uint8), ['a'], {'train': ['zz']}, ['x'])

def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    def boom(p): Path(p).write_text('half'); raise RuntimeError('disk full')
    with pytest.raises(RuntimeError): atomic_write(tmp_path / 'out.txt', boom)
    assert list(tmp_path.iterdir()) == []

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

def test_synthetic_bad_args():
    with pytest.raises(ValueError, match='n=0'): SyntheticWSSS(0)
    with pytest.raises(ValueError, match='n_classes'): SyntheticWSSS(2, n_classes=7)

def test_cli_writes_dataset(tmp_path):
    root = main_synthetic(['--out', str(tmp_path / 'cli'), '--n-train', '4', '--n-val', '2', '--size', '48'])
    assert (root / 'preview.png').stat().st_size > 1000 and (root / 'info.json').is_file()
    assert len(VOCWSSS(root, 'val')) == 2
