"""`aepsl_run` / `Pipeline` refuse every bad setting before the run folder exists (so the corrected command runs),
honour `--weights none`, say where Ctrl-C stopped; `aepsl_eval` fails when nothing is scored and reads only masks;
a run refuses data whose content changed. Tiny data, no training: seconds each."""
import json, math
from types import SimpleNamespace
import numpy as np, pytest, torch
from PIL import Image
import aepsl.pipeline as pl
from aepsl.voc import synthetic_voc, VOCWSSS
from aepsl.runs import read_json
from aepsl.viz import save_label_png
from aepsl.pipeline import Pipeline, pipeline_config, make_segnet
from aepsl.cli import aepsl_run
from aepsl.psl import aepsl_eval

nan = float('nan')

@pytest.fixture(scope='module')
def voc(tmp_path_factory):
    return synthetic_voc(tmp_path_factory.mktemp('voc') / 'data', 8, 4, 32, seed=0)

@pytest.fixture
def no_stages(monkeypatch):
    "A refused command must not get as far as the stages (and on a regression, must not train for minutes)."
    def run(self, stop_after=None): raise AssertionError('the run started instead of refusing its settings')
    monkeypatch.setattr(Pipeline, '__call__', run)

# every setting of aepsl_run with a bad value: (setting named in the error, flags)
BAD = [
    ('config', dict(config='gpu')),
    ('stop_after', dict(stop_after='predict')),
    ('train_split', dict(train_split='nosuch')),
    ('holdout_split', dict(holdout_split='nosuch')),
    ('eval_split', dict(eval_split='nosuch')),
    ('train_split', dict(holdout_split='train')),
    ('cls_arch', dict(cls_arch='vgg')),
    ('cls_weights', dict(cls_weights='nowhere.pth')),
    ('cls_weights', dict(cls_weights='imagenet')),   # the cpu preset's small CNN has none
    ('delta', dict(delta=1.5)), ('delta', dict(delta=nan)),
    ('max_steps', dict(max_steps=0)),
    ('rho', dict(rho=0)), ('rho', dict(rho=nan)),
    ('cls_epochs', dict(cls_epochs=0)),
    ('cls_patience', dict(cls_patience=0)),
    ('cls_bs', dict(cls_bs=-1)), ('cls_bs', dict(cls_bs=0)),
    ('cls_lr', dict(cls_lr=-1.0)), ('cls_lr', dict(cls_lr=nan)), ('cls_lr', dict(cls_lr=0.0)),
    ('crop_size', dict(crop_size=0)),
    ('cam_threshold', dict(cam_threshold=nan)), ('cam_threshold', dict(cam_threshold=1.5)),
    ('bg_threshold', dict(bg_threshold=nan)),
    ('seg_arch', dict(seg_arch='unet')),
    ('seg_weights', dict(seg_weights='nowhere.pth')), ('seg_weights', dict(seg_weights='imagenet')),
    ('seg_epochs', dict(seg_epochs=0)),
    ('seg_bs', dict(seg_bs=-1)), ('seg_bs', dict(seg_bs=0)),
    ('seg_lr', dict(seg_lr=-1.0)), ('seg_lr', dict(seg_lr=nan)),
    ('psl_weight', dict(psl_weight=-1.0)), ('psl_weight', dict(psl_weight=nan)), ('psl_weight', dict(psl_weight=0.0)),
    ('psl_warmup', dict(psl_warmup=nan)), ('psl_warmup', dict(psl_warmup=-1.0)),
    ('seg_patience', dict(seg_patience=0)), ('seg_sched', dict(seg_sched='cosine')), ('seg_lr_patience', dict(seg_lr_patience=0)),
    ('test_scales', dict(test_scales='0')), ('test_scales', dict(test_scales='')), ('test_scales', dict(test_scales='1,x')),
    ('test_scales', dict(test_scales='nan')),
    ('crf', dict(crf='crisp')),
    ('seed', dict(seed=-1)),
    ('device', dict(device='gpu')),
    ('num_workers', dict(num_workers=-1)),
]

@pytest.mark.parametrize('key,flags', BAD, ids=[f'{k}={list(f.values())[0]!r}' for k, f in BAD])
def test_bad_setting_refused_before_run_folder(voc, tmp_path, key, flags, no_stages):
    out = tmp_path / 'run'
    with pytest.raises(SystemExit) as e: aepsl_run(data=voc, out=out, quiet=True, **flags)
    assert e.value.code not in (0, None) and key in str(e.value.code), e.value.code
    assert not out.exists()   # nothing written: no config.json to refuse the corrected command
    p = Pipeline(voc, out, 'cpu', progress=False)   # the corrected command
    assert (out / 'config.json').is_file() and p.cfg.preset == 'cpu'

def test_config_file_and_settings(voc, tmp_path, monkeypatch):
    "--config FILE, then --settings, then flags: each beats the one before; a run's config.json reproduces its settings."
    monkeypatch.setattr(Pipeline, '__call__', lambda self, stop_after=None: {})   # settings only
    f = tmp_path / 'study.json'
    f.write_text(json.dumps({'preset': 'cpu', 'seg': {'patience': 8, 'epochs': 30}, 'erasing': {'epochs': 20, 'delta': 0.4}}))
    aepsl_run(data=voc, out=tmp_path / 'a', config=str(f), settings='erasing.delta=0.6 seg.sched=plateau', seg_patience=9, quiet=True)
    a = read_json(tmp_path / 'a' / 'config.json')
    assert (a['preset'], a['seg']['epochs'], a['erasing']['epochs']) == ('cpu', 30, 20)   # the file's
    assert (a['erasing']['delta'], a['seg']['patience']) == (0.6, 9)                      # --settings, then the flag, won
    aepsl_run(data=voc, out=tmp_path / 'b', config=str(tmp_path / 'a' / 'config.json'), quiet=True)
    assert read_json(tmp_path / 'b' / 'config.json') == a                             # the same run's settings

@pytest.mark.parametrize('text,named', [('{"preset": "cpu", "seg": {"epoch": 3}}', 'seg.epoch'), ('{"preset": "gpu"}', 'preset'),
                                        ('{"preset": "cpu", "erasing": {"delta": 2}}', 'delta'), ('[1, 2', 'JSON')])
def test_bad_config_file_refused_before_run_folder(voc, tmp_path, text, named, no_stages):
    f = tmp_path / 'bad.json'
    f.write_text(text)
    with pytest.raises(SystemExit) as e: aepsl_run(data=voc, out=tmp_path / 'r', config=str(f), quiet=True)
    assert named in str(e.value.code) and 'bad.json' in str(e.value.code), e.value.code
    with pytest.raises(SystemExit, match=r'its name is seg\.epochs'): aepsl_run(data=voc, out=tmp_path / 'r', settings='seg_epochs=3', quiet=True)
    assert not (tmp_path / 'r').exists()

def test_missing_data_named(tmp_path, no_stages):
    with pytest.raises(SystemExit, match='data='): aepsl_run(data=tmp_path / 'nowhere', out=tmp_path / 'r', quiet=True)
    assert not (tmp_path / 'r').exists()

def test_failed_then_corrected_rerun(voc, tmp_path, no_stages):
    "The issue's case: `--bs -1` then `--bs 32` in the same --out."
    out = tmp_path / 'run'
    with pytest.raises(SystemExit, match='seg_bs'): aepsl_run(data=voc, out=out, seg_bs=-1, quiet=True)
    Pipeline(voc, out, 'cpu', progress=False, seg_bs=32)
    assert read_json(out / 'config.json')['seg']['bs'] == 32

def test_holdout_overlap_names_ids(tmp_path, no_stages):
    root = synthetic_voc(tmp_path / 'data', 6, 3, 32, seed=0)
    sets = root / 'ImageSets' / 'Segmentation'
    train = sets.joinpath('train.txt').read_text().split()
    sets.joinpath('hold.txt').write_text('\n'.join(train[:2] + sets.joinpath('val.txt').read_text().split()) + '\n')
    with pytest.raises(SystemExit) as e: aepsl_run(data=root, out=tmp_path / 'r', holdout_split='hold', eval_split='val', quiet=True)
    assert 'holdout_split' in str(e.value.code) and train[0] in str(e.value.code)
    assert not (tmp_path / 'r').exists()

def test_psl_weight_nan_never_reaches_config():
    for v in (nan, -1.0, 0.0, math.inf):
        with pytest.raises(ValueError, match='psl_weight'): pipeline_config('cpu', psl_weight=v)

def test_weights_none_recorded_and_honoured(voc, tmp_path, monkeypatch):
    monkeypatch.setattr(Pipeline, '__call__', lambda self, stop_after=None: {})   # no stage: config only
    out = tmp_path / 'run'
    aepsl_run(data=voc, out=out, config='voc', cls_weights='none', seg_weights='none', train_split='train', quiet=True)
    cfg = read_json(out / 'config.json')
    assert cfg['erasing']['weights'] == 'none' and cfg['seg']['weights'] == 'none', (cfg['erasing']['weights'], cfg['seg'])
    from aepsl import models
    got = {}
    monkeypatch.setattr(models, 'deeplab_largefov', lambda n, weights='imagenet': got.setdefault('w', weights))
    make_segnet('deeplab_largefov', 3, 'none')
    assert got['w'] is None   # random initialisation, no download
    # the cpu preset's nets start from random weights anyway: 'none' is the same run as no flag
    assert pipeline_config('cpu', cls_weights='none', seg_weights='none') == pipeline_config('cpu')

def test_weights_file_refused(tmp_path):
    with pytest.raises(ValueError, match='nowhere.pth'): pipeline_config('voc', seg_weights=str(tmp_path / 'nowhere.pth'))
    f = tmp_path / 'w.pth'; f.write_bytes(b'')
    with pytest.raises(ValueError, match='takes no pretrained weights'): pipeline_config('cpu', seg_weights=str(f))
    assert pipeline_config('voc', seg_weights=str(f)).seg.weights == str(f)

def test_ctrl_c_names_stage_and_resumes(voc, tmp_path, monkeypatch, capsys):
    tiny = dict(data=voc, out=tmp_path / 'run', cls_epochs=1, max_steps=1, stop_after='saliency', quiet=True)
    with monkeypatch.context() as m:
        def stop(self): raise KeyboardInterrupt
        m.setattr(Pipeline, 'saliency', stop)
        try:
            with pytest.raises(SystemExit) as e: aepsl_run(**tiny)
        except KeyboardInterrupt: pytest.fail('KeyboardInterrupt escaped aepsl_run')
    assert e.value.code == 130
    err = capsys.readouterr().err
    assert 'interrupted during stage saliency' in err and 'run the same command again to resume' in err
    assert 'Traceback' not in err
    aepsl_run(**tiny)   # the same command resumes: erasing and cam are not redone
    assert 'erasing: done before, skipped' in capsys.readouterr().err
    assert (tmp_path / 'run' / 'saliency' / 'done.json').is_file()

def test_eval_nothing_to_score(voc, tmp_path):
    empty = tmp_path / 'empty'; empty.mkdir()
    with pytest.raises(SystemExit) as e: aepsl_eval(pred=empty, data=voc, split='val')
    assert e.value.code not in (0, None) and 'nothing to score' in str(e.value.code)
    pred = tmp_path / 'pred'
    ds = VOCWSSS(voc, 'val')
    for i, k in enumerate(ds.ids): save_label_png(ds.mask(i), pred / f'{k}.png')
    with pytest.raises(SystemExit, match='nothing to score'): aepsl_eval(pred=pred, data=voc, split='train')   # wrong split
    with pytest.raises(SystemExit, match='nosuch'): aepsl_eval(pred=pred, data=voc, split='nosuch')

def test_eval_reads_masks_only(voc, tmp_path, capsys):
    "A folder holding IRN's pickled cls_labels.npy is scored without --allow_pickle: only the masks are read."
    root = tmp_path / 'data'
    import shutil; shutil.copytree(voc, root)
    ds = VOCWSSS(root, 'val')
    np.save(root / 'cls_labels.npy', {k: ds.labels[i] for i, k in enumerate(ds.ids)}, allow_pickle=True)
    pred = tmp_path / 'pred'
    for i, k in enumerate(ds.ids): save_label_png(ds.mask(i), pred / f'{k}.png')
    aepsl_eval(pred=pred, data=root, split='val')
    out = capsys.readouterr().out
    assert '**100.00**' in out and f'{len(ds.ids)} images, 0 missing' in out, out

def test_changed_images_refused(voc, tmp_path):
    "Mirrored images, same ids and labels: the rerun must not resume on results made from the old images."
    import shutil
    root = tmp_path / 'data'; shutil.copytree(voc, root)
    tiny = dict(data=root, out=tmp_path / 'run', cls_epochs=1, max_steps=1, stop_after='saliency', quiet=True)
    aepsl_run(**tiny)
    for f in (root / 'JPEGImages').iterdir():
        with Image.open(f) as im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(f, quality=95)
    with pytest.raises(SystemExit) as e: aepsl_run(**tiny)
    assert 'data_fingerprint.train.images' in str(e.value.code), e.value.code

def test_figures_stage_depends_on_eval_masks(voc, tmp_path, monkeypatch):
    "The evaluation stage scores the evaluation split's masks: its config holds their fingerprint."
    p = Pipeline(voc, tmp_path / 'run', 'cpu', progress=False)
    for f in ('cam', 'pseudo', 'pred_ssl', 'pred', 'pred_crf'):
        (p.out / f).mkdir(); (p.out / f / 'done.json').write_text(json.dumps(dict(config={}, hash=f)))
    p._ae = SimpleNamespace(identity='ae')   # the miner's identity, as a finished erasing stage gives it
    seen = {}
    class Done:
        done, record = True, {}
    monkeypatch.setattr(p.run, 'stage', lambda name, cfg: seen.setdefault(name, cfg) and Done())
    p.evaluate()
    assert seen['figures']['data'] == pl.data_fingerprint(p.ev)


def test_lite0_seg_is_a_segmentation_arch():
    "seg_arch='lite0_seg' is accepted with ImageNet weights (a pip package's, never downloaded) and builds a SegNet."
    pytest.importorskip('timm')
    c = pipeline_config('cpu', cls_arch='lite0', cls_weights='imagenet', mean='model', seg_arch='lite0_seg', seg_weights='imagenet')
    assert (c.seg.arch, c.seg.weights, c.erasing.arch) == ('lite0_seg', 'imagenet', 'lite0')
    net = make_segnet('lite0_seg', 3, 'none')
    with torch.no_grad(): seg, cls = net.eval()(torch.zeros(1, 3, 64, 64))
    assert seg.shape[:2] == (1, 4) and cls.shape == (1, 3)

def test_a_file_of_settings_warns_once_from_the_run_not_from_its_check(tmp_path):
    "read_config_file checks the settings to name the file in errors; the holdout warning is the run's to give, once."
    import json, warnings
    from aepsl.config import read_config_file, pipeline_config
    f = tmp_path / 'c.json'
    f.write_text(json.dumps(dict(preset='cpu', splits=dict(holdout='val', eval='val'))))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        preset, ov = read_config_file(f)
    assert not w, [str(x.message) for x in w]
    with pytest.warns(UserWarning, match='holdout_split'): pipeline_config(preset, **ov)
