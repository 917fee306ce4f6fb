"Run folders fail clearly: long ids, write errors, damaged or foreign files, symlinked stage folders; the worker count changes nothing."
import errno, json, pytest
from pathlib import Path
from aepsl.runs import atomic_write, check_id, save_arrays, write_json, read_json, Stage, RunFolder, StageConfigError

def test_long_id_is_not_broken_by_the_temporary_name(tmp_path):
    i = check_id('x' * 245)
    assert save_arrays(tmp_path / f'{i}.npz', a=[1, 2]).is_file()
    assert write_json(tmp_path / f'{i}.json', {}).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f'{i}.json', f'{i}.npz']

def test_id_too_long_for_a_file_name_is_refused():
    with pytest.raises(ValueError, match=r'train.txt line 2.*255-byte limit'): check_id('y' * 252, 'train.txt line 2')

def test_failed_write_names_the_file_and_leaves_no_temporary(tmp_path):
    def full(t):
        Path(t).write_text('half')
        raise OSError(errno.ENOSPC, 'No space left on device')
    with pytest.raises(OSError, match=r'm\.json: No space left on device') as e: atomic_write(tmp_path / 'm.json', full)
    assert e.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []

@pytest.mark.parametrize('junk', ['[]', '"x"', '{"a": 1}', '{"config": {}}', '{"config": [], "hash": "0"}'])
def test_marker_of_the_wrong_shape_names_the_file(tmp_path, junk):
    st = Stage(tmp_path / 'cam', dict(a=1)).begin()
    st.finish()
    st.marker.write_text(junk)
    with pytest.raises(ValueError, match='done.json is damaged'): st.check()
    with pytest.raises(ValueError, match='done.json is damaged'): st.record

def test_huge_value_is_not_echoed(tmp_path):
    st = Stage(tmp_path / 'cam', dict(a=1)).begin()
    st.marker.write_text(json.dumps(dict(config=dict(a='v' * 2_000_000), hash='0')))
    with pytest.raises(StageConfigError, match='a: ') as e: st.check()
    assert len(str(e.value)) < 1000

def test_deeply_nested_json_names_the_file(tmp_path):
    (tmp_path / 'metrics.json').write_text('[' * 100_000 + ']' * 100_000)
    with pytest.raises(ValueError, match='metrics.json is not valid JSON'): read_json(tmp_path / 'metrics.json')

def test_config_json_of_the_wrong_shape_names_the_file(tmp_path):
    (tmp_path / 'config.json').write_text('[1]')
    with pytest.raises(ValueError, match='config.json is damaged'): RunFolder(tmp_path, dict(a=1))

@pytest.mark.parametrize('link', ['mined', 'mined/step1'])
def test_symlinked_stage_folder_is_refused(tmp_path, link):
    run, away = tmp_path / 'run', tmp_path / 'away'
    run.mkdir(); away.mkdir()
    if link != 'mined': (run / 'mined').mkdir()
    (run / link).symlink_to(away)
    with pytest.raises(ValueError, match='outside'): Stage(run / 'mined' / 'step1', dict(t=1), 'mined/step1').begin()
    with pytest.raises(ValueError, match='outside'): RunFolder(run, {}).stage('mined/step1', dict(t=1))
    assert list(away.iterdir()) == []

def test_num_workers_change_is_allowed(tmp_path):
    RunFolder(tmp_path, dict(a=1, num_workers=0, device='cpu'))
    RunFolder(tmp_path, dict(a=1, num_workers=2, device='cpu'))   # how fast, not what: no refusal

def test_fit_seg_weights_do_not_depend_on_workers():
    import torch
    from aepsl.data import SyntheticWSSS
    from aepsl.models import seg_small
    from aepsl.psl import SegDataset, fit_seg, seg_train_tfms
    ds = SyntheticWSSS(8, size=32, seed=0)
    def weights(nw):
        torch.manual_seed(0)
        m = seg_small(len(ds.labels[0]))
        sd = SegDataset(ds, None, seg_train_tfms(dict(m.recipe, crop=24)))
        fit_seg(m, sd, 'ssl', epochs=1, bs=4, seed=3, num_workers=nw, progress=False)
        return m.state_dict()
    a, b = weights(0), weights(2)
    assert all(torch.equal(a[k], b[k]) for k in a)

def test_registry_refuses_unknown_names_listing_known():
    from aepsl.runs import Registry
    r = Registry('colour')
    r.register('red', lambda: 1)
    @r.register()
    def blue(): return 2
    assert (r('red'), r('blue'), list(r), 'red' in r) == (1, 2, ['red', 'blue'], True)
    with pytest.raises(ValueError, match="unknown colour 'green': use one of red, blue"): r('green')

CLASSIFIER_NAMES = ['small', 'vgg16_largefov', 'resnet50', 'lite0']
SEG_NAMES = ['seg_small', 'deeplab_largefov', 'resnet_largefov', 'lite0_seg', 'lite0_seg_small']

@pytest.mark.parametrize('name', CLASSIFIER_NAMES)
def test_classifier_registry_builds(name):
    import torch
    from aepsl.erasing import CLASSIFIERS, make_classifier
    if name == 'lite0': pytest.importorskip('timm')
    assert list(CLASSIFIERS) == CLASSIFIER_NAMES
    m = make_classifier(name, 3, 'none').eval()
    with torch.no_grad(): assert m(torch.zeros(1, 3, 64, 64)).shape == (1, 3)

@pytest.mark.parametrize('name', SEG_NAMES)
def test_segnet_registry_builds(name):
    import torch
    from aepsl.psl import SEGNETS, make_segnet
    if name.startswith('lite0'): pytest.importorskip('timm')
    assert list(SEGNETS) == SEG_NAMES
    with torch.no_grad(): seg, cls = make_segnet(name, 3, 'none').eval()(torch.zeros(1, 3, 64, 64))
    assert seg.shape[:2] == (1, 4) and cls.shape == (1, 3)

@pytest.mark.parametrize('spec', ['unsupervised', 'folder', 'forest'])
def test_saliency_registry(spec, tmp_path):
    import numpy as np
    from aepsl.data import SyntheticWSSS
    from aepsl.saliency import SALIENCY, saliency_stage, save_saliency_png, read_saliency_png, SaliencyForest
    ds = SyntheticWSSS(3, size=32, seed=0)
    assert list(SALIENCY) == ['unsupervised', 'folder', 'forest'] or set(SALIENCY) == {'unsupervised', 'folder', 'forest'}
    if spec == 'folder':
        for i, k in enumerate(ds.ids): save_saliency_png(np.full((32, 32), 0.25 * i, np.float32), tmp_path / 'ext' / f'{k}.png')
        spec = f'folder:{tmp_path / "ext"}'
    if spec == 'forest':
        f = SaliencyForest(scales=(50,), n_estimators=4)
        f.fit([(ds.image(i), ds.mask(i) > 0) for i in range(3)])
        spec = f'forest:{f.save(tmp_path / "forest.npz")}'
    st = saliency_stage(ds, tmp_path / 'sal', spec, progress=False)
    maps = [read_saliency_png(st.file(k)) for k in ds.ids]
    assert all(m.shape == (32, 32) and 0 <= m.min() <= m.max() <= 1 for m in maps)
    if spec.startswith('folder:'): assert [float(m.mean()) for m in maps] == pytest.approx([0, 0.25, 0.5], abs=0.01)
    with pytest.raises(ValueError, match='unknown saliency method'): saliency_stage(ds, tmp_path / 'x', 'sky', progress=False)

@pytest.mark.parametrize('rule', ['ae', 'oh'])
def test_pseudo_rule_registry(rule):
    from aepsl.pseudo import PSEUDO_RULES, pseudo_label, pseudo_label_oh
    assert PSEUDO_RULES[rule] is dict(ae=pseudo_label, oh=pseudo_label_oh)[rule]

@pytest.mark.parametrize('name', ['deeplab', 'psa', 'sec', 'irn'])
def test_crf_presets_reachable(name):
    from aepsl.pipeline import pipeline_config
    assert pipeline_config('cpu', crf=name).test.crf == name
