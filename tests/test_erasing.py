"Adversarial erasing: per-image flow on disk, resume, refusal of changed configs, stopping rule, bad input, CLI."
import json, re, subprocess, numpy as np, pytest, torch
from aepsl.data import SyntheticWSSS
from aepsl.models import small_cnn
from aepsl.runs import StageConfigError
from aepsl.erasing import AdversarialErasing, HideAndSeek, ErasedDataset, load_regions, load_erased, aepsl_erase

SMALL = dict(epochs=2, bs=16, crop_size=48, patience=None, max_steps=2, rho=0.01)
def tiny(C): return small_cnn(C, widths=(8, 16, 16, 16, 16, 32))
erase = aepsl_erase.__wrapped__          # the CLI's function, called directly

@pytest.fixture(scope='module')
def data(): return SyntheticWSSS(40, size=48, seed=0), SyntheticWSSS(16, size=48, seed=1)

def make_ae(data, out, make_model=tiny, **kw):
    trn, hold = data
    return AdversarialErasing(trn, hold, out, make_model=make_model, model_name='tiny', device='cpu', **{**SMALL, **kw})

def all_regions(ae, split='train'):
    ds = ae.train_ds if split == 'train' else ae.holdout_ds
    return np.stack([ae.mined_steps(i, split, steps=range(1, len(ae.steps) + 1)) for i in range(len(ds.ids))])

def test_resume_after_interrupted_step2_matches_uninterrupted(data, tmp_path):
    full = make_ae(data, tmp_path / 'full'); full.run()
    calls = []
    def crash_on_step2(C):
        calls.append(C)
        if len(calls) == 2: raise KeyboardInterrupt('power cut during step 2')
        return tiny(C)
    with pytest.raises(KeyboardInterrupt): make_ae(data, tmp_path / 'cut', crash_on_step2).run()
    assert (tmp_path / 'cut' / 'mined' / 'step1' / 'done.json').is_file()
    assert not (tmp_path / 'cut' / 'mined' / 'step2' / 'done.json').exists()
    resumed = make_ae(data, tmp_path / 'cut'); steps = resumed.run()
    assert steps[0]['resumed'] and not steps[1]['resumed']
    np.testing.assert_array_equal(all_regions(resumed), all_regions(full))
    np.testing.assert_array_equal(all_regions(resumed, 'holdout'), all_regions(full, 'holdout'))
    assert (all_regions(full) == 2).any()            # step 2 mined something, so the comparison has teeth

def test_rerun_reads_everything_back(data, tmp_path):
    a = make_ae(data, tmp_path / 'r'); a.run()
    b = make_ae(data, tmp_path / 'r', make_model=lambda C: pytest.fail('should not train')); steps = b.run()
    assert all(s['resumed'] for s in steps)
    np.testing.assert_array_equal(all_regions(a), all_regions(b))

def test_regions_are_per_image_files_at_image_size(data, tmp_path):
    ae = make_ae(data, tmp_path / 'r', max_steps=1); ae.run()
    trn = data[0]
    files = sorted((tmp_path / 'r' / 'mined' / 'step1' / 'train').glob('*.npz'))
    assert [f.stem for f in files] == sorted(trn.ids)
    r = load_regions(files[0], 5, (48, 48), trn.labels[trn.ids.index(files[0].stem)])
    assert r.shape == (5, 48, 48)

def test_changed_config_refuses_naming_keys(data, tmp_path):
    make_ae(data, tmp_path / 'r', max_steps=1).run()
    with pytest.raises(StageConfigError, match=r'delta: 0\.5 -> 0\.4'): make_ae(data, tmp_path / 'r', max_steps=1, delta=0.4).run()
    other = (SyntheticWSSS(40, size=48, seed=7), data[1])          # other images under the same folder
    with pytest.raises(StageConfigError, match='data.ids_labels'): make_ae(other, tmp_path / 'r', max_steps=1).run()
    more = (SyntheticWSSS(48, size=48, seed=0), data[1])
    with pytest.raises(StageConfigError, match=r'data.n: 40 -> 48'): make_ae(more, tmp_path / 'r', max_steps=1).run()

def test_stops_when_classification_fails(data, tmp_path):
    "Step 2's classifier is crippled (frozen, zero weights: chance-level mAP), so the relative rule must stop there."
    calls = []
    def make(C):
        calls.append(C); m = tiny(C)
        if len(calls) >= 2:
            m.features.requires_grad_(False); m.classifier.weight.data.zero_(); m.classifier.weight.requires_grad_(False)
        return m
    ae = make_ae(data, tmp_path / 'r', make, max_steps=2)
    ae.run()
    m1, m2 = (s['holdout_mAP'] for s in ae.steps)
    assert m2 < m1
    steps = ae.run(max_steps=3, rho=(1 + m2 / m1) / 2)           # resumed: same classifiers, stricter rule
    assert [s['success'] for s in steps] == [True, False] and ae.n_used == 1
    assert all_regions(ae).max() <= 2 and ae.label_map(0).max() <= 5
    assert len(calls) == 2                                        # stopped before a third classifier was trained

def test_first_step_below_floor_is_an_error(data, tmp_path, monkeypatch):
    import aepsl.erasing as E
    monkeypatch.setattr(E, 'fit_classifier', lambda *a, **k: [dict(epoch=0, train_loss=0.5, mAP=0.5, time=0.0)])
    with pytest.raises(RuntimeError, match='min_map'): make_ae(data, tmp_path / 'r', max_steps=1, min_map=0.9).run()
    with pytest.raises(ValueError, match='min_map=1.01'): make_ae(data, tmp_path / 'r', max_steps=1).run(min_map=1.01)

class Relabel:
    "A data set with other labels."
    def __init__(self, ds, labels): self.ds, self.labels = ds, labels
    def __getattr__(self, k): return getattr(self.ds, k)

def test_bad_settings_and_sets_refused_before_training(data, tmp_path):
    trn, hold = data
    never = lambda C: pytest.fail('nothing may train')
    with pytest.raises(ValueError, match=r'delta=1.0 must lie in \(0, 1\)'): make_ae(data, tmp_path / 'a', never, delta=1.0)
    with pytest.raises(ValueError, match='epochs=0'): make_ae(data, tmp_path / 'a', never, epochs=0)
    with pytest.raises(ValueError, match='shares 16 images'): make_ae((trn, SyntheticWSSS(16, size=48, seed=0)), tmp_path / 'a', never)
    empty = Relabel(hold, np.zeros_like(hold.labels))
    with pytest.raises(ValueError, match='no positive labels'): make_ae((trn, empty), tmp_path / 'a', never)
    bad = Relabel(trn, np.where(trn.labels > 0, 2, 0).astype(np.float32))
    with pytest.raises(ValueError, match='must be 0/1'): make_ae((bad, hold), tmp_path / 'a', never)
    assert not (tmp_path / 'a' / 'cls').exists()

def test_damaged_run_files_are_named(data, tmp_path):
    ae = make_ae(data, tmp_path / 'r', max_steps=1); ae.run()
    f = next((tmp_path / 'r' / 'mined' / 'step1' / 'train').glob('*.npz'))
    f.write_bytes(f.read_bytes()[:30])
    with pytest.raises(ValueError, match=f.name): make_ae(data, tmp_path / 'r', max_steps=2).run()
    (tmp_path / 'r' / 'mined' / 'step1' / 'done.json').write_text('{"stage": ')
    with pytest.raises(ValueError, match='done.json'): make_ae(data, tmp_path / 'r', max_steps=1).run()

def test_hide_and_seek_hides_about_p():
    ds = [(torch.ones(3, 96, 96), torch.ones(1))] * 200
    h = HideAndSeek(ds, grid_sizes=(1/8,), p=0.5, seed=0)
    frac = np.mean([(h[i][0] == 0).float().mean().item() for i in range(200)])
    assert 0.45 < frac < 0.55

CLI = ['--n_train', '24', '--n_holdout', '12', '--size', '48', '--cls_epochs', '1', '--max_steps', '2', '--rho', '0.01',
       '--crop_size', '48', '--device', 'cpu']

def test_cli_exits_0_writes_run_folder_and_resumes(tmp_path):
    from aepsl.viz import load_label_png
    out = tmp_path / 'run'
    r = subprocess.run(['aepsl_erase', '--out', str(out)] + CLI, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    for f in ('config.json', 'log.txt', 'metrics.json', 'figures/steps.png', 'cls/step2/model.pt', 'mined/step2/done.json'):
        assert (out / f).is_file(), f
    text = (out / 'metrics.json').read_text()
    m = json.loads(text, parse_constant=lambda c: pytest.fail(f'{c} is not JSON'))
    assert [s['step'] for s in m['steps']] == [1, 2] and 'mIoU' in m['steps'][0]
    assert len(list((out / 'pseudo_objects').glob('*.png'))) == 24
    assert load_label_png(next((out / 'pseudo_objects').glob('*.png'))).shape == (48, 48)
    r2 = subprocess.run(['aepsl_erase', '--out', str(out)] + CLI, capture_output=True, text=True)
    assert r2.returncode == 0, r2.stderr[-2000:]
    again = json.loads((out / 'metrics.json').read_text())
    assert all(s['resumed'] for s in again['steps'])
    assert [dict(s, resumed=True) for s in m['steps']] == again['steps']
    r3 = subprocess.run(['aepsl_erase', '--out', str(out)] + CLI + ['--seed', '3'], capture_output=True, text=True)
    assert r3.returncode != 0 and 'seed: 0 -> 3' in r3.stderr and 'new run folder' in r3.stderr

def test_cli_refuses_bad_flags_before_work(tmp_path):
    with pytest.raises(ValueError, match='delta'): erase(out=str(tmp_path / 'x'), delta=1.0, n_train=8, n_holdout=4, size=48)
    with pytest.raises(ValueError, match='epochs'): erase(out=str(tmp_path / 'x'), cls_epochs=0, n_train=8, n_holdout=4, size=48)
    assert not (tmp_path / 'x').exists()

def test_cli_on_mixed_size_voc_folder(tmp_path):
    "Images of several sizes and formats, no --size: every pseudo-object PNG has its image's size."
    from aepsl.voc import synthetic_voc, VOCWSSS
    from aepsl.viz import load_label_png
    synthetic_voc(tmp_path / 'voc', n_train=16, n_val=8, size=64, sizes=[(64, 64), (48, 80), (72, 56)], formats=('jpg', 'png'))
    with pytest.raises(ValueError, match='training split'):
        erase(out=str(tmp_path / 'bad'), data=str(tmp_path / 'voc'), holdout_split='train')
    out = tmp_path / 'run'
    erase(out=str(out), data=str(tmp_path / 'voc'), cls_epochs=1, max_steps=1, crop_size=48, device='cpu')
    ds = VOCWSSS(tmp_path / 'voc', 'train')
    shapes = {ds.image(i).shape[:2] for i in range(len(ds))}
    assert len(shapes) > 1
    for i in range(len(ds)):
        assert load_label_png(out / 'pseudo_objects' / f'{ds.ids[i]}.png').shape == ds.image(i).shape[:2]
    assert json.loads((out / 'config.json').read_text())['n_train'] == 16

def test_voc_preset_vgg16_smoke_on_cpu(tmp_path):
    "The paper's preset and network end to end on CPU: tiny crops, one epoch, random weights (no download)."
    from aepsl.voc import synthetic_voc
    synthetic_voc(tmp_path / 'voc', n_train=6, n_val=4, size=48)
    out = tmp_path / 'run'
    erase(out=str(out), data=str(tmp_path / 'voc'), config='voc', cls_arch='vgg16_largefov', cls_weights='none', cls_epochs=1,
          max_steps=1, crop_size=32, cls_bs=3, num_workers=0, device='cpu')
    cfg = json.loads((out / 'config.json').read_text())
    assert cfg['arch'] == 'vgg16_largefov' and cfg['crop_size'] == 32 and cfg['preset'] == 'voc'
    assert len(list((out / 'pseudo_objects').glob('*.png'))) == 6

def test_pseudo_objects_mark_pixels_claimed_by_several_classes(data, tmp_path):
    "pseudo_objects/<id>.png: 255 exactly where two classes' regions (of any used step) overlap, else the earliest class."
    from aepsl.viz import load_label_png
    ae = make_ae(data, tmp_path / 'r', delta=0.05)      # a low δ: large regions, which overlap in two-class images
    ae.run()
    st = ae.write_pseudo_objects()
    n_conflict = 0
    for i, k in enumerate(ae.train_ds.ids):
        s = ae.mined_steps(i)
        several = (s > 0).sum(0) > 1
        png = load_label_png(st.file(k))
        np.testing.assert_array_equal(png == 255, several)
        big = np.where(s == 0, 99, s).astype(int)
        first = np.where((s > 0).any(0), big.argmin(0) + 1, 0)      # earliest step, then the lower class
        np.testing.assert_array_equal(png[~several], first[~several])
        n_conflict += several.sum()
    assert n_conflict > 0                                # the case is exercised
    assert st.config['conflict'] == 255                  # recorded: a run made before this rule refuses to mix

def test_classes_mined_at_one_step_are_told_apart_by_that_steps_cam(data, tmp_path):
    "Ties (classes first mined at the same step) go to the class of highest CAM: step 1's label map is the CAM's own."
    from aepsl.cam import cams_to_label_map
    from aepsl.runs import read_marker
    ae = make_ae(data, tmp_path / 'r', delta=0.05, max_steps=1)      # a low δ: the two classes' regions overlap
    ae.run()
    cams, n_tie, wrong = ae.cams_of(ae.train_ds), 0, 0
    for i in range(len(ae.train_ds.ids)):
        (s, top), c = ae.mined(i), cams(i)
        tie = (s == 1).sum(0) > 1
        by_cam = cams_to_label_map(c, 0.05)
        got = ae.label_map(i)
        wrong += (got != by_cam)[tie].sum()
        n_tie += tie.sum()
        np.testing.assert_array_equal(top[0] > 0, (s > 0).any(0))   # stored wherever the step mined
        np.testing.assert_array_equal(s, ae.mined_steps(i))
        np.testing.assert_array_equal(top, ae.mined_tops(i))
    assert n_tie > 0                                                 # the case is exercised
    assert wrong <= 0.001 * n_tie, (wrong, n_tie)                   # the argmax (float ties between batches aside)
    assert read_marker(ae.out / 'mined' / 'step1' / 'train' / 'done.json')['config']['top'] is True   # older folders refuse

# --- issue 17: every setting checked before the run folder exists; data identity by content; non-finite steps; cls/ as a Stage

NAN, INF = float('nan'), float('inf')
BASE = dict(n_train=8, n_holdout=4, size=48, crop_size=48, device='cpu')

@pytest.mark.parametrize('bad, msg', [
    (dict(cls_bs=0), 'cls_bs=0'), (dict(cls_bs=-2), 'cls_bs=-2'), (dict(cls_lr=0.0), 'cls_lr=0.0'), (dict(cls_lr=-1e-3), 'cls_lr=-0.001'),
    (dict(cls_lr=NAN), 'cls_lr=nan'), (dict(cls_lr=INF), 'cls_lr=inf'), (dict(crop_size=0), 'crop_size=0'),
    (dict(cls_patience=0), 'cls_patience=0'), (dict(cls_patience=1.5), 'cls_patience=1.5'), (dict(cls_epochs=0), 'cls_epochs=0'),
    (dict(cls_epochs=1.5), 'cls_epochs=1.5'), (dict(max_steps=0), 'max_steps=0'), (dict(delta=NAN), 'delta=nan'),
    (dict(rho=NAN), 'rho=nan'), (dict(min_map=-0.1), 'min_map=-0.1'), (dict(min_map=1.5), 'min_map=1.5'),
    (dict(min_map=NAN), 'min_map=nan'), (dict(num_workers=-1), 'num_workers=-1'),
    (dict(cls_weights='imagenet'), "arch 'small' has no pretrained weights"),
    (dict(cls_arch='vgg16_largefov', cls_weights='MISSING'), 'no_such.pth'), (dict(cls_arch='vgg'), "cls_arch='vgg'"),
    (dict(seed=-1), 'seed=-1'), (dict(n_train=0), 'n_train=0'), (dict(n_holdout=0), 'n_holdout=0'),
    (dict(size=0), 'size=0'), (dict(size=32), 'size=32 is smaller than crop_size=48'),
    (dict(config='gpu'), "unknown preset 'gpu'"), (dict(data='NODATA'), 'no_data'),
    (dict(device='gpu'), "device='gpu' is not a device"),
])
def test_cli_every_bad_setting_refused_before_the_run_folder(tmp_path, bad, msg):
    "Each bad flag raises a message naming the setting and its value, and leaves no --out folder behind."
    import re
    bad = {k: str(tmp_path / 'no_such.pth') if v == 'MISSING' else str(tmp_path / 'no_data') if v == 'NODATA' else v
           for k, v in bad.items()}
    out = tmp_path / 'out'
    with pytest.raises(ValueError, match=re.escape(msg)): erase(out=str(out), **{**BASE, **bad})
    assert not out.exists()

@pytest.mark.parametrize('bad, msg', [
    (dict(scale=(1.2, 0.8)), 'scale=(1.2, 0.8)'), (dict(scale=(0, 1)), 'scale=(0, 1)'), (dict(scale=(1.0,)), 'scale=(1.0,)'),
    (dict(scale=(NAN, 1.0)), 'scale=(nan, 1.0)'), (dict(cam_scales=()), 'cam_scales=()'), (dict(cam_scales=(1.0, -0.5)), 'cam_scales=(1.0, -0.5)'),
    (dict(cam_bs=0), 'cam_bs=0'), (dict(fill='blur'), "fill='blur'"), (dict(fill=(0, 0, 300)), 'fill=(0, 0, 300)'),
    (dict(mean='voc'), "mean='voc'"), (dict(mean=(1, 2)), 'mean=(1, 2)'), (dict(cam_flip='yes'), "cam_flip='yes'"),
    (dict(seed=-1), 'seed=-1'),
])
def test_config_only_bad_settings_refused(data, tmp_path, bad, msg):
    "Settings the command line does not expose (erasing_config / AdversarialErasing) are checked the same way."
    import re
    never = lambda C: pytest.fail('nothing may train')
    with pytest.raises(ValueError, match=re.escape(msg)): make_ae(data, tmp_path / 'r', never, **bad)
    assert not (tmp_path / 'r').exists()

def _voc(root, seed=0):
    from aepsl.voc import synthetic_voc
    synthetic_voc(root, 8, 8, 32, seed)
    return root

def test_cli_shared_ids_and_undecodable_images_refused_before_the_run_folder(tmp_path):
    root = _voc(tmp_path / 'voc')
    val = root / 'ImageSets' / 'Segmentation' / 'val.txt'
    train_ids = (root / 'ImageSets' / 'Segmentation' / 'train.txt').read_text().split()
    val.write_text(val.read_text() + train_ids[0] + '\n')
    out = tmp_path / 'out'
    with pytest.raises(ValueError, match='shares 1 images'): erase(out=str(out), data=str(root), crop_size=32, device='cpu')
    assert not out.exists()
    val.write_text(''.join(i + '\n' for i in val.read_text().split() if i != train_ids[0]))
    bad = next((root / 'JPEGImages').glob(f'{train_ids[1]}.*'))
    bad.write_bytes(bad.read_bytes()[:40])                     # a truncated image: found before any work
    with pytest.raises(ValueError, match=bad.name): erase(out=str(out), data=str(root), crop_size=32, device='cpu')
    assert not out.exists()

class Stop(Exception): "Raised in place of the run: the config was accepted."

def test_cli_same_data_under_another_spelling_is_the_same_run(tmp_path, monkeypatch):
    "config.json identifies the data by content: a relative, absolute or slash-ended path, or a copy, is the same data."
    import shutil
    def stop(self, *a, **k): raise Stop
    monkeypatch.setattr(AdversarialErasing, 'run', stop)
    _voc(tmp_path / 'base')
    monkeypatch.chdir(tmp_path)
    kw = dict(out='run', crop_size=32, cls_epochs=1, max_steps=1, device='cpu')
    for d in ('base', str(tmp_path / 'base'), 'base/', str(tmp_path / 'base') + '/'):
        with pytest.raises(Stop): erase(data=d, **kw)
    shutil.copytree(tmp_path / 'base', tmp_path / 'copy')
    with pytest.raises(Stop): erase(data='copy', **kw)
    cfg = json.loads((tmp_path / 'run' / 'config.json').read_text())
    assert cfg['data'] == str((tmp_path / 'base').resolve()) and cfg['data_fingerprint']['train']['n'] == 8
    _voc(tmp_path / 'other', seed=1)                           # same ids and layout, other pixels
    with pytest.raises(StageConfigError, match='data_fingerprint'): erase(data='other', **kw)

def _fake_fit(mAP, loss=0.5):
    def fit(model, trn, hold, **kw): return [dict(epoch=0, train_loss=loss, mAP=mAP, time=0.0)]
    return fit

@pytest.mark.parametrize('mAP, loss, what', [(NAN, 0.5, 'held-out mAP is nan'), (INF, 0.5, 'held-out mAP is inf'),
                                             (0.7, NAN, 'training loss is nan')])
def test_nonfinite_step_stops_naming_it(data, tmp_path, monkeypatch, mAP, loss, what):
    "A diverged classifier stops the run with a message naming the step, before its regions are mined or it is marked done."
    import aepsl.erasing as E
    monkeypatch.setattr(E, 'fit_classifier', _fake_fit(mAP, loss))
    with pytest.raises(FloatingPointError, match=f'step 1: .*{what}'): make_ae(data, tmp_path / 'r', max_steps=1).run()
    assert not (tmp_path / 'r' / 'mined' / 'step1' / 'done.json').exists()
    assert not list((tmp_path / 'r' / 'mined' / 'step1').rglob('*.npz'))

def test_nonfinite_finished_step_is_refused_on_resume(data, tmp_path, monkeypatch):
    "A finished step whose record holds a null (NaN written as JSON) mAP is not fed to the stopping rule."
    import aepsl.erasing as E
    monkeypatch.setattr(E, 'fit_classifier', _fake_fit(0.7))
    make_ae(data, tmp_path / 'r', max_steps=1).run()
    f = tmp_path / 'r' / 'mined' / 'step1' / 'done.json'
    rec = json.loads(f.read_text()); rec['holdout_mAP'] = None; f.write_text(json.dumps(rec))
    with pytest.raises(FloatingPointError, match='step 1: .*held-out mAP is None'): make_ae(data, tmp_path / 'r', max_steps=1).run()

def test_nonfinite_cams_stop_mining_naming_the_step(data, tmp_path, monkeypatch):
    "NaN CAMs would threshold to empty regions silently; mining stops instead, naming the image and the step's folder."
    import aepsl.erasing as E, aepsl.cam as C
    monkeypatch.setattr(E, 'fit_classifier', _fake_fit(0.7))
    monkeypatch.setattr(C, 'multiscale_cam', lambda model, x, y, **kw: torch.full((len(x), y.shape[1], *x.shape[-2:]), NAN))
    with pytest.raises(FloatingPointError, match=r'CAM of image .* is not finite .*step1'): make_ae(data, tmp_path / 'r', max_steps=1).run()
    assert not list((tmp_path / 'r' / 'mined' / 'step1').rglob('*.npz'))

def test_cls_folder_is_a_checked_stage(data, tmp_path):
    "cls/step<t> records its config like mined/step<t>: a training checkpoint made with other settings is refused, not resumed."
    import shutil
    make_ae(data, tmp_path / 'r', max_steps=1, epochs=1).run()
    cls = tmp_path / 'r' / 'cls' / 'step1'
    assert (cls / 'started.json').is_file() and (cls / 'done.json').is_file() and (cls / 'model.pt').is_file()
    shutil.rmtree(tmp_path / 'r' / 'mined' / 'step1')                # the user redoes the step ... with other epochs
    never = lambda C: pytest.fail('nothing may train on top of the old checkpoint')
    with pytest.raises(StageConfigError, match='cls/step1'): make_ae(data, tmp_path / 'r', never, max_steps=1, epochs=2).run()


def test_lite0_is_an_erasing_arch_with_its_own_statistics(tmp_path):
    "arch='lite0' builds EfficientNet-Lite0's CAM network; mean='model' normalises with the statistics its weights expect."
    pytest.importorskip('timm')
    from aepsl.models import LITE0_MEAN, LITE0_STD
    from aepsl.erasing import make_classifier
    m = make_classifier('lite0', 3, weights=None)
    assert m.n_classes == 3 and m.recipe['mean'] == LITE0_MEAN
    trn, hold = SyntheticWSSS(4, size=32, seed=0), SyntheticWSSS(4, size=32, seed=1)
    ae = AdversarialErasing(trn, hold, tmp_path / 'ae', arch='lite0', weights=None, mean='model')
    mean, std = ae.stats()
    np.testing.assert_allclose(mean, LITE0_MEAN)
    np.testing.assert_allclose(std, LITE0_STD)
    small = AdversarialErasing(trn, hold, tmp_path / 'small', mean='model')   # no statistics of its own: ImageNet's
    from aepsl.data import IMAGENET_MEAN
    np.testing.assert_allclose(small.stats()[0], IMAGENET_MEAN)

# --- issue 16: mining through Stage.map; the miners at the command line; mining an extra set (mine_split)

from aepsl.erasing import MINERS, mine_regions

def make_miner(name, data, out, **kw):
    trn, hold = data
    return MINERS(name, trn, hold, out, make_model=tiny, model_name='tiny', device='cpu', **{**SMALL, **kw})

def test_mined_files_are_each_images_own_cam_in_batches_of_any_size(data, tmp_path):
    "Batches of 5 over 16 held-out images (the last one short): each file holds the CAM regions of its own image, computed alone."
    ae = make_ae(data, tmp_path / 'r', max_steps=1, cam_bs=5); ae.run()
    rec = json.loads((tmp_path / 'r' / 'mined' / 'step1' / 'holdout' / 'done.json').read_text())
    assert rec['n_images'] == 16 and rec['n_computed'] == 16          # the split is a Stage, written by Stage.map
    model, (_, hold) = ae.load_model(1), ae.datasets(1)
    for i, k in enumerate(hold.ids):
        x, y, _ = hold[i]
        alone = mine_regions(ae.cam(model, x[None], y[None]).numpy(), y[None].numpy(), 0.5)[0]
        np.testing.assert_array_equal(load_regions(tmp_path / 'r' / 'mined' / 'step1' / 'holdout' / f'{k}.npz', 5, (48, 48), y), alone)
    assert all_regions(ae, 'holdout').any()

@pytest.mark.parametrize('name', ['ae', 'has', 'acol'])
def test_mine_split_on_the_holdout_set_gives_its_regions(data, tmp_path, name):
    "An extra set mined after the run, with the same rule as the held-out images: given the held-out set, the same regions."
    m = make_miner(name, data, tmp_path / 'r', cam_bs=5)
    m.run()
    hold = data[1]
    recs = m.mine_split(hold, 'evalset')
    assert len(recs) == m.n_used == (2 if name == 'ae' else 1)
    for t in range(1, m.n_used + 1): assert (tmp_path / 'r' / 'mined' / f'step{t}' / 'evalset' / 'done.json').is_file()
    np.testing.assert_array_equal(all_regions(m, 'evalset'), all_regions(m, 'holdout'))
    if name == 'ae': assert (all_regions(m, 'evalset') == 2).any()   # step 2 mined on images erased with step 1's regions
    again = make_miner(name, data, tmp_path / 'r')                     # a new object: reads the run and the extra set back
    again.run()
    again.load_model = lambda t: pytest.fail('a finished extra set is not mined again')
    assert [r['n_images'] for r in again.mine_split(hold, 'evalset')] == [16] * m.n_used
    np.testing.assert_array_equal(all_regions(again, 'evalset'), all_regions(m, 'holdout'))

def test_mine_split_resumes_and_refuses(data, tmp_path):
    trn, hold = data
    ae = make_ae(data, tmp_path / 'r')
    with pytest.raises(RuntimeError, match='run'): ae.mine_split(hold, 'ev')
    ae.run()
    for bad, msg in (('train', "name='train'"), ('holdout', "name='holdout'"), ('../x', 'path separator')):
        with pytest.raises(ValueError, match=re.escape(msg)): ae.mine_split(hold, bad)
    mixed = Relabel(hold, hold.labels)
    mixed.ids = list(hold.ids[:-1]) + [trn.ids[3]]
    with pytest.raises(ValueError, match=r"shares 1 images with the training set \(e.g. \['" + trn.ids[3]): ae.mine_split(mixed, 'ev')
    with pytest.raises(ValueError, match="unknown split 'ev'"): ae.mined_steps(0, 'ev')
    assert not list((tmp_path / 'r' / 'mined').glob('step*/ev'))
    ae.mine_split(hold, 'ev')
    want = all_regions(ae, 'ev')
    folder = tmp_path / 'r' / 'mined' / 'step2' / 'ev'                # killed during step 2: its marker and two files missing
    (folder / 'done.json').unlink()
    for f in sorted(folder.glob('*.npz'))[:2]: f.unlink()
    recs = ae.mine_split(hold, 'ev')
    assert recs[1]['n_computed'] == 2
    np.testing.assert_array_equal(all_regions(ae, 'ev'), want)
    other = SyntheticWSSS(16, size=48, seed=9)                         # other images under the same name
    with pytest.raises(StageConfigError, match='mined/step1/ev'): ae.mine_split(other, 'ev')

@pytest.mark.parametrize('name', ['ae', 'has', 'acol'])
def test_cli_runs_each_miner(tmp_path, name):
    "aepsl_erase --miner: the run folder records the miner (an AE run's config.json stays as it was), has/acol train one classifier."
    out = tmp_path / 'run'
    erase(out=str(out), miner=name, n_train=12, n_holdout=6, size=48, crop_size=48, cls_epochs=1, max_steps=2, rho=0.01, cls_bs=6, device='cpu')
    cfg = json.loads((out / 'config.json').read_text())
    assert cfg.get('miner', 'ae') == name and ('miner' in cfg) == (name != 'ae')
    m = json.loads((out / 'metrics.json').read_text())
    assert [s['step'] for s in m['steps']] == ([1, 2] if name == 'ae' else [1]) and cfg['max_steps'] == len(m['steps'])
    step1 = json.loads((out / 'mined' / 'step1' / 'done.json').read_text())['config']
    assert step1.get('miner', 'ae') == name
    assert len(list((out / 'pseudo_objects').glob('*.png'))) == 12 and (out / 'figures' / 'steps.png').is_file()
    erase(out=str(out), miner=name, n_train=12, n_holdout=6, size=48, crop_size=48, cls_epochs=1, max_steps=2, rho=0.01, cls_bs=6, device='cpu')
    assert all(s['resumed'] for s in json.loads((out / 'metrics.json').read_text())['steps'])
    other = 'acol' if name != 'acol' else 'has'                       # another miner in the same folder is refused
    with pytest.raises(StageConfigError, match='miner'):
        erase(out=str(out), miner=other, n_train=12, n_holdout=6, size=48, crop_size=48, cls_epochs=1, max_steps=2, rho=0.01, cls_bs=6, device='cpu')

def test_cli_takes_a_file_of_settings(tmp_path):
    "aepsl_erase --config FILE: the erasing settings (and miner) of aepsl_run's file; a flag beats the file; a bad file is named."
    f = tmp_path / 'study.json'
    f.write_text(json.dumps({'preset': 'cpu', 'miner': 'has', 'seg': {'epochs': 3},
                             'erasing': {'epochs': 1, 'crop_size': 48, 'bs': 6, 'delta': 0.4, 'max_steps': 2}}))
    out = tmp_path / 'run'
    erase(out=str(out), config=str(f), delta=0.45, n_train=12, n_holdout=6, size=48, device='cpu')
    cfg = json.loads((out / 'config.json').read_text())
    assert (cfg['preset'], cfg['miner'], cfg['epochs'], cfg['crop_size'], cfg['delta']) == ('cpu', 'has', 1, 48, 0.45)
    f.write_text('{"preset": "cpu", "erasing": {"delta": 2}}')
    with pytest.raises(ValueError, match='study.json'): erase(out=str(tmp_path / 'o'), config=str(f), **BASE)
    with pytest.raises(ValueError, match="unknown preset 'gpu' and no such file"): erase(out=str(tmp_path / 'o'), config='gpu', **BASE)
    assert not (tmp_path / 'o').exists()

def test_cli_takes_settings_by_name(tmp_path, monkeypatch):
    "aepsl_erase --settings: erasing settings and the miner by their names in the tree; a flag beats them; another group's is refused."
    def stop(self, *a, **k): raise Stop
    monkeypatch.setattr(AdversarialErasing, 'run', stop)
    kw = dict(n_train=8, n_holdout=4, size=48, crop_size=48, device='cpu')
    with pytest.raises(Stop):
        erase(out=str(tmp_path / 'r'), settings='erasing.fill=zero erasing.epochs=7 erasing.delta=0.3 miner=has', delta=0.4, **kw)
    cfg = json.loads((tmp_path / 'r' / 'config.json').read_text())
    assert (cfg['fill'], cfg['epochs'], cfg['delta'], cfg['miner']) == ('zero', 7, 0.4, 'has')
    for text, msg in (('seg.epochs=3', r'seg\.epochs not a setting of aepsl_erase'), ('erasing.epoch=3', r'erasing\.epoch is not a setting'),
                      ('erasing.delta=2', r'delta=2 must lie in \(0, 1\)')):
        with pytest.raises(ValueError, match=msg): erase(out=str(tmp_path / 'o'), settings=text, **kw)
    assert not (tmp_path / 'o').exists()

def test_cli_refuses_an_unknown_miner_before_the_run_folder(tmp_path):
    with pytest.raises(ValueError, match="miner='cam': use ae, has, acol"): erase(out=str(tmp_path / 'o'), miner='cam', **BASE)
    assert not (tmp_path / 'o').exists()

def test_each_step_file_holds_the_union_erased_so_far(data, tmp_path):
    "Step t's file holds the union of steps 1..t (what step t+1 erases): step t+1 reads it alone, and erases what reading every step erases."
    ae = make_ae(data, tmp_path / 'r', max_steps=3)
    ae.run()
    assert len(ae.steps) == 3
    C = len(ae.train_ds.classes)
    for split, ds in (('train', ae.train_ds), ('holdout', ae.holdout_ds)):
        for i, k in enumerate(ds.ids):
            shape, union = ds.image(i).shape[:2], np.zeros(ds.image(i).shape[:2], bool)
            for t in (1, 2, 3):
                union |= load_regions(ae.out / 'mined' / f'step{t}' / split / f'{k}.npz', C, shape, ds.labels[i]).any(0)
                np.testing.assert_array_equal(load_erased(ae.out / 'mined' / f'step{t}' / split / f'{k}.npz', shape), union)
    mean, std = ae.stats()
    dirs = ae.region_dirs(3)
    one, every = ErasedDataset(ae.train_ds, dirs, mean, std, cumulative=True), ErasedDataset(ae.train_ds, dirs, mean, std)
    assert any(every.regions(i, every.base.image(i).shape[:2]).any() for i in range(len(every)))   # something is erased
    for i in range(len(every)): np.testing.assert_array_equal(one.image(i), every.image(i))
